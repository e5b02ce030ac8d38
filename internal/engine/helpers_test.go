package engine

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// newTestEngine returns an engine over an in-process Redis (miniredis,
// which runs the engine's Lua scripts), with the adapter's defaults, and
// the server. Both stop when the test ends.
func newTestEngine(t testing.TB, mod func(*Config)) (*Engine, *miniredis.Miniredis) {
	t.Helper()
	srv := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	cfg := testConfig(t, rdb)
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e, srv
}

// testConfig is the adapter's defaults over rdb, logging to t.
func testConfig(t testing.TB, rdb redis.UniversalClient) Config {
	return Config{
		Redis:           rdb,
		Prefix:          "gft-test",
		LockExpiry:      2 * time.Second,
		MaxWait:         10 * time.Second,
		LoadTimeout:     time.Minute,
		RedisTimeout:    time.Second,
		MaxEntrySize:    1 << 20,
		MemoSize:        8 << 20,
		BreakerFailures: 5,
		BreakerCooldown: time.Second,
		TTLJitter:       0.1,
		Log:             func(ctx context.Context, level Level, format string, args ...any) { t.Logf(format, args...) },
	}
}

// waitFor polls cond until it holds, failing the test after timeout. It
// waits for what no channel reports (a timer of the code under test).
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
