package gormflight

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/testdb"
	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// The test support of the package, in one place: the services (PostgreSQL,
// the shared Redis, redis-servers of a test's own), application instances,
// schema setups, unique names, waits and Redis hooks. A test file keeps only
// what its own tests use.
//
// The tests run against a real PostgreSQL and Redis. Without them they skip,
// unless GORMFLIGHT_TEST_REQUIRED=1 (as in CI), when they fail.

func testDSN() string {
	if v := os.Getenv("GORMFLIGHT_PG_DSN"); v != "" {
		return v
	}
	return "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable"
}

func testRedisAddr() string {
	if v := os.Getenv("GORMFLIGHT_REDIS_ADDR"); v != "" {
		return v
	}
	return "127.0.0.1:6379"
}

func servicesRequired() bool {
	return os.Getenv("GORMFLIGHT_TEST_REQUIRED") == "1" || os.Getenv("CI") != ""
}

func unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if servicesRequired() {
		t.Fatalf("%s unavailable: %v", what, err)
	}
	t.Skipf("%s unavailable (set GORMFLIGHT_TEST_REQUIRED=1 to fail instead): %v", what, err)
}

// ---------------------------------------------------------------------------
// PostgreSQL handles

// openDB opens a GORM handle of its own, as one application instance has.
func openDB(t testing.TB) *gorm.DB {
	t.Helper()
	return openDBWith(t, &gorm.Config{Logger: logger.Discard})
}

// openDBWith is openDB with a GORM configuration of the test's choosing.
func openDBWith(t testing.TB, gcfg *gorm.Config) *gorm.DB {
	t.Helper()
	db := openHandle(t, postgres.Open(testDSN()), gcfg)
	setupSchema(t, db)
	return db
}

// openHandle opens a GORM handle on dial, closed when the test ends, and
// creates nothing. A dial that cannot connect means PostgreSQL is
// unavailable: dial must be the test DSN with at most driver options
// changed.
func openHandle(t testing.TB, dial gorm.Dialector, gcfg *gorm.Config) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(dial, gcfg)
	if err != nil {
		unavailable(t, "PostgreSQL", err)
	}
	return closeWhenDone(t, db)
}

// openDSN opens a GORM handle of its own on dsn, closed when the test
// ends. Unlike openDB it creates nothing: the recording schema must not land
// in whatever schema or role the DSN selects, so the caller opens openDB
// first, and a dsn that does not connect fails the test.
func openDSN(t testing.TB, dsn string) *gorm.DB {
	t.Helper()
	return openDSNWith(t, dsn, &gorm.Config{Logger: logger.Discard})
}

// openDSNWith is openDSN with a GORM configuration of the test's choosing.
func openDSNWith(t testing.TB, dsn string, gcfg *gorm.Config) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(postgres.Open(dsn), gcfg)
	if err != nil {
		t.Fatalf("open %q: %v", dsn, err)
	}
	return closeWhenDone(t, db)
}

// closeWhenDone closes db's connections when the test ends.
func closeWhenDone(t testing.TB, db *gorm.DB) *gorm.DB {
	t.Helper()
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db
}

// dsnWith returns the test DSN with extra settings ("key=value"), which
// override the test DSN's own: pgx keeps the last value of a repeated
// keyword, and the query parameters of a URL over its user part.
func dsnWith(settings ...string) string {
	dsn := testDSN()
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			for _, s := range settings {
				k, v, _ := strings.Cut(s, "=")
				q.Set(k, v)
			}
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	for _, s := range settings {
		k, v, _ := strings.Cut(s, "=")
		dsn += " " + k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	return dsn
}

// ---------------------------------------------------------------------------
// Redis clients and servers

// openRedis opens a Redis client of its own on addr (default: the shared
// test Redis).
func openRedis(t testing.TB, addr string) *redis.Client {
	t.Helper()
	if addr == "" {
		addr = testRedisAddr()
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64, ContextTimeoutEnabled: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		unavailable(t, "Redis", err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// startRedis starts a redis-server of the test's own (testdb.StartRedis):
// stop kills it, restart starts it again on the same port.
func startRedis(t *testing.T, args ...string) (addr string, stop func(), restart func()) {
	t.Helper()
	return testdb.StartRedis(t, args...)
}

// syncBuffer collects a child process's output.
type syncBuffer = testdb.SyncBuffer

// ---------------------------------------------------------------------------
// Application instances

// instance is one application instance: its own *gorm.DB, Redis client and
// Plugin.
type instance struct {
	db *gorm.DB
	p  *Plugin
}

// testConfig is the configuration tests use: Redis timeouts generous enough
// that a loaded 2-core CI machine running -race does not turn slow Redis
// replies into fallbacks, which would make database counts vary.
func testConfig(rdb redis.UniversalClient, prefix string) Config {
	return Config{Redis: rdb, Prefix: prefix, RedisTimeout: 3 * time.Second, MaxWait: time.Minute}
}

func newInstance(t testing.TB, cfg Config) *instance {
	t.Helper()
	return installPlugin(t, openDB(t), cfg)
}

// installPlugin creates a Plugin for cfg, closed when the test ends, and
// installs it on db.
func installPlugin(t testing.TB, db *gorm.DB, cfg Config) *instance {
	t.Helper()
	if cfg.Redis == nil {
		cfg.Redis = openRedis(t, "")
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := db.Use(p); err != nil {
		t.Fatal(err)
	}
	return &instance{db: db, p: p}
}

// newInstances returns n instances sharing one prefix, on the shared Redis.
func newInstances(t testing.TB, n int, mod func(*Config)) []*instance {
	t.Helper()
	return newInstancesAt(t, "", n, mod)
}

// newInstancesAt returns n instances sharing a fresh prefix, each with its
// own client of the Redis at addr (default: the shared test Redis).
func newInstancesAt(t testing.TB, addr string, n int, mod func(*Config)) []*instance {
	t.Helper()
	prefix := testPrefix(t)
	out := make([]*instance, n)
	for i := range out {
		cfg := testConfig(openRedis(t, addr), prefix)
		if mod != nil {
			mod(&cfg)
		}
		out[i] = newInstance(t, cfg)
	}
	return out
}

// sumStats adds up the counters of instances: the cluster's view.
func sumStats(ins ...*instance) Stats {
	var s Stats
	sum := reflect.ValueOf(&s).Elem()
	for _, in := range ins {
		st := reflect.ValueOf(in.p.Stats())
		for i := range sum.NumField() { // every counter, those added later too
			sum.Field(i).SetUint(sum.Field(i).Uint() + st.Field(i).Uint())
		}
	}
	return s
}

// ---------------------------------------------------------------------------
// Schema setups

// schemaLock is the advisory lock of one schema setup. A setup runs in a
// transaction that takes its lock first, so that the same setup in another
// test process (go test runs packages at once; CI jobs may share a
// database) waits for it instead of racing its CREATE OR REPLACE. Every
// setup has a lock of its own, listed here once, so that no two setups wait
// for each other. They are two-key locks (schemaLockClass, id): a key space
// apart from the one-key locks tests take as gates (behGate) and probes
// (gft_chaos_probe), so that no gate or probe waits for, or is counted
// against, a schema setup.
type schemaLock int32

const schemaLockClass = 727

const (
	schemaLockRecording       schemaLock = iota + 1 // setupSchema: gft_calls, gft_record, gft_fail, gft_maybe_fail
	schemaLockBehaviour                             // behSchema: gft_beh_tx, gft_beh_bump
	schemaLockBench                                 // setupBenchSchema: gft_bench_item
	schemaLockChaos                                 // chaosSchema: gft_chaos_kv, gft_chaos_probe
	schemaLockFidelity                              // fidSetup: gft_fid_*
	schemaLockConsistency                           // consSchema: gft_cons_*
	schemaLockLinearizability                       // linSchema: gft_lin_*
	schemaLockInstall                               // installSchema: gft_install_runs, gft_install_run
	schemaLockRefresh                               // refreshSchema: gft_refresh_loads, gft_refresh_load
	schemaLockScale                                 // scaleSchema: gft_scale_kv
	schemaLockCluster                               // clusterSchema: gft_cluster_hot
)

// withSchemaLock runs setup in one transaction that first takes lock.
func withSchemaLock(db *gorm.DB, lock schemaLock, setup func(tx *gorm.DB) error) error {
	return db.Session(&gorm.Session{NewDB: true}).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SELECT pg_advisory_xact_lock(?, ?)", schemaLockClass, int32(lock)).Error; err != nil {
			return err
		}
		return setup(tx)
	})
}

// schemaOnce is a schema setup run once per process under its lock; every
// call reports the first run's error.
type schemaOnce struct {
	lock schemaLock
	once sync.Once
	err  error
}

func (s *schemaOnce) do(db *gorm.DB, setup func(tx *gorm.DB) error) error {
	s.once.Do(func() { s.err = withSchemaLock(db, s.lock, setup) })
	return s.err
}

var recordingSchema = schemaOnce{lock: schemaLockRecording}

// setupSchema creates the recording function the tests count executions
// with: gft_record(tag, ms) inserts a row into gft_calls, sleeps ms
// milliseconds and returns 1. PostgreSQL, not the plugin, does the counting.
func setupSchema(t testing.TB, db *gorm.DB) {
	t.Helper()
	err := recordingSchema.do(db, func(tx *gorm.DB) error {
		return tx.Exec(`
CREATE TABLE IF NOT EXISTS gft_calls (tag text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX IF NOT EXISTS gft_calls_tag ON gft_calls (tag);
CREATE OR REPLACE FUNCTION gft_record(p_tag text, p_ms int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	INSERT INTO gft_calls(tag) VALUES (p_tag);
	IF p_ms > 0 THEN PERFORM pg_sleep(p_ms / 1000.0); END IF;
	RETURN 1;
END $$;
CREATE TABLE IF NOT EXISTS gft_fail (tag text PRIMARY KEY);
CREATE OR REPLACE FUNCTION gft_maybe_fail(p_tag text) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	INSERT INTO gft_calls(tag) VALUES (p_tag);
	IF EXISTS (SELECT 1 FROM gft_fail WHERE tag = p_tag) THEN
		RAISE EXCEPTION 'gft_maybe_fail: % is failing', p_tag;
	END IF;
	RETURN 1;
END $$;`).Error
	})
	if err != nil {
		unavailable(t, "PostgreSQL schema", err)
	}
}

// calls returns how many times PostgreSQL executed a recording function
// with tag.
func calls(t testing.TB, db *gorm.DB, tag string) int64 {
	t.Helper()
	var n int64
	if err := db.Session(&gorm.Session{NewDB: true}).Raw("SELECT count(*) FROM gft_calls WHERE tag = ?", tag).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// ---------------------------------------------------------------------------
// Unique names

// randHex returns 2n random lower-case hex digits: a suffix no other test
// run uses, so that keys, tags, schemas, roles and tables created by
// concurrent runs never collide.
func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testPrefix returns a key prefix no other test (or earlier run) uses.
func testPrefix(t testing.TB) string {
	name := strings.NewReplacer("/", ".", " ", "_", "{", "(", "}", ")").Replace(t.Name())
	return "gft-test:" + name + ":" + randHex(6)
}

// uniqueTag returns a recording tag no other test uses.
func uniqueTag(t testing.TB) string { return testPrefix(t) }

// escapeGlob escapes the glob metacharacters of a Redis KEYS or PUBSUB
// CHANNELS pattern.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// quotedIdent quotes a PostgreSQL identifier.
func quotedIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// ---------------------------------------------------------------------------
// Database objects of a test's own (schemas, roles, views, functions)

// adminExec runs statements as the administrator, failing the test on error.
func adminExec(t testing.TB, admin *gorm.DB, sql string, args ...any) {
	t.Helper()
	if err := admin.Session(&gorm.Session{NewDB: true}).Exec(sql, args...).Error; err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// dropAtEnd runs statements when the test ends, before the handles opened
// earlier close (cleanups run last-in first-out). Register it right after
// creating the objects, before opening connections that use them, so those
// connections are closed when the objects are dropped.
func dropAtEnd(t testing.TB, admin *gorm.DB, statements ...string) {
	t.Helper()
	t.Cleanup(func() {
		for _, s := range statements {
			if err := admin.Session(&gorm.Session{NewDB: true}).Exec(s).Error; err != nil {
				t.Errorf("cleanup %s: %v", s, err)
			}
		}
	})
}

// idName is the row shape of the tenant, role and declared-table tests.
type idName struct {
	ID   int64
	Name string
}

// renderRows renders rows for comparison and messages.
func renderRows(rows []idName) string {
	parts := make([]string, len(rows))
	for i, r := range rows {
		parts[i] = fmt.Sprintf("%d:%s", r.ID, r.Name)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// queryRows runs query uncached on db and renders its rows.
func queryRows(t testing.TB, db *gorm.DB, query string, args ...any) string {
	t.Helper()
	var rows []idName
	if err := db.Session(&gorm.Session{NewDB: true}).Raw(query, args...).Scan(&rows).Error; err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return renderRows(rows)
}

// ---------------------------------------------------------------------------
// Waits

// waitTimeout bounds the usual wait for a condition: long enough for a
// loaded 2-core CI machine running -race. It guards against a hung test; it
// is not a timing assertion.
const waitTimeout = 30 * time.Second

// eventually polls cond until it holds and reports whether it did within
// timeout. It is for conditions the test cannot be notified of (a session
// blocked in PostgreSQL, a subscription confirmed by Redis, a server
// starting); it is a wait, never an assertion about timing. cond runs on
// the caller's goroutine, so it may fail the test itself.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// waitFor waits until cond holds, failing the test after timeout.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !eventually(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// ---------------------------------------------------------------------------
// Redis hooks

// passHook is a redis.Hook that passes dials, commands and pipelines through
// untouched. A test's hook embeds it and overrides only the stage it
// watches.
type passHook struct{}

func (passHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (passHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (passHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// runsScript reports whether a pipeline runs one of the engine's scripts
// (engine.ScriptGenBump, engine.ScriptWriteBegin, ...). engine.ScriptOf
// recognises a script sent as EVAL and as EVALSHA alike.
func runsScript(cmds []redis.Cmder, script string) bool {
	for _, c := range cmds {
		if engine.ScriptOf(c) == script {
			return true
		}
	}
	return false
}

// roundTrips counts Redis round trips: each command or pipeline is one.
type roundTrips struct {
	passHook
	mu    sync.Mutex
	trips []string
}

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.add(cmd.Name())
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
		}
		h.add("pipeline[" + strings.Join(names, " ") + "]")
		return next(ctx, cmds)
	}
}

func (h *roundTrips) add(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.trips = append(h.trips, s)
}

// take returns the round trips counted since the last take.
func (h *roundTrips) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.trips
	h.trips = nil
	return out
}
