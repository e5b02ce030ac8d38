package engine

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// errDown is a failure without an answer from Redis.
var errDown = errors.New("connection refused")

// persistCount runs persist with an attempt that fails failures times
// before it succeeds, and returns how many attempts it made.
func persistCount(e *Engine, once bool, failures int) int {
	n := 0
	_ = e.persist(once, func() error {
		if n++; n <= failures {
			return errDown
		}
		return nil
	})
	return n
}

// A write tries until it lands, and failures it outlasts change nothing
// for the next one. One that fails for all of FailoverWait means Redis
// stayed down: the next writes make no more than the one retry they make
// without WaitReplicas, until a Redis operation succeeds. Before, a run of
// failures that sporadic stalls kept alive turned the wait off for a real
// failover.
func TestPersistWhileRedisStaysDown(t *testing.T) {
	e, _ := newTestEngine(t, func(c *Config) { c.WaitReplicas = 1; c.FailoverWait = 200 * time.Millisecond })
	for range 3 {
		if n := persistCount(e, false, 3); n != 4 {
			t.Fatalf("a write that failed 3 times made %d attempts, want 4 (it lands)", n)
		}
	}
	if e.down.Load() {
		t.Fatal("failures that were outlasted mark Redis down")
	}
	if err := e.persist(false, func() error { return errDown }); !errors.Is(err, errDown) || !e.down.Load() {
		t.Fatalf("a write that failed for all of FailoverWait returned %v, Redis down: %v; want errDown, true", err, e.down.Load())
	}
	if n := persistCount(e, true, 10); n != 2 {
		t.Errorf("a bump while Redis is down made %d attempts, want 2", n)
	}
	if n := persistCount(e, false, 10); n != 1 {
		t.Errorf("an announcement while Redis is down made %d attempts, want 1", n)
	}
	if err := e.guard(func() error { return nil }); err != nil || e.down.Load() {
		t.Fatalf("a Redis operation succeeded (%v) and Redis is still down: %v", err, e.down.Load())
	}
	if n := persistCount(e, false, 3); n != 4 {
		t.Errorf("once Redis answered again, a write that failed 3 times made %d attempts, want 4", n)
	}
}

// Reads that succeed on the same engine do not extend a write's wait: it
// gives up FailoverWait after its first failure. Before, each success
// ended the engine's run of failures and the write's next failure began a
// new one, so a write whose replica was cut off waited (its transaction
// open) for as long as other calls succeeded.
func TestWriteWaitBoundedWhileReadsSucceed(t *testing.T) {
	master, _ := startRedisServer(t, "--repl-diskless-sync-delay", "0")
	link := startCuttableProxy(t, master)
	replica, _ := startRedisServer(t, "--replicaof", "127.0.0.1", link.port())
	replicaClient(t, replica)
	rdb := redis.NewClient(&redis.Options{Addr: master, ContextTimeoutEnabled: true, MaxRetries: -1,
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, master)
		}})
	t.Cleanup(func() { _ = rdb.Close() })
	e := engineOn(t, rdb, func(c *Config) {
		c.WaitReplicas = 1
		c.RedisTimeout = 200 * time.Millisecond
		c.FailoverWait = 300 * time.Millisecond
		c.BreakerFailures = -1
	})
	ctx := context.Background()
	// The master is seen with its replica.
	if err := e.Invalidate(ctx, []string{"t"}, e.Announce(ctx, []string{"t"}, false)); err != nil {
		t.Fatal(err)
	}
	var loads atomic.Int64
	other := testRequest("k", "x", &loads)
	other.Tables = []string{"*", "u"}
	do(t, e, other)
	link.cut()

	done := make(chan error, 1)
	go func() { done <- e.Invalidate(ctx, []string{"t"}, Announcement{}) }()
	var reads int
	for ; len(done) == 0 && reads < 100_000; reads++ {
		do(t, e, other)
	}
	if len(done) == 0 {
		t.Fatalf("the write was still waiting after %d reads succeeded (FailoverWait 300ms)", reads)
	}
	if err := <-done; !errors.Is(err, errUnreplicated) {
		t.Errorf("the write returned %v, want errUnreplicated", err)
	}
}

// The answers a node gives while a failover is under way are tried again
// (with WaitReplicas); other answers are final. A cluster node's
// redirections are, besides, not failures to the breaker (redirected).
func TestFailoverReply(t *testing.T) {
	e, _ := newTestEngine(t, func(c *Config) { c.WaitReplicas = 1 })
	for _, tc := range []struct {
		err                     error
		failingOver, redirected bool
	}{
		{replyErr("LOADING Redis is loading the dataset in memory"), true, false},
		{replyErr("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), true, false},
		{replyErr("NOREPLICAS Not enough good replicas to write."), true, false},
		{replyErr("MOVED 3999 127.0.0.1:6381"), true, true},
		{replyErr("CLUSTERDOWN The cluster is down"), true, true},
		{replyErr("READONLY You can't write against a read only replica."), true, true},
		{replyErr("OOM command not allowed when used memory > 'maxmemory'."), false, false},
		{replyErr("NOPERM this user has no permissions to run the 'evalsha' command"), false, false},
		{replyErr("ERR Error running script"), false, false},
		{errUnreplicated, true, false},
		{errDown, true, false},
		{redis.ErrClosed, false, false},
	} {
		if got := e.failingOver(tc.err); got != tc.failingOver {
			t.Errorf("failingOver(%v) = %v, want %v", tc.err, got, tc.failingOver)
		}
		if got := redirected(tc.err); got != tc.redirected {
			t.Errorf("redirected(%v) = %v, want %v", tc.err, got, tc.redirected)
		}
	}
	off, _ := newTestEngine(t, nil)
	if off.failingOver(errDown) {
		t.Error("without WaitReplicas an unreachable Redis is taken for a failover")
	}
}

// failHook fails the next n pipelines without an answer from Redis.
type failHook struct{ n atomic.Int64 }

func (h *failHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *failHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *failHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for n := h.n.Load(); n > 0; n = h.n.Load() {
			if h.n.CompareAndSwap(n, n-1) {
				err := &net.OpError{Op: "read", Err: errDown}
				for _, c := range cmds {
					c.SetErr(err)
				}
				return err
			}
		}
		return next(ctx, cmds)
	}
}

// A flight that outlasted a failure and was then answered starts afresh:
// a later failure of its lock try is waited for, not taken for the end of
// a FailoverWait spent in vain. Before, the flight kept its first failure,
// and a lock try failing more than FailoverWait after it marked Redis down
// (turning the wait off for the failover that may follow) and read the
// database.
func TestFlightAnsweredStartsAfresh(t *testing.T) {
	srv := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	h := new(failHook)
	rdb.AddHook(h)
	e := engineOn(t, rdb, func(c *Config) {
		c.WaitReplicas = 1
		c.FailoverWait = 100 * time.Millisecond
		c.BreakerFailures = -1
	})
	var once sync.Once
	e.SetSeam(func(point, _ string) {
		if point == SeamMissed {
			once.Do(func() {
				// The fault's schedule, not a wait for an event: the lock
				// try fails once FailoverWait has passed since the flight's
				// first failure, after Redis answered its look.
				time.Sleep(2 * e.cfg.FailoverWait)
				h.n.Store(1)
			})
		}
	})
	h.n.Store(1) // the flight's first look fails
	var loads atomic.Int64
	if v := do(t, e, testRequest("k", "x", &loads)); v != "x" {
		t.Fatalf("read %q, want x", v)
	}
	if n, f := loads.Load(), e.stats.Fallbacks.Load(); n != 1 || f != 0 || e.down.Load() {
		t.Errorf("%d loads, %d fallbacks, Redis down %v; want 1 load under the lock, none, false", n, f, e.down.Load())
	}
}

// A flight whose MaxWait ends while Redis has failed since its first
// failure waited in vain: Redis is taken as down, and the next flight
// tries once and reads the database. Before, with MaxWait no longer than
// FailoverWait (as the README recommends), no flight ever spent all of
// FailoverWait, and every cached query waited MaxWait while Redis stayed
// down.
func TestFlightMaxWaitMarksRedisDown(t *testing.T) {
	srv := miniredis.RunT(t)
	// One dial per try: every try fails at once.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = rdb.Close() })
	e := engineOn(t, rdb, func(c *Config) {
		c.WaitReplicas = 1
		c.FailoverWait = time.Minute
		c.MaxWait = 100 * time.Millisecond
		c.BreakerFailures = -1 // every try reaches the client, and is counted
		c.Log = nil
	})
	srv.Close()
	var loads atomic.Int64
	do(t, e, testRequest("a", "x", &loads))
	if !e.down.Load() {
		t.Fatal("a flight that failed until its MaxWait did not mark Redis down")
	}
	errs := e.stats.RedisErrors.Load()
	do(t, e, testRequest("b", "x", &loads))
	if n := e.stats.RedisErrors.Load() - errs; n != 1 {
		t.Errorf("the next flight made %d failed Redis operations, want 1: Redis is down", n)
	}
	if n := loads.Load(); n != 2 {
		t.Errorf("%d loads, want 2 (both from the database)", n)
	}
}
