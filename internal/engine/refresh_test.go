package engine

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/redis/go-redis/v9"
)

// fakeClock is the engine's clock in these tests: a load "takes" exactly
// as long as it advances the clock, so Δ is known.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// refreshRig is an engine over miniredis (whose keys expire only when the
// test moves its clock) with a key whose n-th load returns "v<n>" after
// 200ms of the engine's clock, and runs loads[n] first if set.
type refreshRig struct {
	e     *Engine
	srv   *miniredis.Miniredis
	clock *fakeClock
	n     atomic.Int64
	loads sync.Map // n -> func(ctx) error, run by the n-th load
}

const refreshLoadTime = 200 * time.Millisecond

func newRefreshRig(t *testing.T) *refreshRig {
	r := &refreshRig{clock: &fakeClock{t: time.Unix(1_800_000_000, 0)}}
	r.e, r.srv = newTestEngine(t, func(c *Config) { c.RefreshBeta = 1; c.MaxRefreshes = 4 })
	r.e.now = r.clock.now
	return r
}

func (r *refreshRig) request() Request {
	return Request{Hash: "hot", Tables: []string{"*", "t"}, TTL: time.Minute, Refreshable: true,
		Load: func(ctx context.Context) (*rowcodec.Entry, error) {
			n := r.n.Add(1)
			r.clock.add(refreshLoadTime)
			if f, ok := r.loads.Load(n); ok {
				if err := f.(func(context.Context) error)(ctx); err != nil {
					return nil, err
				}
			}
			return rowcodec.NewEntry([]string{"v"}, [][]driver.Value{{fmt.Sprintf("v%d", n)}})
		}}
}

// nearExpiry moves Redis's clock to 100ms before the entry expires: inside
// the last Δ (200ms) of its life.
func (r *refreshRig) nearExpiry(t *testing.T) {
	t.Helper()
	left := r.srv.TTL(newKeys(r.e.cfg.Prefix, "hot").entry)
	if left <= refreshLoadTime {
		t.Fatalf("the entry has %v left", left)
	}
	r.srv.FastForward(left - 100*time.Millisecond)
}

// hitUntilRefresh reads until a hit starts a refresh, or one that is
// skipped, each read answered with want.
func (r *refreshRig) hitUntilRefresh(t *testing.T, want string) {
	t.Helper()
	s := r.e.Stats()
	for i := 0; s.RefreshesStarted.Load()+s.RefreshesSkipped.Load() == 0; i++ {
		if i == 200 {
			t.Fatal("200 hits in the last Δ of the entry's life started no refresh")
		}
		if v := do(t, r.e, r.request()); v != want {
			t.Fatalf("hit %d: %q, want %q", i, v, want)
		}
	}
}

// A hit close to expiry starts one refresh and is answered at once, as are
// the hits while it runs; its result is served after.
func TestRefreshAhead(t *testing.T) {
	r := newRefreshRig(t)
	started, release := make(chan struct{}), make(chan struct{})
	r.loads.Store(int64(2), func(context.Context) error { close(started); <-release; return nil })
	for range 50 {
		if v := do(t, r.e, r.request()); v != "v1" {
			t.Fatalf("read %q, want v1", v)
		}
	}
	if n := r.e.Stats().RefreshesStarted.Load(); n != 0 {
		t.Fatalf("%d refreshes of an entry far from its expiry", n)
	}

	r.nearExpiry(t)
	r.hitUntilRefresh(t, "v1")
	<-started
	// The refresh is held in its query: hits must not wait for it.
	served := make(chan error, 1)
	go func() {
		for range 20 {
			e := r.e
			e.Enter()
			ent, err := e.Do(context.Background(), r.request())
			e.Exit()
			if err == nil && ent.Values()[0][0] != "v1" {
				err = fmt.Errorf("read %v during the refresh, want v1", ent.Values()[0][0])
			}
			if err != nil {
				served <- err
				return
			}
		}
		served <- nil
	}()
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("hits waited for the refresh")
	}
	close(release)
	waitFor(t, "the refresh's entry to be served", 10*time.Second, func() bool { return do(t, r.e, r.request()) == "v2" })
	s := r.e.Stats()
	if n := r.n.Load(); n != 2 || s.RefreshesStarted.Load() != 1 || s.RefreshErrors.Load() != 0 {
		t.Errorf("%d loads, %d refreshes, %d errors; want 2, 1, 0", n, s.RefreshesStarted.Load(), s.RefreshErrors.Load())
	}
	if s.Misses.Load() != 1 {
		t.Errorf("%d misses, want only the first read's", s.Misses.Load())
	}
}

// A refresh that fails, or panics, reaches no caller: the entry is served
// until it expires, and a later refresh succeeds.
func TestRefreshFailure(t *testing.T) {
	for _, fail := range []func(context.Context) error{
		func(context.Context) error { return errors.New("the database is down") },
		func(context.Context) error { panic("a Valuer panicked") },
	} {
		r := newRefreshRig(t)
		r.loads.Store(int64(2), fail)
		do(t, r.e, r.request())
		do(t, r.e, r.request())
		r.nearExpiry(t)
		r.hitUntilRefresh(t, "v1")
		waitFor(t, "the refresh to fail", 10*time.Second, func() bool { return r.e.Stats().RefreshErrors.Load() == 1 })
		waitFor(t, "a later refresh's entry", 10*time.Second, func() bool {
			v := do(t, r.e, r.request())
			if v != "v1" && v != "v3" {
				t.Fatalf("read %q", v)
			}
			return v == "v3"
		})
		if n := r.e.Stats().Misses.Load(); n != 1 {
			t.Errorf("%d misses, want only the first read's", n)
		}
	}
}

// A refresh does not wait for a lock another instance holds: it is skipped,
// and the entry is served.
func TestRefreshSkipsHeldLock(t *testing.T) {
	r := newRefreshRig(t)
	do(t, r.e, r.request())
	do(t, r.e, r.request())
	r.nearExpiry(t)
	r.srv.Set(newKeys(r.e.cfg.Prefix, "hot").lock, "another instance's token")
	r.hitUntilRefresh(t, "v1")
	waitFor(t, "the refresh to be skipped", 10*time.Second, func() bool { return r.e.Stats().RefreshesSkipped.Load() == 1 })
	// Another instance refreshes this value: the hits on it do not each
	// try the lock again.
	for range 50 {
		do(t, r.e, r.request())
	}
	s := r.e.Stats()
	if n := r.n.Load(); n != 1 || s.RefreshesSkipped.Load() != 1 || s.RefreshesStarted.Load() != 0 {
		t.Errorf("%d loads, %d refreshes skipped, %d started; want 1, 1, 0", n, s.RefreshesSkipped.Load(), s.RefreshesStarted.Load())
	}
}

// A hit that finds a refresh of its key still running in this instance (of
// a value stored before the one it found) starts none, and leaves that
// value unclaimed: a hit after the running refresh ended refreshes it.
// The claim used to be kept, and the value never refreshed here.
func TestRefreshAfterBusyKey(t *testing.T) {
	r := newRefreshRig(t)
	do(t, r.e, r.request())
	do(t, r.e, r.request())
	r.nearExpiry(t)
	key := newKeys(r.e.cfg.Prefix, "hot").entry
	r.e.refreshing.Store(key, struct{}{}) // a refresh of an older value runs
	// Each hit here (100 ms left, Δ 200 ms) tries with probability e^-0.5.
	for range 100 {
		if v := do(t, r.e, r.request()); v != "v1" {
			t.Fatalf("hit while the key was busy: %q, want v1", v)
		}
	}
	if s := r.e.Stats(); s.RefreshesStarted.Load()+s.RefreshesSkipped.Load() != 0 {
		t.Fatalf("a refresh ran while the key was busy: %d started, %d skipped", s.RefreshesStarted.Load(), s.RefreshesSkipped.Load())
	}
	r.e.refreshing.Delete(key)
	waitFor(t, "a hit to refresh v1", 10*time.Second, func() bool { return do(t, r.e, r.request()) == "v2" })
	if n := r.e.Stats().RefreshesStarted.Load(); n != 1 {
		t.Errorf("%d refreshes started, want 1", n)
	}
}

// Close cancels a refresh in progress and waits for it.
func TestRefreshStoppedByClose(t *testing.T) {
	r := newRefreshRig(t)
	started, cancelled := make(chan struct{}), make(chan error, 1)
	r.loads.Store(int64(2), func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		cancelled <- ctx.Err()
		return ctx.Err()
	})
	do(t, r.e, r.request())
	do(t, r.e, r.request())
	r.nearExpiry(t)
	r.hitUntilRefresh(t, "v1")
	<-started
	if _, err := r.e.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the refresh ended with %v, want context.Canceled", err)
		}
	default:
		t.Error("Close returned before the refresh ended")
	}
}

// A refresh that takes the lock after another instance stored a new value
// (a fill or a refresh that ended between the hit and this lock) does not
// run the query again.
func TestRefreshSkipsNewValue(t *testing.T) {
	r := newRefreshRig(t)
	other := newEngineOn(t, r.srv)
	locking, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := pipelineHook(func(cmds []redis.Cmder) {
		if len(cmds) > 1 && cmds[0].Name() == "set" && cmds[1].Name() == "getrange" {
			once.Do(func() { close(locking); <-proceed })
		}
	})
	e := newHookedEngine(t, r.srv, hook, func(c *Config) { c.RefreshBeta = 1 })
	e.now = r.clock.now
	r.e = e
	do(t, e, r.request())
	do(t, e, r.request())
	r.nearExpiry(t)
	go func() {
		for e.Stats().RefreshesSkipped.Load()+e.Stats().RefreshesStarted.Load() == 0 {
			select {
			case <-locking:
				return
			default:
			}
			e.Enter()
			_, _ = e.Do(context.Background(), r.request())
			e.Exit()
		}
	}()
	<-locking
	// Another instance stores a new value of the key meanwhile.
	if err := other.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	if v := do(t, other, r.request()); v != "v2" {
		t.Fatalf("the other instance loaded %q", v)
	}
	close(proceed)
	waitFor(t, "the refresh to be skipped", 10*time.Second, func() bool { return e.Stats().RefreshesSkipped.Load() == 1 })
	if n := r.n.Load(); n != 2 || e.Stats().RefreshesStarted.Load() != 0 {
		t.Errorf("%d loads, %d refreshes started; want 2 (the first, the other instance's), 0", n, e.Stats().RefreshesStarted.Load())
	}
}

// StaleFor keeps an entry past its TTL: a hit there is served at once, to a
// query that accepts that much staleness only, and refreshes the entry; an
// entry a write made stale is never served.
func TestStaleFor(t *testing.T) {
	r := newRefreshRig(t)
	r.e.cfg.RefreshBeta = -1 // no refresh ahead: only the stale serve refreshes
	stale := func() Request { q := r.request(); q.StaleFor = time.Minute; return q }
	do(t, r.e, stale())
	do(t, r.e, stale())
	key := newKeys(r.e.cfg.Prefix, "hot").entry
	// 30s past the TTL, within the minute it is kept for.
	r.srv.FastForward(r.srv.TTL(key) - 30*time.Second)

	if v := do(t, r.e, r.request()); v != "v2" {
		t.Errorf("a query without StaleFor read %q past the TTL, want its own load v2", v)
	}
	if err := r.e.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	// v2 was stored with no stale time; store v3 with a minute of it.
	if v := do(t, r.e, stale()); v != "v3" {
		t.Fatalf("after a write: %q, want a new load v3", v)
	}
	r.srv.FastForward(r.srv.TTL(key) - 30*time.Second)
	if v := do(t, r.e, stale()); v != "v3" {
		t.Errorf("a StaleFor query past the TTL read %q, want the stale v3 at once", v)
	}
	waitFor(t, "the stale serve's refresh", 10*time.Second, func() bool { return do(t, r.e, stale()) == "v4" })
	s := r.e.Stats()
	if s.StaleServes.Load() == 0 || s.RefreshesStarted.Load() != 1 {
		t.Errorf("%d stale serves, %d refreshes; want some, 1", s.StaleServes.Load(), s.RefreshesStarted.Load())
	}

	// Past the TTL and bumped by a write: never served, StaleFor or not.
	r.srv.FastForward(r.srv.TTL(key) - 30*time.Second)
	if err := r.e.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	if v := do(t, r.e, stale()); v != "v5" {
		t.Errorf("a stale entry of a written table was served: %q, want a new load v5", v)
	}
}

// StaleFor on a query a refresh cannot run again (its arguments are not
// frozen): past the TTL of an entry another query stored with StaleFor, it
// loads, as without StaleFor, instead of serving the oldest rows for the
// whole StaleFor with no refresh.
func TestStaleForNotRefreshable(t *testing.T) {
	r := newRefreshRig(t)
	stored := r.request()
	stored.StaleFor = time.Minute
	if v := do(t, r.e, stored); v != "v1" {
		t.Fatalf("first read %q, want v1", v)
	}
	key := newKeys(r.e.cfg.Prefix, "hot").entry
	r.srv.FastForward(r.srv.TTL(key) - 30*time.Second) // 30s past the TTL
	q := r.request()
	q.StaleFor, q.Refreshable = time.Minute, false
	if v := do(t, r.e, q); v != "v2" {
		t.Errorf("past the TTL a query that cannot be refreshed read %q, want its own load v2", v)
	}
	if s := r.e.Stats(); s.StaleServes.Load() != 0 {
		t.Errorf("%d stale serves, want 0", s.StaleServes.Load())
	}
}

// failLookupOnce fails the next lookup pipeline (the one reading a PTTL)
// once, as a connection reset would, once armed.
type failLookupOnce struct {
	armed  atomic.Bool
	failed chan struct{}
}

func (h *failLookupOnce) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *failLookupOnce) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *failLookupOnce) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if c.Name() == "pttl" && h.armed.CompareAndSwap(true, false) {
				err := errors.New("read tcp: connection reset by peer")
				for _, c := range cmds {
					c.SetErr(err)
				}
				close(h.failed)
				return err
			}
		}
		return next(ctx, cmds)
	}
}

// A caller whose query accepts no staleness never shares the flight of a
// StaleFor query of the same key: that flight may answer with the entry
// past its TTL. Neither does a StaleFor query a refresh cannot run again,
// which accepts no staleness either. Here the StaleFor flight retries a
// failed lookup (as while Redis fails over), which leaves the other caller
// time to arrive.
func TestStaleFlightNotShared(t *testing.T) {
	for _, c := range []struct {
		name   string
		joiner func(req func(time.Duration) Request) Request
	}{
		{"without StaleFor", func(req func(time.Duration) Request) Request { return req(0) }},
		{"not refreshable", func(req func(time.Duration) Request) Request {
			q := req(time.Hour)
			q.Refreshable = false
			return q
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, _ := startRedisServer(t)
			hook := &failLookupOnce{failed: make(chan struct{})}
			rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
			rdb.AddHook(hook)
			t.Cleanup(func() { _ = rdb.Close() })
			e := engineOn(t, rdb, func(c *Config) { c.WaitReplicas, c.FailoverWait = 1, 5*time.Second })
			var loads atomic.Int64
			req := func(staleFor time.Duration) Request {
				return Request{Hash: "mix", Tables: []string{"*", "t"}, TTL: time.Minute, StaleFor: staleFor, Refreshable: true,
					Load: func(context.Context) (*rowcodec.Entry, error) {
						return rowcodec.NewEntry([]string{"v"}, [][]driver.Value{{fmt.Sprintf("v%d", loads.Add(1))}})
					}}
			}
			if v := do(t, e, req(time.Hour)); v != "v1" {
				t.Fatalf("first read %q, want v1", v)
			}
			// Past the TTL, within StaleFor: PEXPIRE leaves the entry
			// StaleFor's last 30 minutes.
			if err := rdb.PExpire(context.Background(), newKeys(e.cfg.Prefix, "mix").entry, 30*time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			hook.armed.Store(true)
			stale := doAsync(e, req(time.Hour))
			<-hook.failed
			joiner := doAsync(e, c.joiner(req))
			// The StaleFor query reads v1, or v2 when its retried lookup
			// comes after the other query's load was stored.
			if v := <-stale; v != "v1" && v != "v2" {
				t.Errorf("the StaleFor query read %q, want v1 or v2", v)
			}
			if v := <-joiner; v == "v1" {
				t.Errorf("the query that accepts no staleness was answered with the entry past its TTL (%q)", v)
			}
		})
	}
}

// A StaleFor query a refresh cannot run again stores its entry for its TTL
// only: kept longer, it could never be served.
func TestStaleForNotRefreshableStoredForTTL(t *testing.T) {
	e, srv := newTestEngine(t, func(c *Config) { c.TTLJitter = 0 })
	q := Request{Hash: "nr", Tables: []string{"*", "t"}, TTL: time.Minute, StaleFor: 24 * time.Hour,
		Load: func(context.Context) (*rowcodec.Entry, error) {
			return rowcodec.NewEntry([]string{"v"}, [][]driver.Value{{"x"}})
		}}
	do(t, e, q)
	if ttl := srv.TTL(newKeys(e.cfg.Prefix, "nr").entry); ttl != time.Minute {
		t.Errorf("the entry is kept %v in Redis, want its TTL of 1m", ttl)
	}
}
