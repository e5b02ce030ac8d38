package gormflight

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// A scale model of a cluster: many application instances in one process,
// each with its own Plugin and its own Redis client and connections, on
// one redis-server of the test's own (so that its counters count the model
// only) and one PostgreSQL. The instances share one *sql.DB pool under
// handles of their own, so that PostgreSQL's max_connections holds.
//
// Every instance is released at once on one cold key, then on scaleKeys
// cold keys (each instance reading a few of them at once); then the first
// key, now hot, is read by a few callers per instance, from Redis, then
// from the near cache (Local). For each phase the test reports what
// PostgreSQL executed (gft_record), what Redis processed (INFO
// commandstats, stats and cpu deltas, per command) and what the clients
// sent, how long waiters took to return once the entry was available, and
// the calls' latencies. It asserts one execution per key, no failed call,
// and that Redis's work per stampede grows at most linearly with the
// instances, between two sizes of one run; it asserts no timing.
//
// CI runs 100 and 200 instances; GORMFLIGHT_SCALE=1 runs 200 and 1,000:
//
//	GORMFLIGHT_SCALE=1 go test -race -count=1 -run TestScaleModel -v -timeout 60m .

const (
	scaleKeys    = 100 // cold keys of the second stampede
	scaleQueryMS = 200 // how long the query takes
	// scalePoolConns are the shared *sql.DB's connections: the model's
	// instances share them, where real ones would have pools of their own.
	scalePoolConns = 20
	// scaleRedisPool is each instance's Redis pool, its pub/sub
	// connection aside: enough for its concurrent flights, and few enough
	// that the model's connections fit in one process's file descriptors.
	scaleRedisPool = 12
	// The model runs a cluster's work on one 2-core machine under -race:
	// releasing thousands of callers takes seconds, where real instances
	// reach their wait in milliseconds. Its bounds are raised so that this
	// slowness turns into neither fallbacks nor extra commands: Redis
	// operations and waits get scaleTimeout (defaults: RedisTimeout
	// 250ms, MaxWait 10s), and LockExpiry is scaleTimeout too, since
	// every waiter re-checks at half of it (default 2s: every second).
	scaleTimeout = 10 * time.Minute
	// scaleGrowthSlack bounds Redis's work at the larger size, against the
	// smaller size's scaled by the ratio of instances.
	scaleGrowthSlack = 1.5
)

// scalePlan is what the model runs: at each size (numbers of instances,
// smallest first), a stampede on one key, one on scaleKeys keys of which
// each instance reads keysEach at once, then hotCallers callers per
// instance reading the first key hotReads times each, one read after
// another, from Redis, then from the near cache.
type scalePlan struct {
	sizes                          []int
	keysEach, hotCallers, hotReads int
}

// scalePlanned is the full model with GORMFLIGHT_SCALE=1, and a reduced
// one for CI otherwise.
func scalePlanned() scalePlan {
	if os.Getenv("GORMFLIGHT_SCALE") == "1" {
		return scalePlan{sizes: []int{200, 1000}, keysEach: 10, hotCallers: 4, hotReads: 5}
	}
	return scalePlan{sizes: []int{100, 200}, keysEach: 5, hotCallers: 2, hotReads: 2}
}

// scaleSQL reads key k of gft_scale_kv, recorded under a tag of the key's.
const scaleSQL = "SELECT k, v, gft_record(?, ?) AS n FROM gft_scale_kv WHERE k = ?"

// scaleTTL is the entries' TTL. A stored value records how long its load
// took from its lock attempt, the model's gate hold included (a minute or
// more at 1,000 instances): with a TTL not far above that, refresh-ahead
// would reload the keys right after the stampede, as XFetch should for a
// query that slow.
const scaleTTL = time.Hour

type scaleRow struct {
	K int
	V string
	N int
}

var scaleSchema = schemaOnce{lock: schemaLockScale}

// setupScaleSchema creates gft_scale_kv, keys 0 to scaleKeys-1, never
// written: no bump ever makes its entries stale.
func setupScaleSchema(t *testing.T, db *gorm.DB) {
	t.Helper()
	err := scaleSchema.do(db, func(tx *gorm.DB) error {
		if err := tx.Exec("CREATE TABLE IF NOT EXISTS gft_scale_kv (k int PRIMARY KEY, v text NOT NULL)").Error; err != nil {
			return err
		}
		return tx.Exec("INSERT INTO gft_scale_kv SELECT k, 'v' || k FROM generate_series(0, ?) k ON CONFLICT (k) DO NOTHING", scaleKeys-1).Error
	})
	if err != nil {
		unavailable(t, "PostgreSQL schema", err)
	}
}

func TestScaleModel(t *testing.T) {
	addr, _, _ := startRedis(t, "--maxclients", "19000")
	probe := newRedisProbe(t, addr)
	admin := openDB(t)
	setupScaleSchema(t, admin)
	sqlDB, err := admin.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(scalePoolConns)
	sqlDB.SetMaxIdleConns(scalePoolConns)

	plan := scalePlanned()
	var results []scaleResult
	for _, n := range plan.sizes {
		t.Run(fmt.Sprintf("instances=%d", n), func(t *testing.T) {
			m := &scaleModel{admin: admin, probe: probe, prefix: testPrefix(t), sent: newScaleSent()}
			began := time.Now()
			m.ins = newScaleInstances(t, addr, sqlDB, m.prefix, n, m.sent, m.holdLoad)
			t.Logf("%d instances created in %v", n, time.Since(began).Round(time.Millisecond))
			for _, ph := range plan.phases(n) {
				if ph.local > 0 {
					m.warmLocal(t, ph)
				}
				results = append(results, m.run(t, ph))
				if t.Failed() {
					return
				}
			}
		})
	}
	logScaleTable(t, results)
	checkScaleGrowth(t, plan, results)
}

// scalePhase is one release of every instance's callers.
type scalePhase struct {
	name string
	// keysOf names the stampede whose keys the phase reads: its own name
	// for a stampede on cold keys, an earlier one's to read stored keys.
	keysOf string
	reads  [][]int       // per instance, the key of each of its callers
	repeat int           // reads per caller, one after another
	local  time.Duration // Local(maxStale) on every read; 0: none
}

// stampede reports whether the phase reads cold keys.
func (ph scalePhase) stampede() bool { return ph.keysOf == ph.name }

// phases are the phases of a model of n instances: the two stampedes,
// then reads of the first one's key, now hot, from Redis and from the near
// cache.
func (p scalePlan) phases(n int) []scalePhase {
	one, hot := make([][]int, n), make([][]int, n)
	for i := range n {
		one[i], hot[i] = []int{0}, make([]int, p.hotCallers) // key 0
	}
	keys := fmt.Sprintf("%d keys", scaleKeys)
	return []scalePhase{
		{name: "1 key", keysOf: "1 key", reads: one, repeat: 1},
		{name: keys, keysOf: keys, reads: scaleSubsets(n, p.keysEach), repeat: 1},
		{name: "hot", keysOf: "1 key", reads: hot, repeat: p.hotReads},
		{name: "hot Local", keysOf: "1 key", reads: hot, repeat: p.hotReads, local: time.Minute},
	}
}

// newScaleInstances returns n instances sharing prefix, each with its own
// Redis client of the server at addr and its own *gorm.DB on sqlDB, and
// with seam as its engine's seam. Each client's pool has one connection
// open, as a running instance's would.
func newScaleInstances(t *testing.T, addr string, sqlDB *sql.DB, prefix string, n int, sent *scaleSent, seam func(point, key string)) []*instance {
	t.Helper()
	out := make([]*instance, n)
	for i := range out {
		rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: scaleRedisPool, PoolTimeout: scaleTimeout, ContextTimeoutEnabled: true})
		rdb.AddHook(scaleHook{sent: sent})
		t.Cleanup(func() { _ = rdb.Close() })
		if err := rdb.Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(rdb, prefix)
		cfg.RedisTimeout, cfg.MaxWait, cfg.LockExpiry = scaleTimeout, scaleTimeout, scaleTimeout
		out[i] = installPlugin(t, db, cfg)
		out[i].p.engine.SetSeam(seam)
	}
	return out
}

// scaleSubsets gives each of n instances each distinct keys of scaleKeys,
// at random, such that every key is read by as many instances
// (n*each/scaleKeys, for n a multiple of scaleKeys/each).
func scaleSubsets(n, each int) [][]int {
	groups := scaleKeys / each
	out := make([][]int, n)
	var perm []int
	for i := range out {
		g := i % groups
		if g == 0 {
			perm = rand.Perm(scaleKeys)
		}
		out[i] = perm[g*each : (g+1)*each]
	}
	return out
}

// scaleModel is the cluster of one size.
type scaleModel struct {
	ins    []*instance
	prefix string   // the instances' key prefix
	admin  *gorm.DB // counts the executions
	probe  *redisProbe
	sent   *scaleSent
	// gate, while open, holds every load before its query (holdLoad).
	gate atomic.Pointer[chan struct{}]
}

// holdLoad is every engine's seam. It holds each load, after it took the
// lock and before its query, until the test closes the gate, once every
// other caller waits: without it, on a loaded 2-core machine under -race,
// releasing thousands of callers takes longer than the query, and late
// callers would find the entry stored instead of joining the stampede.
// Loads hold no database connection there.
func (m *scaleModel) holdLoad(point, _ string) {
	if g := m.gate.Load(); g != nil && point == engine.SeamStamped {
		<-*g
	}
}

// subscribed returns how many flights wait for another instance's load.
func (m *scaleModel) subscribed() int {
	n := 0
	for _, in := range m.ins {
		n += in.p.engine.Subscribed()
	}
	return n
}

// scaleCall is one caller. Its context carries it to scaleHook, which
// records when a flight the call started stored the entry and told the
// waiters.
type scaleCall struct {
	key               int
	stored            atomic.Int64 // UnixNano when that store was sent; 0: not this call's flight
	started, returned time.Time
	err               error
}

type scaleCallKey struct{}

// scaleHook is every instance's Redis hook. It counts the commands and
// round trips the clients send (pub/sub commands do not pass through
// hooks). When a pipeline that stores an entry and publishes "ready"
// (readyStored) succeeds, it records when it was sent in the scaleCall of
// the flight's context (which carries its starting caller's values:
// context.WithoutCancel keeps them). The entry is available from then on,
// give or take Redis's handling of the pipeline; the time the client reads
// the answer would add the loader's wait for a CPU, which on a machine
// running a thousand instances can exceed the waiters' own wake-up.
type scaleHook struct {
	passHook
	sent *scaleSent
}

func (h scaleHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.sent.add(cmd)
		return next(ctx, cmd)
	}
}

func (h scaleHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.sent.add(cmds...)
		sent := time.Now()
		err := next(ctx, cmds)
		c, ok := ctx.Value(scaleCallKey{}).(*scaleCall)
		if !ok {
			return err
		}
		for _, cmd := range cmds {
			if a := cmd.Args(); cmd.Name() == "publish" && len(a) == 3 && a[2] == any("1") && cmd.Err() == nil {
				c.stored.CompareAndSwap(0, sent.UnixNano())
			}
		}
		return err
	}
}

// scaleSent counts what the instances' clients send, by command (a script
// by its name: "eval gen_read"), and their round trips.
type scaleSent struct {
	mu    sync.Mutex
	cmds  map[string]int64
	trips int64
}

func newScaleSent() *scaleSent { return &scaleSent{cmds: map[string]int64{}} }

// add counts one round trip carrying cmds; a handshake's are not counted
// as round trips.
func (s *scaleSent) add(cmds ...redis.Cmder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	setup := true
	for _, c := range cmds {
		name := c.Name()
		if script := engine.ScriptOf(c); script != "" {
			name += " " + script
		}
		s.cmds[name]++
		setup = setup && scaleSetup[name]
	}
	if !setup {
		s.trips++
	}
}

// snapshot returns the counts so far.
func (s *scaleSent) snapshot() (map[string]int64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.cmds), s.trips
}

// since returns what was sent since a snapshot.
func (s *scaleSent) since(cmds map[string]int64, trips int64) (map[string]int64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := map[string]int64{}
	for name, n := range s.cmds {
		if n -= cmds[name]; n > 0 {
			d[name] = n
		}
	}
	return d, s.trips - trips
}

// scaleResult is what one stampede measured.
type scaleResult struct {
	instances int
	name      string
	stampede  bool
	calls     int
	failed    int
	execs     map[string]int64 // per key's tag, counted by PostgreSQL
	redis     redisDelta
	sent      map[string]int64 // commands the clients sent
	trips     int64            // and their round trips
	stats     Stats            // the instances' counters, summed
	cpu, wall time.Duration    // the process's CPU time, and the phase's
	// wake: per waiter (every caller but the loaders), from the store that
	// made its key's entry available to its return; wakeLoader: from the
	// loader's caller returning; stampedes only. latency: per call.
	wake, wakeLoader, latency []time.Duration
}

// run releases the phase's callers all at once and measures what they
// cost. A stampede's loads pass the gate once every other caller waits for
// them. It fails the test on a failed call, and on a key PostgreSQL did
// not run exactly once (for the hot phases: in all, since the stampede).
func (m *scaleModel) run(t *testing.T, ph scalePhase) scaleResult {
	t.Helper()
	tagOf := func(k int) string { return m.prefix + ":" + ph.keysOf + ":" + strconv.Itoa(k) }
	gate := make(chan struct{})
	m.gate.Store(&gate)
	calls, start, wg, failed := m.launch(ph, tagOf)
	keys := map[int]bool{}
	for _, c := range calls {
		keys[c.key] = true
	}
	r := scaleResult{instances: len(m.ins), name: ph.name, stampede: ph.stampede(), calls: len(calls)}
	statsBefore, cpuBefore := sumStats(m.ins...), processCPU()
	sentBefore, tripsBefore := m.sent.snapshot()
	before := m.probe.read(t)
	released := time.Now()
	close(start)
	if ph.stampede() {
		m.awaitWaiters(t, len(calls)-len(keys), failed) // every flight but one per key
	}
	close(gate)
	wg.Wait()
	r.wall = time.Since(released)
	polls := m.probe.awaitNoChannels(t, m.prefix)
	r.redis = m.probe.delta(before, m.probe.read(t), polls)
	r.cpu = processCPU() - cpuBefore
	r.sent, r.trips = m.sent.since(sentBefore, tripsBefore)
	r.stats = subStats(sumStats(m.ins...), statsBefore)
	if ph.stampede() {
		r.wake, r.wakeLoader = wakeUps(calls)
	}
	for _, c := range calls {
		r.latency = append(r.latency, c.returned.Sub(c.started))
	}
	slices.Sort(r.latency)
	r.execs = executionsByTag(t, m.admin, slices.Collect(func(yield func(string) bool) {
		for k := range keys {
			if !yield(tagOf(k)) {
				return
			}
		}
	}))
	m.check(t, &r, calls, len(keys))
	return r
}

// awaitWaiters waits until n flights wait for another instance's load, or
// a call failed.
func (m *scaleModel) awaitWaiters(t *testing.T, n int, failed *atomic.Int64) {
	t.Helper()
	var looked time.Time
	waitFor(t, "every caller but the loaders to wait", scaleTimeout, func() bool {
		if time.Since(looked) < 20*time.Millisecond {
			return false // a look locks every instance's hub: not too often
		}
		looked = time.Now()
		return m.subscribed() == n || failed.Load() > 0
	})
}

// warmLocal brings every instance's near cache to its steady state ahead
// of ph: a read each starts its subscription to the bumps, and reads go on
// until every instance serves the key from memory (a near cache keeps
// nothing read before it is subscribed).
func (m *scaleModel) warmLocal(t *testing.T, ph scalePhase) {
	t.Helper()
	waitFor(t, "every near cache to serve the key", scaleTimeout, func() bool {
		before := sumStats(m.ins...).LocalHits
		var wg sync.WaitGroup
		for _, in := range m.ins {
			wg.Go(func() {
				if err := scaleRead(in.db, &scaleCall{key: 0}, m.prefix+":"+ph.keysOf+":0", ph.local); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		return sumStats(m.ins...).LocalHits-before == uint64(len(m.ins))
	})
}

// check fails the test on a failed call, and on a key PostgreSQL did not
// run exactly once.
func (m *scaleModel) check(t *testing.T, r *scaleResult, calls []*scaleCall, keys int) {
	t.Helper()
	for _, c := range calls {
		if c.err == nil {
			continue
		}
		if r.failed++; r.failed <= 3 {
			t.Errorf("%d instances, %s, key %d: %v", r.instances, r.name, c.key, c.err)
		}
	}
	if r.failed > 0 {
		t.Errorf("%d instances, %s: %d of %d calls failed", r.instances, r.name, r.failed, r.calls)
	}
	if len(r.execs) != keys {
		t.Errorf("%d instances, %s: PostgreSQL ran %d of the %d keys", r.instances, r.name, len(r.execs), keys)
	}
	for tag, n := range r.execs {
		if n != 1 {
			t.Errorf("%d instances, %s: PostgreSQL ran %s %d times, want 1", r.instances, r.name, tag, n)
		}
	}
}

// launch starts a goroutine per caller of ph, each waiting for start to
// close, then reading its key ph.repeat times. failed counts the calls
// that failed.
func (m *scaleModel) launch(ph scalePhase, tagOf func(int) string) ([]*scaleCall, chan struct{}, *sync.WaitGroup, *atomic.Int64) {
	start := make(chan struct{})
	wg, failed := new(sync.WaitGroup), new(atomic.Int64)
	var calls []*scaleCall
	for i, keys := range ph.reads {
		db := m.ins[i].db
		for _, k := range keys {
			mine := make([]*scaleCall, ph.repeat)
			for j := range mine {
				mine[j] = &scaleCall{key: k}
			}
			calls = append(calls, mine...)
			wg.Go(func() {
				<-start
				for _, c := range mine {
					if c.err = scaleRead(db, c, tagOf(k), ph.local); c.err != nil {
						failed.Add(1)
					}
				}
			})
		}
	}
	return calls, start, wg, failed
}

// scaleRead runs c's cached query on db, with the near cache when local is
// not 0, and checks its row.
func scaleRead(db *gorm.DB, c *scaleCall, tag string, local time.Duration) error {
	var opts []Option
	if local > 0 {
		opts = append(opts, Local(local))
	}
	ctx := context.WithValue(context.Background(), scaleCallKey{}, c)
	var r scaleRow
	c.started = time.Now()
	err := db.WithContext(ctx).Scopes(Cache(scaleTTL, opts...)).Raw(scaleSQL, tag, scaleQueryMS, c.key).Scan(&r).Error
	c.returned = time.Now()
	if want := (scaleRow{K: c.key, V: "v" + strconv.Itoa(c.key), N: 1}); err == nil && r != want {
		return fmt.Errorf("got %+v, want %+v", r, want)
	}
	return err
}

// processCPU returns the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// wakeUps returns, sorted, each waiter's time from the store of its key's
// entry to its return, and from its key's loader returning to its return.
// A loader is the call whose flight stored the entry; when two did (the
// execution counts then fail the test), the first store counts.
func wakeUps(calls []*scaleCall) (fromStore, fromLoader []time.Duration) {
	type load struct{ stored, returned time.Time }
	loads := map[int]load{}
	for _, c := range calls {
		ns := c.stored.Load()
		if ns == 0 {
			continue
		}
		if l, ok := loads[c.key]; !ok || time.Unix(0, ns).Before(l.stored) {
			loads[c.key] = load{time.Unix(0, ns), c.returned}
		}
	}
	for _, c := range calls {
		l, ok := loads[c.key]
		if c.stored.Load() != 0 || c.err != nil || !ok {
			continue
		}
		fromStore = append(fromStore, c.returned.Sub(l.stored))
		fromLoader = append(fromLoader, c.returned.Sub(l.returned))
	}
	slices.Sort(fromStore)
	slices.Sort(fromLoader)
	return fromStore, fromLoader
}

// executionsByTag returns how many times PostgreSQL executed the recording
// function with each of tags.
func executionsByTag(t *testing.T, db *gorm.DB, tags []string) map[string]int64 {
	t.Helper()
	var rows []struct {
		Tag string
		N   int64
	}
	err := db.Session(&gorm.Session{NewDB: true}).
		Raw("SELECT tag, count(*) AS n FROM gft_calls WHERE tag IN ? GROUP BY tag", tags).Scan(&rows).Error
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.Tag] = r.N
	}
	return out
}

// subStats returns a - b, counter by counter.
func subStats(a, b Stats) Stats {
	av, bv := reflect.ValueOf(&a).Elem(), reflect.ValueOf(b)
	for i := range av.NumField() {
		av.Field(i).SetUint(av.Field(i).Uint() - bv.Field(i).Uint())
	}
	return a
}

// redisProbe reads the counters of the model's redis-server. Its own
// commands are counted there too: it keeps account of them, on the wire,
// and leaves them out of every delta.
type redisProbe struct {
	rdb *redis.Client // RESP2, whose replies' sizes are plain to count
}

func newRedisProbe(t *testing.T, addr string) *redisProbe {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, PoolSize: 1})
	t.Cleanup(func() { _ = rdb.Close() })
	return &redisProbe{rdb: rdb}
}

// redisCounters are the server's counters at one INFO.
type redisCounters struct {
	calls, usec    map[string]int64 // per command (INFO commandstats)
	commands       int64            // total_commands_processed
	in, out        int64            // total_net_input_bytes, total_net_output_bytes
	cpu            time.Duration    // used_cpu_user + used_cpu_sys
	request, reply int64            // that INFO's bytes on the wire
}

// redisDelta is what the server processed between two reads, less the
// probe's own traffic (its CPU time aside: the probe's few commands are a
// negligible part of it).
type redisDelta struct {
	calls, usec       map[string]int64
	commands, in, out int64
	cpu               time.Duration
}

// probeTraffic is the probe's own traffic between two reads.
type probeTraffic struct{ commands, in, out int64 }

func (p *redisProbe) read(t *testing.T) redisCounters {
	t.Helper()
	args := []string{"info", "stats", "commandstats", "cpu"}
	info, err := p.rdb.Info(context.Background(), args[1:]...).Result()
	if err != nil {
		t.Fatal(err)
	}
	c := redisCounters{calls: map[string]int64{}, usec: map[string]int64{},
		request: respRequestLen(args...), reply: respBulkLen(info)}
	for _, line := range strings.Split(info, "\r\n") {
		name, val, _ := strings.Cut(line, ":")
		n, _ := strconv.ParseInt(val, 10, 64)
		switch name {
		case "total_commands_processed":
			c.commands = n
		case "total_net_input_bytes":
			c.in = n
		case "total_net_output_bytes":
			c.out = n
		case "used_cpu_user", "used_cpu_sys":
			secs, _ := strconv.ParseFloat(val, 64)
			c.cpu += time.Duration(secs * float64(time.Second))
		}
		if cmd, ok := strings.CutPrefix(name, "cmdstat_"); ok {
			for field := range strings.SplitSeq(val, ",") { // calls=N,usec=U,...
				k, v, _ := strings.Cut(field, "=")
				switch n, _ := strconv.ParseInt(v, 10, 64); k {
				case "calls":
					c.calls[cmd] = n
				case "usec":
					c.usec[cmd] = n
				}
			}
		}
	}
	return c
}

// delta returns what the server processed from before to after, less the
// probe's own: Redis counts a command and its reply's bytes once it has
// run it, and its request's bytes once it has read it. So the window holds
// before's INFO as a command and as a reply, after's INFO as a request,
// and the polls in between.
func (p *redisProbe) delta(before, after redisCounters, polls probeTraffic) redisDelta {
	d := redisDelta{
		calls:    map[string]int64{},
		usec:     map[string]int64{},
		commands: after.commands - before.commands - 1 - polls.commands,
		in:       after.in - before.in - after.request - polls.in,
		out:      after.out - before.out - before.reply - polls.out,
		cpu:      after.cpu - before.cpu,
	}
	for name, n := range after.calls {
		if n -= before.calls[name]; n > 0 && name != "info" && name != "pubsub|channels" {
			d.calls[name] = n
			d.usec[name] = after.usec[name] - before.usec[name]
		}
	}
	return d
}

// awaitNoChannels waits until no channel under prefix is subscribed: the
// waiters' UNSUBSCRIBEs, which they send without waiting for Redis, have
// all been processed. It returns its own traffic.
func (p *redisProbe) awaitNoChannels(t *testing.T, prefix string) probeTraffic {
	t.Helper()
	var tr probeTraffic
	pattern := escapeGlob(prefix) + "*"
	waitFor(t, "the waiters' unsubscriptions", waitTimeout, func() bool {
		chans, err := p.rdb.PubSubChannels(context.Background(), pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		tr.commands++
		tr.in += respRequestLen("pubsub", "channels", pattern)
		tr.out += int64(len("*" + strconv.Itoa(len(chans)) + "\r\n"))
		for _, c := range chans {
			tr.out += respBulkLen(c)
		}
		return len(chans) == 0
	})
	return tr
}

// respRequestLen is the size of a command on the wire (RESP).
func respRequestLen(args ...string) int64 {
	n := int64(len("*" + strconv.Itoa(len(args)) + "\r\n"))
	for _, a := range args {
		n += respBulkLen(a)
	}
	return n
}

// respBulkLen is the size of a RESP bulk string.
func respBulkLen(s string) int64 {
	return int64(len("$"+strconv.Itoa(len(s))+"\r\n") + len(s) + 2)
}

// logScaleTable prints the figures of every phase: executions and
// timings, then Redis's work, then its breakdown per command.
func logScaleTable(t *testing.T, rs []scaleResult) {
	t.Helper()
	ms := func(ds []time.Duration, p int) string {
		if len(ds) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(percentile(ds, p))/float64(time.Millisecond))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\ncalls and timings, ms (wake: from the store, or from the loader's return, to a waiter's return; cpu: this process's, per call; wall: the phase's, s)\n")
	fmt.Fprintf(&b, "%9s %-9s %6s %5s %5s %6s %8s %8s %8s %8s %8s %8s %7s %6s\n", "instances", "phase", "calls", "keys",
		"execs", "failed", "wake p50", "wake p99", "wake max", "ldr p99", "lat p50", "lat p99", "cpu", "wall")
	for _, r := range rs {
		var execs int64
		for _, n := range r.execs {
			execs += n
		}
		fmt.Fprintf(&b, "%9d %-9s %6d %5d %5d %6d %8s %8s %8s %8s %8s %8s %7.2f %6.1f\n", r.instances, r.name, r.calls,
			len(r.execs), execs, r.failed, ms(r.wake, 50), ms(r.wake, 99), ms(r.wake, 100), ms(r.wakeLoader, 99),
			ms(r.latency, 50), ms(r.latency, 99), float64(r.cpu)/float64(time.Millisecond)/float64(r.calls), r.wall.Seconds())
	}
	fmt.Fprintf(&b, "\nRedis: commands processed (INFO: with those Lua scripts run) and sent (the clients' hooks: no pub/sub, no handshakes), round trips, bytes, Redis's CPU; per key = per stampede\n")
	fmt.Fprintf(&b, "%9s %-9s %9s %8s %8s %9s %10s %10s %10s %8s %8s %9s %8s\n", "instances", "phase", "processed", "per call",
		"per key", "sent/call", "trips/call", "in bytes", "out bytes", "in/key", "out/key", "cpu ms", "µs/call")
	for _, r := range rs {
		k, c := float64(len(r.execs)), float64(r.calls)
		var sent int64
		for name, n := range r.sent {
			if !scaleSetup[name] {
				sent += n
			}
		}
		fmt.Fprintf(&b, "%9d %-9s %9d %8.2f %8.0f %9.2f %10.2f %10d %10d %8.0f %8.0f %9.1f %8.1f\n", r.instances, r.name,
			r.redis.commands, float64(r.redis.commands)/c, float64(r.redis.commands)/k, float64(sent)/c, float64(r.trips)/c,
			r.redis.in, r.redis.out, float64(r.redis.in)/k, float64(r.redis.out)/k,
			float64(r.redis.cpu)/float64(time.Millisecond), float64(r.redis.cpu)/float64(time.Microsecond)/c)
	}
	for _, r := range rs {
		s := r.stats
		fmt.Fprintf(&b, "\n%d instances, %s, per call:\n  processed (µs of Redis per call):%s\n  sent:%s\n", r.instances, r.name,
			perCall(r.redis.calls, r.redis.usec, r.calls), perCall(r.sent, nil, r.calls))
		fmt.Fprintf(&b, "  plugin stats: hits %d, misses %d, waits %d, loads %d, shared %d, local hits %d, refreshes %d, fallbacks %d, redis errors %d, takeovers %d, wait timeouts %d\n",
			s.Hits, s.Misses, s.Waits, s.Loads, s.Shared, s.LocalHits, s.RefreshesStarted, s.Fallbacks, s.RedisErrors, s.LockTakeovers, s.WaitTimeouts)
	}
	t.Log(b.String())
}

// scaleSetup are the commands of a new connection's handshake, counted
// apart from the commands the engine sends.
var scaleSetup = map[string]bool{"hello": true, "client": true}

// perCall renders counts by command, most first, each divided by calls,
// with the time Redis spent on it per call when usec is not nil.
func perCall(counts, usec map[string]int64, calls int) string {
	names := slices.Collect(maps.Keys(counts))
	slices.SortFunc(names, func(x, y string) int {
		return cmp.Or(cmp.Compare(counts[y], counts[x]), cmp.Compare(x, y))
	})
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, " %s %.2f", name, float64(counts[name])/float64(calls))
		if usec != nil {
			fmt.Fprintf(&b, " (%.1fµs)", float64(usec[name])/float64(calls))
		}
	}
	return b.String()
}

// checkScaleGrowth asserts that Redis's work per stampede grows at most
// linearly with the instances: at the largest size, at most
// scaleGrowthSlack times the smallest size's commands scaled by the ratio
// of instances.
func checkScaleGrowth(t *testing.T, plan scalePlan, rs []scaleResult) {
	t.Helper()
	small, large := plan.sizes[0], plan.sizes[len(plan.sizes)-1]
	for _, a := range rs {
		for _, b := range rs {
			if !a.stampede || a.instances != small || b.instances != large || a.name != b.name {
				continue
			}
			scale := float64(large) / float64(small)
			ratio := float64(b.redis.commands) / float64(a.redis.commands)
			t.Logf("%s: Redis commands at %d instances / at %d = %.2f (instances: %.1f; bound %.2f)", a.name, large, small, ratio, scale, scale*scaleGrowthSlack)
			if ratio > scale*scaleGrowthSlack {
				t.Errorf("%s: Redis commands grew %.2f times from %d to %d instances, more than %.2f", a.name, ratio, small, large, scale*scaleGrowthSlack)
			}
		}
	}
}
