package engine

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A run of failures is the failures no more than FailoverWait apart: it
// starts again after a quiet gap, however it ended.
func TestFailureRun(t *testing.T) {
	var r failureRun
	t0 := time.Unix(1_000, 0)
	const gap = 2 * time.Second
	for _, step := range []struct {
		at, want time.Duration
	}{
		{0, 0},
		{time.Second, 0},
		{2 * time.Second, 0},               // within gap of the last
		{5 * time.Second, 5 * time.Second}, // more than gap after the last: a new run
		{6 * time.Second, 5 * time.Second},
	} {
		if got := r.since(t0.Add(step.at), gap); !got.Equal(t0.Add(step.want)) {
			t.Errorf("failure at +%v: run started at +%v, want +%v", step.at, got.Sub(t0), step.want)
		}
	}
}

// errDown is a failure without an answer from Redis.
var errDown = errors.New("connection refused")

// A write whose run of failures has already lasted FailoverWait makes no
// more than the one retry it makes without WaitReplicas; one that starts a
// run tries until it lands.
func TestPersistInARunOfFailures(t *testing.T) {
	e, _ := newTestEngine(t, func(c *Config) { c.WaitReplicas = 1; c.FailoverWait = time.Minute })
	count := func(once bool, failures int) int {
		n := 0
		_ = e.persist(once, func() error {
			if n++; n <= failures {
				return errDown
			}
			return nil
		})
		return n
	}
	if n := count(false, 3); n != 4 {
		t.Errorf("a write that failed 3 times made %d attempts, want 4 (it lands)", n)
	}
	// The run has lasted an hour, and goes on.
	e.failures.start, e.failures.last = time.Now().Add(-time.Hour), time.Now()
	if n := count(true, 10); n != 2 {
		t.Errorf("a bump in an expired run made %d attempts, want 2", n)
	}
	if n := count(false, 10); n != 1 {
		t.Errorf("an announcement in an expired run made %d attempts, want 1", n)
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
	other.Tables = []string{"u"}
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
// (with WaitReplicas); other answers are final.
func TestFailoverReply(t *testing.T) {
	e, _ := newTestEngine(t, func(c *Config) { c.WaitReplicas = 1 })
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{replyErr("LOADING Redis is loading the dataset in memory"), true},
		{replyErr("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), true},
		{replyErr("NOREPLICAS Not enough good replicas to write."), true},
		{replyErr("MOVED 3999 127.0.0.1:6381"), true},
		{replyErr("CLUSTERDOWN The cluster is down"), true},
		{replyErr("OOM command not allowed when used memory > 'maxmemory'."), false},
		{replyErr("NOPERM this user has no permissions to run the 'evalsha' command"), false},
		{replyErr("ERR Error running script"), false},
		{errDown, true},
		{redis.ErrClosed, false},
	} {
		if got := e.failingOver(tc.err); got != tc.want {
			t.Errorf("failingOver(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	off, _ := newTestEngine(t, nil)
	if off.failingOver(errDown) {
		t.Error("without WaitReplicas an unreachable Redis is taken for a failover")
	}
}
