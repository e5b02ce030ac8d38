package engine

import (
	"context"
	"database/sql/driver"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/redis/go-redis/v9"
)

// tripLog records the round trips of a client: a command sent alone, or a
// pipeline, is one.
type tripLog struct {
	mu    sync.Mutex
	trips [][]string // the command names of each round trip
}

func (l *tripLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *tripLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.add(cmd)
		return next(ctx, cmd)
	}
}

func (l *tripLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.add(cmds...)
		return next(ctx, cmds)
	}
}

func (l *tripLog) add(cmds ...redis.Cmder) {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = strings.ToLower(c.Name())
		if s := ScriptOf(c); s != "" {
			names[i] += ":" + s
		}
	}
	l.mu.Lock()
	l.trips = append(l.trips, names)
	l.mu.Unlock()
}

func (l *tripLog) snapshot() [][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.trips)
}

func (l *tripLog) reset() {
	l.mu.Lock()
	l.trips = nil
	l.mu.Unlock()
}

// A loader costs at most four round trips, and its waiters are told in the
// first round trip after its query returns.
func TestLoaderRoundTrips(t *testing.T) {
	_, srv := newTestEngine(t, nil)
	log := &tripLog{}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	rdb.AddHook(log)
	t.Cleanup(func() { _ = rdb.Close() })
	e, err := New(testConfig(t, rdb))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.Close() })

	var loads int
	returned := -1 // the number of round trips made when the query returned
	req := func(hash string) Request {
		return Request{Hash: hash, Tables: []string{"*", "a", "b"}, TTL: 60e9,
			Load: func(context.Context) (*rowcodec.Entry, error) {
				loads++
				returned = len(log.snapshot())
				return rowcodec.NewEntry([]string{"v"}, [][]driver.Value{{"x"}})
			}}
	}
	// A first load sends each script once by its source (NOSCRIPT).
	e.Enter()
	if _, err := e.Do(context.Background(), req("warm")); err != nil {
		t.Fatal(err)
	}
	e.Exit()
	log.reset()

	e.Enter()
	_, err = e.Do(context.Background(), req("cold"))
	e.Exit()
	if err != nil {
		t.Fatal(err)
	}
	trips := log.snapshot()
	for i, tr := range trips {
		t.Logf("round trip %d: %v", i+1, tr)
	}
	if loads != 2 {
		t.Fatalf("%d loads, want 2", loads)
	}
	if len(trips) > 4 {
		t.Errorf("the loader made %d round trips, want at most 4", len(trips))
	}
	if returned < 0 || returned >= len(trips) || !slices.Contains(trips[returned], "publish") ||
		!slices.Contains(trips[returned], "evalsha:"+ScriptFill) && !slices.Contains(trips[returned], "eval:"+ScriptFill) {
		t.Errorf("the first round trip after the query (#%d) does not store and publish", returned+1)
	}
}

// A hit on an entry this instance holds decoded fetches only the stored
// value's head; when another instance stored a new value, a second round
// trip fetches it.
func TestHitFetchesHeadOnly(t *testing.T) {
	_, srv := newTestEngine(t, nil)
	log := &tripLog{}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	rdb.AddHook(log)
	t.Cleanup(func() { _ = rdb.Close() })
	a, err := New(testConfig(t, rdb))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = a.Close() })
	b := newEngineOn(t, srv)

	var loads atomic.Int64
	do(t, a, testRequest("k", "x", &loads)) // loads
	do(t, a, testRequest("k", "x", &loads)) // fetches it all, decodes it
	log.reset()
	if v := do(t, a, testRequest("k", "x", &loads)); v != "x" {
		t.Fatalf("hit: %q", v)
	}
	trips := log.snapshot()
	// Each lookup runs the mark first (restart.go).
	if len(trips) != 1 || trips[0][0] != "script" || trips[0][1] != "getrange" {
		t.Errorf("a hit on a remembered entry made round trips %v, want one fetching only the head (getrange)", trips)
	}

	if err := b.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	if v := do(t, b, testRequest("k", "y", &loads)); v != "y" {
		t.Fatalf("b's load: %q", v)
	}
	log.reset()
	if v := do(t, a, testRequest("k", "z", &loads)); v != "y" {
		t.Errorf("after b stored a new value: a read %q, want b's y", v)
	}
	trips = log.snapshot()
	if len(trips) != 2 || trips[0][1] != "getrange" || trips[1][1] != "get" {
		t.Errorf("a hit on a changed value made round trips %v, want the head, then all of it", trips)
	}
	if n := loads.Load(); n != 2 {
		t.Errorf("%d loads, want 2 (a's first, b's after the invalidation)", n)
	}
}
