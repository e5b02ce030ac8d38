package engine

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/redis/go-redis/v9"
)

// testRequest is a request for one row, v, counting its loads in n.
func testRequest(hash string, v string, n *atomic.Int64) Request {
	return Request{
		Hash:   hash,
		Tables: []string{"t"},
		TTL:    time.Minute,
		Load: func(context.Context) (*rowcodec.Entry, error) {
			n.Add(1)
			return rowcodec.NewEntry([]string{"v"}, [][]driver.Value{{v}})
		},
	}
}

func do(t *testing.T, e *Engine, req Request) string {
	t.Helper()
	if !e.Enter() {
		t.Fatal("engine closed")
	}
	defer e.Exit()
	ent, err := e.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return ent.Values()[0][0].(string)
}

// Two engines over one Redis: while one loads a key, the other waits for
// its result instead of loading it too.
func TestDoLoadsOncePerCluster(t *testing.T) {
	a, srv := newTestEngine(t, nil)
	b := newEngineOn(t, srv)
	var loads atomic.Int64
	started, release := make(chan struct{}), make(chan struct{})
	slow := testRequest("k", "x", &loads)
	load := slow.Load
	slow.Load = func(ctx context.Context) (*rowcodec.Entry, error) {
		close(started)
		<-release
		return load(ctx)
	}
	got := make(chan string, 2)
	go func() { got <- do(t, a, slow) }()
	<-started
	go func() { got <- do(t, b, testRequest("k", "x", &loads)) }()
	waitFor(t, "b to wait for a's result", 10*time.Second, func() bool { return b.Subscribed() == 1 })
	close(release)
	for range 2 {
		if v := <-got; v != "x" {
			t.Errorf("got %q, want x", v)
		}
	}
	if n := loads.Load(); n != 1 {
		t.Errorf("%d loads for one cold key on two engines, want 1", n)
	}
	if h := b.Stats().Hits.Load(); h != 1 {
		t.Errorf("b: %d hits, want 1 (a's stored entry)", h)
	}
}

// newEngineOn returns a second engine over srv, configured as
// newTestEngine's.
func newEngineOn(t *testing.T, srv *miniredis.Miniredis) *Engine {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	cfg := testConfig(t, rdb)
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.Close() })
	return e
}

// A hit serves the stored entry; Invalidate makes the next read load anew.
func TestInvalidateEndsHits(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	var loads atomic.Int64
	for range 3 {
		do(t, e, testRequest("k", "x", &loads))
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("%d loads for 3 reads, want 1", n)
	}
	if err := e.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	if v := do(t, e, testRequest("k", "y", &loads)); v != "y" {
		t.Errorf("after Invalidate: %q, want the new load's y", v)
	}
	if n := loads.Load(); n != 2 {
		t.Errorf("%d loads, want 2", n)
	}
}

// Errors are returned to the caller and never stored.
func TestDoErrorNotStored(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	boom := errors.New("boom")
	var loads atomic.Int64
	failing := Request{Hash: "k", Tables: []string{"t"}, TTL: time.Minute,
		Load: func(context.Context) (*rowcodec.Entry, error) { loads.Add(1); return nil, boom }}
	for range 2 {
		if !e.Enter() {
			t.Fatal("closed")
		}
		_, err := e.Do(context.Background(), failing)
		e.Exit()
		if !errors.Is(err, boom) {
			t.Fatalf("Do: %v, want boom", err)
		}
	}
	if n := loads.Load(); n != 2 {
		t.Errorf("%d loads for two calls of a failing query, want 2", n)
	}
}

// A panic in Load reaches every caller sharing the flight, with its value,
// and leaves nothing behind: the next call loads again.
func TestDoPanicReachesCallers(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	var loads atomic.Int64
	started, release := make(chan struct{}), make(chan struct{})
	req := Request{Hash: "k", Tables: []string{"t"}, TTL: time.Minute,
		Load: func(context.Context) (*rowcodec.Entry, error) {
			if loads.Add(1) == 1 {
				close(started)
				<-release
			}
			panic("bad row")
		}}
	var wg sync.WaitGroup
	recovered := make(chan any, 2)
	call := func() {
		defer wg.Done()
		defer func() { recovered <- recover() }()
		e.Enter()
		defer e.Exit()
		_, _ = e.Do(context.Background(), req)
	}
	wg.Add(1)
	go call()
	<-started
	wg.Add(1)
	go call() // joins the flight, or starts the next one after it
	close(release)
	wg.Wait()
	close(recovered)
	for v := range recovered {
		if pe, ok := v.(*panicError); !ok || pe.value != "bad row" {
			t.Errorf("a caller recovered %#v, want a panic carrying \"bad row\"", v)
		}
	}
	wg.Add(1)
	recovered = make(chan any, 1)
	call()
	if v := <-recovered; v == nil {
		t.Error("the call after the panic did not run the query")
	}
	if n := loads.Load(); n < 2 {
		t.Errorf("%d loads after a panic and a new call, want the new call to load again", n)
	}
}

// ScriptOf names the engine's scripts sent by source or by hash.
func TestScriptOf(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		cmd  redis.Cmder
		want string
	}{
		{redis.NewCmd(ctx, "eval", genBumpSrc, 1, "k"), ScriptGenBump},
		{redis.NewCmd(ctx, "evalsha", genBumpScript.Hash(), 1, "k"), ScriptGenBump},
		{redis.NewCmd(ctx, "evalsha", writeBeginScript.Hash(), 1, "k"), ScriptWriteBegin},
		{redis.NewCmd(ctx, "EVAL", fillSrc, 1, "k"), ScriptFill},
		{redis.NewCmd(ctx, "eval", "return 1", 0), ""},
		{redis.NewCmd(ctx, "get", genBumpSrc), ""},
		{redis.NewCmd(ctx, "ping"), ""},
	} {
		if got := ScriptOf(tc.cmd); got != tc.want {
			t.Errorf("ScriptOf(%v) = %q, want %q", tc.cmd.Args()[:1], got, tc.want)
		}
	}
}
