package gormflight

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/gormflight/gormflight/observe"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
)

// Benchmarks of the hit path against its two reference points (a plain
// Redis GET of the same entry, and the same query on PostgreSQL without the
// cache), and of a cold-key stampede across instances.
//
//	go test -run '^$' -bench 'Hit|RedisGet|Postgres' -benchmem -count 10 .
//	go test -run '^$' -bench Stampede -benchtime 50x -count 3 .

// benchItemRows is how many rows gft_bench_item holds.
const benchItemRows = 100

// benchRowCounts are the result sizes the hit-path benchmarks compare.
var benchRowCounts = []int{1, 100}

// benchItem is one row of gft_bench_item: columns of mixed types, as a
// typical application table has.
type benchItem struct {
	ID        int64
	Name      string
	Price     float64   // numeric(10,2)
	Qty       int32     // integer
	Active    bool      // boolean
	CreatedAt time.Time // timestamptz
	Tags      string    // text[], in PostgreSQL's text form
}

func (benchItem) TableName() string { return "gft_bench_item" }

var benchSchemaSetup = schemaOnce{lock: schemaLockBench}

// setupBenchSchema creates gft_bench_item with benchItemRows deterministic
// rows, once per process.
func setupBenchSchema(b testing.TB, db *gorm.DB) {
	b.Helper()
	err := benchSchemaSetup.do(db, func(tx *gorm.DB) error {
		if err := tx.Exec(`
CREATE TABLE IF NOT EXISTS gft_bench_item (
	id         bigint PRIMARY KEY,
	name       text NOT NULL,
	price      numeric(10,2) NOT NULL,
	qty        integer NOT NULL,
	active     boolean NOT NULL,
	created_at timestamptz NOT NULL,
	tags       text[] NOT NULL
)`).Error; err != nil {
			return err
		}
		return tx.Exec(`
INSERT INTO gft_bench_item (id, name, price, qty, active, created_at, tags)
SELECT i, 'item number ' || i, i * 1.25, i * 3, i % 2 = 0,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour',
       ARRAY['tag' || i, 'common', 'bench']
FROM generate_series(1, ?) AS i
ON CONFLICT (id) DO NOTHING;`, benchItemRows).Error
	})
	if err != nil {
		unavailable(b, "PostgreSQL bench schema", err)
	}
}

// benchQuery is the query every hit-path benchmark runs, with or without
// the cache scope (with opts). db must be a fresh handle (not a chain in
// progress).
func benchQuery(db *gorm.DB, cached bool, n int, opts ...Option) ([]benchItem, error) {
	var items []benchItem
	if cached {
		db = db.Scopes(Cache(time.Hour, opts...))
	}
	err := db.Where("id <= ?", n).Order("id").Find(&items).Error
	return items, err
}

func checkBenchItems(b *testing.B, items []benchItem, n int) {
	b.Helper()
	if len(items) != n {
		b.Fatalf("got %d rows, want %d", len(items), n)
	}
	for i, it := range items {
		if it.ID != int64(i+1) || it.Name != fmt.Sprintf("item number %d", i+1) ||
			it.Price != float64(i+1)*1.25 || it.Qty != int32(3*(i+1)) || it.Active != ((i+1)%2 == 0) ||
			it.CreatedAt.IsZero() || it.Tags == "" {
			b.Fatalf("row %d: unexpected %+v", i, it)
		}
	}
}

// deletePrefix removes every key under prefix when the benchmark ends. The
// prefix is unique to the benchmark, so nothing else is touched.
func deletePrefix(b testing.TB, rdb *redis.Client, prefix string) {
	b.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			_ = rdb.Del(ctx, iter.Val()).Err()
		}
	})
}

// primedInstance returns an instance with the query for n rows stored in
// Redis, the Redis client it uses and the key of the stored entry.
func primedInstance(b *testing.B, n int, mod func(*Config)) (*instance, *redis.Client, string) {
	b.Helper()
	rdb := openRedis(b, "")
	prefix := testPrefix(b)
	deletePrefix(b, rdb, prefix)
	cfg := testConfig(rdb, prefix)
	if mod != nil {
		mod(&cfg)
	}
	in := newInstance(b, cfg)
	setupBenchSchema(b, in.db)

	items, err := benchQuery(in.db, true, n)
	if err != nil {
		b.Fatal(err)
	}
	checkBenchItems(b, items, n)
	if st := in.p.Stats(); st.Loads != 1 || st.Uncached != 0 || st.Fallbacks != 0 {
		b.Fatalf("priming did not store an entry: %+v", st)
	}
	ks, err := rdb.Keys(context.Background(), prefix+":*:"+engine.EntryKind).Result()
	if err != nil {
		b.Fatal(err)
	}
	if len(ks) != 1 {
		b.Fatalf("want exactly one entry under %s, got %q", prefix, ks)
	}
	return in, rdb, ks[0]
}

// BenchmarkHit is a cached query answered from Redis: one round trip,
// the entry from the memo (or decoded), replayed as *sql.Rows and scanned
// by GORM. Its statement has GORM's default context, which cannot be
// cancelled, so the flight runs on the caller's goroutine.
//
// BenchmarkHitCancellable is the same with a cancellable context, as a
// request's: the flight then runs on a goroutine of its own, so that the
// caller can give up. BenchmarkHitDecoded disables the memo, so that every
// hit decodes the entry. BenchmarkHitObserved is BenchmarkHit with an
// Observer that does nothing: what reporting each statement costs.
func BenchmarkHit(b *testing.B) { benchHit(b, nil, false) }

func BenchmarkHitObserved(b *testing.B) {
	benchHit(b, func(c *Config) {
		c.Observer = observe.ObserverFunc(func(context.Context, observe.Event) {})
	}, false)
}

func BenchmarkHitCancellable(b *testing.B) { benchHit(b, nil, true) }

func BenchmarkHitDecoded(b *testing.B) {
	benchHit(b, func(c *Config) { c.MemoSize = -1 }, false)
}

func benchHit(b *testing.B, mod func(*Config), cancellable bool) {
	for _, n := range benchRowCounts {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			in, _, _ := primedInstance(b, n, mod)
			db := in.db
			if cancellable {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				db = db.WithContext(ctx)
			}
			loopHits(b, in, db, n)
		})
	}
}

// loopHits runs the cached query for n rows on db, in's, for b.N
// iterations, and fails unless every one was a hit.
func loopHits(b *testing.B, in *instance, db *gorm.DB, n int) {
	loopQuery(b, in, n, func() ([]benchItem, error) { return benchQuery(db, true, n) },
		func(s Stats) uint64 { return s.Hits - s.Loads })
}

// loopQuery runs query, which reads n rows, for b.N iterations, and fails
// unless each one added one to what count reads from in's Stats.
func loopQuery(b *testing.B, in *instance, n int, query func() ([]benchItem, error), count func(Stats) uint64) {
	before := count(in.p.Stats())
	var items []benchItem
	var err error
	iters := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if items, err = query(); err != nil {
			b.Fatal(err)
		}
		iters++
	}
	b.StopTimer()
	checkBenchItems(b, items, n)
	if got := count(in.p.Stats()) - before; got != uint64(iters) {
		b.Fatalf("%d of %d iterations were what the benchmark measures (%+v)", got, iters, in.p.Stats())
	}
}

// BenchmarkHitLocal is BenchmarkHit answered from the near cache
// (Local): no round trip, the entry replayed as *sql.Rows and scanned by
// GORM. Its floor is BenchmarkScanFloor.
func BenchmarkHitLocal(b *testing.B) {
	for _, n := range benchRowCounts {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			in, _, _ := primedInstance(b, n, nil)
			local := func() ([]benchItem, error) { return benchQuery(in.db, true, n, Local(time.Hour)) }
			awaitLocalHit(b, in, n)
			loopQuery(b, in, n, local, func(s Stats) uint64 { return s.LocalHits })
		})
	}
}

// awaitLocalHit reads the query for n rows with Local until in answers it
// from its near cache: the first Local query starts the subscription, and
// only reads after it is live are kept.
func awaitLocalHit(b *testing.B, in *instance, n int) {
	b.Helper()
	waitFor(b, "a local hit", waitTimeout, func() bool {
		if _, err := benchQuery(in.db, true, n, Local(time.Hour)); err != nil {
			b.Fatal(err)
		}
		return in.p.Stats().LocalHits > 0
	})
}

// scanFloorDB returns a session whose queries for n rows are answered by a
// scanFloorPool, the rows captured already.
func scanFloorDB(b *testing.B, n int) *gorm.DB {
	b.Helper()
	db := openDB(b)
	setupBenchSchema(b, db)
	replay := rowcodec.NewReplayer()
	b.Cleanup(func() { _ = replay.Close() })
	floor := db.Session(&gorm.Session{})
	floor.Statement.ConnPool = &scanFloorPool{ConnPool: db.ConnPool, replay: replay}
	items, err := benchQuery(floor, false, n) // captures the rows
	if err != nil {
		b.Fatal(err)
	}
	checkBenchItems(b, items, n)
	return floor
}

// scanFloorPool answers every query with the rows it captured from the
// live query the first time, replayed through database/sql as the plugin
// replays an entry: what remains is GORM's scan of rows in memory, the
// floor of any hit.
type scanFloorPool struct {
	gorm.ConnPool
	replay *rowcodec.Replayer
	entry  *rowcodec.Entry
}

func (f *scanFloorPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if f.entry == nil {
		rows, err := f.ConnPool.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, err
		}
		if f.entry, err = rowcodec.Capture(rows); err != nil {
			return nil, err
		}
	}
	return f.replay.Rows(ctx, f.entry)
}

// BenchmarkScanFloor is BenchmarkHit's query scanned by GORM from rows in
// memory, with no plugin installed.
func BenchmarkScanFloor(b *testing.B) {
	for _, n := range benchRowCounts {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			floor := scanFloorDB(b, n)
			var items []benchItem
			var err error
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if items, err = benchQuery(floor, false, n); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			checkBenchItems(b, items, n)
		})
	}
}

// BenchmarkRedisGet fetches the bytes of the very entry BenchmarkHit reads,
// with a plain go-redis GET: the floor for a hit.
func BenchmarkRedisGet(b *testing.B) {
	for _, n := range benchRowCounts {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			_, rdb, key := primedInstance(b, n, nil)
			ctx := context.Background()
			var data []byte
			var err error
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				data, err = rdb.Get(ctx, key).Bytes()
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(len(data)), "entry-bytes")
		})
	}
}

// BenchmarkHitFloor is a plain GET of the entry BenchmarkHit reads, then
// GORM's scan of its rows from memory (BenchmarkScanFloor), one after the
// other in each iteration: what a hit would cost if the plugin did nothing
// else. It is more than BenchmarkRedisGet and BenchmarkScanFloor added up:
// the scan runs after a wait on the network, as a hit's does, not in a
// tight loop.
func BenchmarkHitFloor(b *testing.B) {
	for _, n := range benchRowCounts {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			_, rdb, key := primedInstance(b, n, nil)
			floor := scanFloorDB(b, n)
			ctx := context.Background()
			var items []benchItem
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := rdb.Get(ctx, key).Bytes(); err != nil {
					b.Fatal(err)
				}
				var err error
				if items, err = benchQuery(floor, false, n); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			checkBenchItems(b, items, n)
		})
	}
}

// BenchmarkPostgres runs BenchmarkHit's query on PostgreSQL, without the
// cache scope.
func BenchmarkPostgres(b *testing.B) {
	for _, n := range benchRowCounts {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			db := openDB(b)
			setupBenchSchema(b, db)
			items, err := benchQuery(db, false, n) // warm the connection and statement cache
			if err != nil {
				b.Fatal(err)
			}
			checkBenchItems(b, items, n)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				items, err = benchQuery(db, false, n)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			checkBenchItems(b, items, n)
		})
	}
}

type stampedeRow struct {
	N          int
	AnsweredAt time.Time
	Key        string
}

// BenchmarkStampede releases 4 instances × 50 callers together on a cold
// key per iteration. The query takes 50ms and returns PostgreSQL's
// clock_timestamp() after it, so each iteration measures the wake-up: from
// the database answering to the last caller returning. db-queries/op is what
// PostgreSQL itself counted.
func BenchmarkStampede(b *testing.B) {
	const nInstances, nCallers, queryMS = 4, 50, 50
	ins := newInstances(b, nInstances, nil)
	cleanRDB := openRedis(b, "")
	deletePrefix(b, cleanRDB, ins[0].p.cfg.Prefix)
	tag := uniqueTag(b)
	ctx := context.Background()

	var wakes []time.Duration
	iters := 0
	b.ResetTimer()
	for b.Loop() {
		key := fmt.Sprintf("k%d", iters)
		iters++
		start := make(chan struct{})
		var wg sync.WaitGroup
		var failures atomic.Int64
		returned := make([]time.Time, nInstances*nCallers)
		results := make([]stampedeRow, nInstances*nCallers)
		for i, in := range ins {
			for c := range nCallers {
				slot := i*nCallers + c
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					var r stampedeRow
					err := in.db.WithContext(ctx).Scopes(Cache(time.Minute)).
						Raw("SELECT gft_record(?, ?) AS n, clock_timestamp() AS answered_at, ?::text AS key", tag, queryMS, key).
						Scan(&r).Error
					returned[slot] = time.Now()
					if err != nil {
						failures.Add(1)
						b.Error(err)
						return
					}
					results[slot] = r
				}()
			}
		}
		close(start)
		wg.Wait()
		if failures.Load() != 0 {
			b.Fatalf("%d callers failed", failures.Load())
		}
		answeredAt := results[0].AnsweredAt
		for slot, r := range results {
			if r.N != 1 || r.Key != key || r.AnsweredAt.IsZero() {
				b.Fatalf("caller %d got %+v for key %s", slot, r, key)
			}
			// More than one answer means the query ran more than once:
			// measure from the first, db-queries/op shows the extra runs.
			if r.AnsweredAt.Before(answeredAt) {
				answeredAt = r.AnsweredAt
			}
		}
		wakes = append(wakes, slices.MaxFunc(returned, time.Time.Compare).Sub(answeredAt))
	}
	b.StopTimer()

	executions := calls(b, ins[0].db, tag)
	b.ReportMetric(float64(executions)/float64(iters), "db-queries/op")
	slices.Sort(wakes)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(wakes, 50)), "wake-p50-ms")
	b.ReportMetric(ms(percentile(wakes, 99)), "wake-p99-ms")
	b.ReportMetric(ms(wakes[len(wakes)-1]), "wake-max-ms")

	s := sumStats(ins...)
	b.Logf("%d iterations: db executions=%d; plugin stats summed: %+v", iters, executions, s)
}

// percentile returns the nearest-rank p-th percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100 // ceil(len*p/100)
	return sorted[max(i-1, 0)]
}

// BenchmarkExpiry is TestRefreshAheadSteadyLoad's scenario as a
// benchmark: two instances × four callers read one hot key for 4 s with a
// 200 ms query and a TTL of 1 s, with refresh-ahead on and off. Each
// iteration is one such run; it reports the waits per second (calls slower
// than half the query), the p99.9 and p99.99 latencies and the slowest call,
// and the loads per TTL counted by PostgreSQL (the warm-up's included).
//
//	go test -run '^$' -bench Expiry -benchtime 1x -count 3 .
func BenchmarkExpiry(b *testing.B) {
	const queryMs = 200
	ttl, runFor := time.Second, 4*time.Second
	for _, refresh := range []bool{true, false} {
		b.Run(fmt.Sprintf("refresh=%v", refresh), func(b *testing.B) {
			var slow, loads int64
			var lat []time.Duration
			runs := 0
			for b.Loop() {
				r := runSteadyLoad(b, refresh, queryMs, ttl, runFor, 0)
				slow += r.slow
				loads += r.loads
				lat = append(lat, r.latencies...)
				runs++
			}
			slices.Sort(lat)
			secs := runFor.Seconds() * float64(runs)
			b.ReportMetric(float64(slow)/secs, "waits/s")
			ms := func(q int) float64 { // the q-th 10,000-quantile, nearest rank
				return float64(lat[(len(lat)*q+9999)/10000-1]) / float64(time.Millisecond)
			}
			b.ReportMetric(ms(9990), "p99.9-ms")
			b.ReportMetric(ms(9999), "p99.99-ms")
			b.ReportMetric(ms(10000), "max-ms")
			b.ReportMetric(float64(loads)/(secs/ttl.Seconds()), "loads/TTL")
		})
	}
}

// hotKeyRows is the result size of BenchmarkHotKeyParallel's hot key.
const hotKeyRows = 10

// BenchmarkHotKeyParallel is many callers in two instances on one cached
// key (16 callers on this 2-core machine: b.SetParallelism(8)), against
// plain GETs of the same stored value and the same query on PostgreSQL at
// the same concurrency. Besides ns/op (the inverse of throughput) it
// reports each call's median latency as p50-µs.
func BenchmarkHotKeyParallel(b *testing.B) {
	b.Run("cached", func(b *testing.B) {
		in, _, _ := primedInstance(b, hotKeyRows, nil)
		other := newInstance(b, in.p.cfg)
		ins := []*instance{in, other}
		before := sumStats(ins...)
		benchParallel(b, func(i int) error {
			items, err := benchQuery(ins[i%len(ins)].db, true, hotKeyRows)
			if err == nil && len(items) != hotKeyRows {
				err = fmt.Errorf("%d rows", len(items))
			}
			return err
		})
		// A flight's lookup serves the callers that arrived before it
		// started: lookups/op is how many callers share one.
		after := sumStats(ins...)
		b.ReportMetric(float64(after.Hits-before.Hits)/float64(b.N), "lookups/op")
	})
	b.Run("local", func(b *testing.B) {
		in, _, _ := primedInstance(b, hotKeyRows, nil)
		other := newInstance(b, in.p.cfg)
		ins := []*instance{in, other}
		for _, in := range ins {
			awaitLocalHit(b, in, hotKeyRows)
		}
		benchParallel(b, func(i int) error {
			items, err := benchQuery(ins[i%len(ins)].db, true, hotKeyRows, Local(time.Hour))
			if err == nil && len(items) != hotKeyRows {
				err = fmt.Errorf("%d rows", len(items))
			}
			return err
		})
	})
	b.Run("scan-floor", func(b *testing.B) {
		floor := scanFloorDB(b, hotKeyRows)
		benchParallel(b, func(int) error {
			items, err := benchQuery(floor, false, hotKeyRows)
			if err == nil && len(items) != hotKeyRows {
				err = fmt.Errorf("%d rows", len(items))
			}
			return err
		})
	})
	b.Run("redis-get", func(b *testing.B) {
		_, rdb, key := primedInstance(b, hotKeyRows, nil)
		ctx := context.Background()
		benchParallel(b, func(int) error { return rdb.Get(ctx, key).Err() })
	})
	b.Run("hit-floor", func(b *testing.B) {
		// BenchmarkHitFloor's call at this concurrency: each caller's own
		// GET, then the scan floor.
		_, rdb, key := primedInstance(b, hotKeyRows, nil)
		floor := scanFloorDB(b, hotKeyRows)
		ctx := context.Background()
		benchParallel(b, func(int) error {
			if err := rdb.Get(ctx, key).Err(); err != nil {
				return err
			}
			items, err := benchQuery(floor, false, hotKeyRows)
			if err == nil && len(items) != hotKeyRows {
				err = fmt.Errorf("%d rows", len(items))
			}
			return err
		})
	})
	b.Run("postgres", func(b *testing.B) {
		in, _, _ := primedInstance(b, hotKeyRows, nil)
		benchParallel(b, func(int) error {
			items, err := benchQuery(in.db, false, hotKeyRows)
			if err == nil && len(items) != hotKeyRows {
				err = fmt.Errorf("%d rows", len(items))
			}
			return err
		})
	})
}

// benchParallel runs call from 8×GOMAXPROCS goroutines, each with its own
// index, and reports the median latency of a call.
func benchParallel(b *testing.B, call func(goroutine int) error) {
	var next atomic.Int64
	var mu sync.Mutex
	var all []time.Duration
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := int(next.Add(1))
		var lat []time.Duration
		for pb.Next() {
			start := time.Now()
			if err := call(g); err != nil {
				b.Error(err)
				return
			}
			lat = append(lat, time.Since(start))
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(all) > 0 {
		slices.Sort(all)
		b.ReportMetric(float64(all[len(all)/2].Nanoseconds())/1e3, "p50-µs")
	}
}
