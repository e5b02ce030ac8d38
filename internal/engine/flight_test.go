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
		Tables: []string{"*", "t"},
		TTL:    time.Minute,
		Load: func(context.Context) (*rowcodec.Entry, error) {
			n.Add(1)
			return rowcodec.NewEntry([]string{"v"}, [][]driver.Value{{v}})
		},
	}
}

// doAsync runs req on e on a goroutine of its own and sends what it read,
// or the error, as a string: t.Fatal must stay on the test's goroutine.
func doAsync(e *Engine, req Request) <-chan string {
	out := make(chan string, 1)
	go func() {
		if !e.Enter() {
			out <- "error: engine closed"
			return
		}
		defer e.Exit()
		ent, err := e.Do(context.Background(), req)
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		out <- ent.Values()[0][0].(string)
	}()
	return out
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
	fromA := doAsync(a, slow)
	<-started
	fromB := doAsync(b, testRequest("k", "x", &loads))
	waitFor(t, "b to wait for a's result", 10*time.Second, func() bool { return b.Subscribed() == 1 })
	close(release)
	for _, got := range []<-chan string{fromA, fromB} {
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
func newEngineOn(t *testing.T, srv *miniredis.Miniredis, mods ...func(*Config)) *Engine {
	t.Helper()
	return newHookedEngine(t, srv, nil, mods...)
}

// newHookedEngine is newEngineOn with hook on the engine's Redis client.
func newHookedEngine(t *testing.T, srv *miniredis.Miniredis, hook redis.Hook, mods ...func(*Config)) *Engine {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	if hook != nil {
		rdb.AddHook(hook)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return engineOn(t, rdb, mods...)
}

// engineOn returns an engine over rdb with testConfig changed by mods,
// closed when the test ends.
func engineOn(t testing.TB, rdb redis.UniversalClient, mods ...func(*Config)) *Engine {
	t.Helper()
	cfg := testConfig(t, rdb)
	for _, mod := range mods {
		mod(&cfg)
	}
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
	failing := Request{Hash: "k", Tables: []string{"*", "t"}, TTL: time.Minute,
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
	req := Request{Hash: "k", Tables: []string{"*", "t"}, TTL: time.Minute,
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

// A loader whose table was written while its query ran stores an entry
// that is already stale; its waiters must be told to load, at once, not
// left to find its lock still held and sleep until their poll timer. The
// hooks make b try the lock while a still holds it: a's unlock waits for
// b's SET NX.
func TestWaiterOfStaleStoreLoadsAtOnce(t *testing.T) {
	long := func(c *Config) { c.LockExpiry, c.MaxWait = time.Minute, time.Minute } // poll timer: 30s
	_, srv := newTestEngine(t, nil)
	triedLock := make(chan struct{})
	var once sync.Once
	bHook := pipelineHook(func(cmds []redis.Cmder) {
		if cmds[0].Name() == "set" {
			once.Do(func() { close(triedLock) })
		}
	})
	var unlocks atomic.Int64
	aHook := commandHook(func(cmd redis.Cmder) {
		// redsync's release: a script that is not the engine's own.
		if n := cmd.Name(); (n == "evalsha" || n == "eval") && ScriptOf(cmd) == "" && unlocks.Add(1) == 1 {
			select {
			case <-triedLock:
			case <-time.After(10 * time.Second):
			}
		}
	})
	a := newHookedEngine(t, srv, aHook, long)
	b := newHookedEngine(t, srv, bHook, long)
	var loads atomic.Int64
	started, release := make(chan struct{}), make(chan struct{})
	held := testRequest("k", "old", &loads)
	load := held.Load
	held.Load = func(ctx context.Context) (*rowcodec.Entry, error) {
		close(started)
		<-release
		return load(ctx)
	}
	fromA := doAsync(a, held)
	<-started
	got := doAsync(b, testRequest("k", "new", &loads))
	waitFor(t, "b to wait for a's result", 10*time.Second, func() bool { return b.Subscribed() == 1 })
	if err := a.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	close(release)
	select {
	case v := <-got:
		if v != "new" {
			t.Errorf("b read %q, want its own load after the write", v)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("b still waits: it was not told that a's entry is stale")
	}
	if v := <-fromA; v != "old" {
		t.Errorf("a read %q, want its own load", v)
	}
	if n := loads.Load(); n != 2 {
		t.Errorf("%d loads, want 2", n)
	}
}

// pipelineHook runs f on every pipeline a client sends, before it goes.
type pipelineHook func(cmds []redis.Cmder)

func (h pipelineHook) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h pipelineHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h pipelineHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h(cmds)
		return next(ctx, cmds)
	}
}

// commandHook runs f on every command a client sends alone, before it goes.
type commandHook func(cmd redis.Cmder)

func (h commandHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h commandHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h(cmd)
		return next(ctx, cmd)
	}
}
func (h commandHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
