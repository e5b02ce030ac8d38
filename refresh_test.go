package gormflight

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/observe"
	"gorm.io/gorm"
)

var refreshSchema = schemaOnce{lock: schemaLockRefresh}

// setupRefreshSchema creates gft_refresh_load(tag, ms): it records when an
// execution started and ended, as PostgreSQL's clock tells, and sleeps ms
// in between. gft_refresh_flaky(tag, ms) fails at once while gft_fail (see
// setupSchema) holds its tag, and otherwise records and sleeps as
// gft_refresh_load does.
func setupRefreshSchema(t testing.TB, db *gorm.DB) {
	t.Helper()
	err := refreshSchema.do(db, func(tx *gorm.DB) error {
		return tx.Exec(`
CREATE TABLE IF NOT EXISTS gft_refresh_loads (tag text NOT NULL, started timestamptz NOT NULL, ended timestamptz NOT NULL);
CREATE OR REPLACE FUNCTION gft_refresh_load(p_tag text, p_ms int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
DECLARE s timestamptz := clock_timestamp();
BEGIN
	PERFORM pg_sleep(p_ms / 1000.0);
	INSERT INTO gft_refresh_loads VALUES (p_tag, s, clock_timestamp());
	RETURN 1;
END $$;
CREATE OR REPLACE FUNCTION gft_refresh_flaky(p_tag text, p_ms int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM gft_fail WHERE tag = p_tag) THEN
		RAISE EXCEPTION 'gft_refresh_flaky: % is failing', p_tag;
	END IF;
	RETURN gft_refresh_load(p_tag, p_ms);
END $$;`).Error
	})
	if err != nil {
		unavailable(t, "PostgreSQL refresh schema", err)
	}
}

// steadyCall is the context key under which a call of runSteadyLoad
// receives its Observer event.
type steadyCall struct{}

// steadyLoad is what a run of TestRefreshAheadSteadyLoad saw.
type steadyLoad struct {
	calls, slow int64 // calls after warm-up, and those slower than half the query
	// waited: calls that waited for a load, their own or another's, for
	// more than half the query (the Observer's Wait and Load). A call
	// slowed by the machine alone (a descheduled goroutine, a GC) is slow,
	// and did not wait.
	waited      int64
	slowest     atomic.Int64 // nanoseconds
	loads       int64        // executions, counted by PostgreSQL
	overlapping int64        // executions that started before the one before ended

	mu        sync.Mutex
	latencies []time.Duration // of every call after warm-up
}

// runSteadyLoad reads one hot key from instances × callers for runFor,
// with a query of queryMs and a TTL of ttl, and reports what it saw. A
// caller reads as fast as it can, or, with a pace, at most once per pace;
// opts go to Cache.
func runSteadyLoad(t testing.TB, refresh bool, queryMs int, ttl, runFor, pace time.Duration, opts ...Option) *steadyLoad {
	ins := newInstances(t, 2, func(c *Config) {
		if !refresh {
			c.RefreshBeta = -1
		}
		c.Observer = observe.ObserverFunc(func(ctx context.Context, ev observe.Event) {
			if call, ok := ctx.Value(steadyCall{}).(*observe.Event); ok {
				*call = ev
			}
		})
	})
	setupRefreshSchema(t, ins[0].db)
	tag := uniqueTag(t)
	read := func(in *instance) (observe.Event, error) {
		var n int
		var ev observe.Event
		ctx := context.WithValue(context.Background(), steadyCall{}, &ev)
		err := in.db.WithContext(ctx).Scopes(Cache(ttl, opts...)).Raw("SELECT gft_refresh_load(?, ?) AS n", tag, queryMs).Scan(&n).Error
		return ev, err
	}
	if _, err := read(ins[0]); err != nil { // warm-up: the first load
		t.Fatal(err)
	}
	out := new(steadyLoad)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	half := time.Duration(queryMs) * time.Millisecond / 2
	for _, in := range ins {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var lat []time.Duration
				defer func() {
					out.mu.Lock()
					out.latencies = append(out.latencies, lat...)
					out.mu.Unlock()
				}()
				var tick <-chan time.Time // nil: no pace
				if pace > 0 {
					ticker := time.NewTicker(pace)
					defer ticker.Stop()
					tick = ticker.C
				}
				for {
					select {
					case <-stop:
						return
					default:
					}
					if tick != nil {
						select {
						case <-stop:
							return
						case <-tick:
						}
					}
					start := time.Now()
					ev, err := read(in)
					if err != nil {
						t.Error(err)
						return
					}
					took := time.Since(start)
					lat = append(lat, took)
					atomic.AddInt64(&out.calls, 1)
					if took > half {
						atomic.AddInt64(&out.slow, 1)
					}
					if ev.Wait+ev.Load > half {
						atomic.AddInt64(&out.waited, 1)
					}
					for prev := out.slowest.Load(); int64(took) > prev && !out.slowest.CompareAndSwap(prev, int64(took)); {
						prev = out.slowest.Load()
					}
				}
			}()
		}
	}
	timer := time.NewTimer(runFor)
	<-timer.C
	close(stop)
	wg.Wait()
	ctx := context.Background()
	db := ins[0].db.WithContext(ctx)
	if err := db.Raw("SELECT count(*) FROM gft_refresh_loads WHERE tag = ?", tag).Scan(&out.loads).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Raw(`SELECT count(*) FROM (
		SELECT started < lag(ended) OVER (ORDER BY started) AS overlapped FROM gft_refresh_loads WHERE tag = ?
	) l WHERE overlapped`, tag).Scan(&out.overlapping).Error; err != nil {
		t.Fatal(err)
	}
	s := sumStats(ins[0], ins[1])
	t.Logf("refresh %v: %d calls, %d slower than %v (slowest %v), %d waited that long for a load, %d loads in %v with TTL %v (%d executions overlapping another); refreshes %d started, %d skipped, %d failed; misses %d, waits %d",
		refresh, out.calls, out.slow, half, time.Duration(out.slowest.Load()).Round(time.Millisecond), out.waited, out.loads, runFor, ttl, out.overlapping, s.RefreshesStarted, s.RefreshesSkipped, s.RefreshErrors, s.Misses, s.Waits)
	return out
}

// Two instances × four callers read one hot key for several TTLs, with a
// query of 200 ms. With refresh-ahead, the key is reloaded about once per
// TTL, never twice at once (checked by PostgreSQL), and no caller waits
// for a whole query; without it, callers wait at each expiry, which shows
// the test can fail.
func TestRefreshAheadSteadyLoad(t *testing.T) {
	const queryMs = 200
	ttl, runFor := time.Second, 4*time.Second
	on := runSteadyLoad(t, true, queryMs, ttl, runFor, 0)
	if max := int64(runFor/ttl) + 1 + 1; on.loads > max { // the warm-up, one per TTL, plus one
		t.Errorf("refresh on: %d loads in %v with a TTL of %v, want at most %d", on.loads, runFor, ttl, max)
	}
	if on.overlapping != 0 {
		t.Errorf("refresh on: %d loads of the key ran while another did", on.overlapping)
	}
	if on.waited != 0 {
		t.Errorf("refresh on: %d of %d calls waited for a load more than half the query time", on.waited, on.calls)
	}
	off := runSteadyLoad(t, false, queryMs, ttl, runFor, 0)
	if off.waited == 0 {
		t.Errorf("refresh off: no call of %d waited for a load: the test cannot tell", off.calls)
	}
}

// The database fails during a background refresh: callers keep getting the
// entry, see no error, and a later refresh succeeds. The query takes
// 150 ms when it succeeds and fails at once, so the entry's TTL (600 ms)
// outlasts the failed refreshes.
func TestRefreshFailureOnPostgres(t *testing.T) {
	in := newInstances(t, 1, nil)[0]
	setupSchema(t, in.db)
	setupRefreshSchema(t, in.db)
	tag := uniqueTag(t)
	read := func() {
		t.Helper()
		var n int
		if err := in.db.Scopes(Cache(600*time.Millisecond)).Raw("SELECT gft_refresh_flaky(?, 150) AS n", tag).Scan(&n).Error; err != nil || n != 1 {
			t.Fatalf("read: %d, %v; want 1 and no error", n, err)
		}
	}
	loads := func() (n int64) {
		t.Helper()
		if err := in.db.Raw("SELECT count(*) FROM gft_refresh_loads WHERE tag = ?", tag).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		return n
	}
	read() // the first load
	adminExec(t, in.db, "INSERT INTO gft_fail VALUES (?)", tag)
	waitFor(t, "a refresh to fail", waitTimeout, func() bool {
		read()
		return in.p.Stats().RefreshErrors > 0
	})
	adminExec(t, in.db, "DELETE FROM gft_fail WHERE tag = ?", tag)
	failed := in.p.Stats()
	waitFor(t, "a load after the failure", waitTimeout, func() bool {
		read()
		return loads() == 2
	})
	s := in.p.Stats()
	t.Logf("refreshes: %d started, %d failed; misses after the failure %d", s.RefreshesStarted, s.RefreshErrors, s.Misses-failed.Misses)
	// Every refresh before the recovery failed: one that did not is a
	// refresh after it that succeeded.
	if s.RefreshesStarted-s.RefreshErrors < 1 {
		t.Errorf("refreshes: %d started, %d failed; want one that succeeded after the database recovered", s.RefreshesStarted, s.RefreshErrors)
	}
}

// TestRefreshAheadSteadyLoad with the near cache (Local): a local entry
// ends where the refresh window begins, so the key is still refreshed
// ahead of expiry and no caller waits for a load. Local hits use no I/O, so
// each caller reads at most once per 500µs (still about 16,000 reads per
// second in all): callers spinning on the CPU would starve the goroutines
// that refresh, which is not what an application does.
func TestLocalSteadyLoad(t *testing.T) {
	const queryMs = 200
	ttl, runFor := time.Second, 4*time.Second
	r := runSteadyLoad(t, true, queryMs, ttl, runFor, 500*time.Microsecond, Local(time.Hour))
	if max := int64(runFor/ttl) + 1 + 1; r.loads > max {
		t.Errorf("%d loads in %v with a TTL of %v, want at most %d", r.loads, runFor, ttl, max)
	}
	if r.overlapping != 0 {
		t.Errorf("%d loads of the key ran while another did", r.overlapping)
	}
	if r.waited != 0 {
		t.Errorf("%d of %d calls waited for a load more than half the query time", r.waited, r.calls)
	}
}

// StaleFor on PostgreSQL and Redis: past its TTL, an entry is served at
// once and refreshed (one more execution, counted by PostgreSQL); after a
// write to its table it is never served.
func TestStaleForServesAndRefreshes(t *testing.T) {
	in := newInstances(t, 1, nil)[0]
	setupSchema(t, in.db)
	table := "gft_stale_" + randHex(4)
	adminExec(t, in.db, "CREATE TABLE "+table+" (id int PRIMARY KEY, val text NOT NULL)")
	dropAtEnd(t, in.db, "DROP TABLE IF EXISTS "+table)
	adminExec(t, in.db, "INSERT INTO "+table+" VALUES (1, 'one')")
	tag := uniqueTag(t)
	const ttl = 50 * time.Millisecond
	read := func(opts ...Option) string {
		t.Helper()
		var r struct{ Val string }
		err := in.db.Scopes(Cache(ttl, opts...)).
			Raw("SELECT val, gft_record(?, 0) AS n FROM "+table+" WHERE id = 1", tag).Scan(&r).Error
		if err != nil {
			t.Fatal(err)
		}
		return r.Val
	}
	stale := StaleFor(time.Minute)
	if v := read(stale); v != "one" {
		t.Fatalf("first read %q", v)
	}
	entries := behOfKind(behKeys(t, in.p.cfg.Redis, in.p.cfg.Prefix), engine.EntryKind)
	if len(entries) != 1 {
		t.Fatalf("entries %v, want one", entries)
	}
	// Past the TTL: the key lives on for StaleFor.
	waitFor(t, "the entry's TTL to pass", waitTimeout, func() bool {
		left, err := in.p.cfg.Redis.PTTL(context.Background(), entries[0]).Result()
		return err == nil && left < time.Minute-5*time.Millisecond
	})
	if v := read(stale); v != "one" {
		t.Errorf("past the TTL: %q, want the stale entry", v)
	}
	if s := in.p.Stats(); s.StaleServes != 1 {
		t.Errorf("%d stale serves, want 1", s.StaleServes)
	}
	waitFor(t, "the stale serve's refresh", waitTimeout, func() bool { return calls(t, in.db, tag) == 2 })

	// A write: the entry is never served again, stale or not.
	if err := in.db.Exec("UPDATE " + table + " SET val = 'two' WHERE id = 1").Error; err != nil {
		t.Fatal(err)
	}
	if v := read(stale); v != "two" {
		t.Errorf("after a write: %q, want two", v)
	}
	var n int
	if err := in.db.Scopes(Cache(ttl, StaleFor(-time.Second))).Raw("SELECT 1").Scan(&n).Error; !errors.Is(err, ErrInvalidTTL) {
		t.Errorf("StaleFor(-1s): %v, want ErrInvalidTTL", err)
	}
}

// A refresh that finds another instance's refresh holding the key's lock
// is skipped. When that other refresh fails, this instance used to keep
// its claim on the stored value for good, serving it past its TTL
// (StaleFor) and never refreshing it again: it tries again once the other
// instance's lock would have lapsed (LockExpiry).
func TestSkippedRefreshTriesAgain(t *testing.T) {
	ins := newInstances(t, 2, func(c *Config) { c.LockExpiry = 300 * time.Millisecond })
	a, b := ins[0], ins[1]
	setupSchema(t, a.db)
	table := "gft_refresh_again_" + randHex(4)
	adminExec(t, a.db, "CREATE TABLE "+table+" (id int PRIMARY KEY, val text NOT NULL)")
	adminExec(t, a.db, "CREATE TABLE "+table+"_fail (on_ bool)")
	dropAtEnd(t, a.db, "DROP FUNCTION IF EXISTS "+table+"_gate()", "DROP TABLE IF EXISTS "+table,
		"DROP TABLE IF EXISTS "+table+"_fail")
	adminExec(t, a.db, "INSERT INTO "+table+" VALUES (1, 'one')")
	// gate() sleeps 400 ms, then fails, while the _fail table has a row.
	adminExec(t, a.db, `CREATE FUNCTION `+table+`_gate() RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM `+table+`_fail) THEN
		PERFORM pg_sleep(0.4);
		RAISE EXCEPTION 'gate failing';
	END IF;
	RETURN true;
END $$`)
	tag := uniqueTag(t)
	q := "SELECT val, gft_record(?, 0) AS n FROM " + table + " WHERE id = 1 AND " + table + "_gate()"
	read := func(in *instance) {
		t.Helper()
		var r struct{ Val string }
		if err := in.db.Scopes(Cache(300*time.Millisecond, StaleFor(time.Minute))).Raw(q, tag).Scan(&r).Error; err != nil {
			t.Fatal(err)
		}
		if r.Val != "one" {
			t.Fatalf("read %q, want one", r.Val)
		}
	}
	read(a)
	entries := behOfKind(behKeys(t, a.p.cfg.Redis, a.p.cfg.Prefix), engine.EntryKind)
	if len(entries) != 1 {
		t.Fatalf("entries %q, want one", entries)
	}
	waitFor(t, "the entry's TTL to pass", waitTimeout, func() bool {
		left, err := a.p.cfg.Redis.PTTL(context.Background(), entries[0]).Result()
		return err == nil && left < time.Minute-50*time.Millisecond
	})
	adminExec(t, a.db, "INSERT INTO "+table+"_fail VALUES (true)")
	read(b) // served past its TTL: B's refresh takes the lock, then fails
	waitFor(t, "B's refresh to hold the lock", waitTimeout, func() bool {
		return len(behOfKind(behKeys(t, a.p.cfg.Redis, a.p.cfg.Prefix), "l")) == 1
	})
	read(a) // served past its TTL: A's refresh finds B's lock
	waitFor(t, "A's refresh to be skipped", waitTimeout, func() bool { return a.p.Stats().RefreshesSkipped == 1 })
	waitFor(t, "B's refresh to fail", waitTimeout, func() bool { return b.p.Stats().RefreshErrors == 1 })
	adminExec(t, a.db, "DELETE FROM "+table+"_fail")
	before := calls(t, a.db, tag)
	waitFor(t, "A to refresh the entry", waitTimeout, func() bool {
		read(a)
		return calls(t, a.db, tag) > before
	})
	if s := a.p.Stats(); s.RefreshesStarted != 1 {
		t.Errorf("A started %d refreshes, want 1 (%+v)", s.RefreshesStarted, s)
	}
}
