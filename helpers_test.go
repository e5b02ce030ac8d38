package gormflight

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

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

// openDB opens a GORM handle of its own, as one application instance has.
func openDB(t testing.TB) *gorm.DB {
	t.Helper()
	return openDBWith(t, &gorm.Config{Logger: logger.Discard})
}

// openDBWith is openDB with a GORM configuration of the test's choosing.
func openDBWith(t testing.TB, gcfg *gorm.Config) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(postgres.Open(testDSN()), gcfg)
	if err != nil {
		unavailable(t, "PostgreSQL", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	setupSchema(t, db)
	return db
}

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

// testPrefix returns a key prefix no other test (or earlier run) uses.
func testPrefix(t testing.TB) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := strings.NewReplacer("/", ".", " ", "_", "{", "(", "}", ")").Replace(t.Name())
	return "gft-test:" + name + ":" + hex.EncodeToString(b[:])
}

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

// newInstances returns n instances sharing one prefix.
func newInstances(t testing.TB, n int, mod func(*Config)) []*instance {
	t.Helper()
	prefix := testPrefix(t)
	out := make([]*instance, n)
	for i := range out {
		cfg := testConfig(openRedis(t, ""), prefix)
		if mod != nil {
			mod(&cfg)
		}
		out[i] = newInstance(t, cfg)
	}
	return out
}

var schemaOnce sync.Once
var schemaErr error

// setupSchema creates the recording function the tests count executions
// with: gft_record(tag, ms) inserts a row into gft_calls, sleeps ms
// milliseconds and returns 1. PostgreSQL, not the plugin, does the counting.
func setupSchema(t testing.TB, db *gorm.DB) {
	t.Helper()
	schemaOnce.Do(func() {
		schemaErr = db.Transaction(func(tx *gorm.DB) error {
			// Serialise with other test processes creating the same objects.
			if err := tx.Exec("SELECT pg_advisory_xact_lock(727001)").Error; err != nil {
				return err
			}
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
	})
	if schemaErr != nil {
		unavailable(t, "PostgreSQL schema", schemaErr)
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

// uniqueTag returns a recording tag no other test uses.
func uniqueTag(t testing.TB) string { return testPrefix(t) }

// sumStats adds up the counters of instances: the cluster's view.
func sumStats(ins ...*instance) Stats {
	var s Stats
	for _, in := range ins {
		st := in.p.Stats()
		s.Hits += st.Hits
		s.Misses += st.Misses
		s.Loads += st.Loads
		s.Shared += st.Shared
		s.Waits += st.Waits
		s.Fallbacks += st.Fallbacks
		s.RedisErrors += st.RedisErrors
		s.Uncached += st.Uncached
		s.Bypassed += st.Bypassed
		s.DecodeErrors += st.DecodeErrors
		s.LockTakeovers += st.LockTakeovers
		s.WaitTimeouts += st.WaitTimeouts
		s.BreakerOpens += st.BreakerOpens
		s.Invalidations += st.Invalidations
		s.InvalidationErrors += st.InvalidationErrors
	}
	return s
}
