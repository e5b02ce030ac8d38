package engine

import (
	"context"
	"database/sql/driver"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gormflight/gormflight/internal/rowcodec"
)

// localRig is two engines with near caches over one miniredis, and a key
// over table "t" whose n-th load returns "v<n>". b's near cache runs on a
// clock the test moves.
type localRig struct {
	a, b  *Engine
	srv   *miniredis.Miniredis
	trips *tripLog // b's Redis commands
	clock *fakeClock
	n     atomic.Int64
}

func newLocalRig(t *testing.T) *localRig {
	r := &localRig{trips: new(tripLog), clock: &fakeClock{t: time.Unix(1_800_000_000, 0)}}
	withLocal := func(c *Config) { c.LocalSize = 1 << 20 }
	r.a, r.srv = newTestEngine(t, withLocal)
	r.b = newHookedEngine(t, r.srv, r.trips, withLocal)
	r.b.local.now = r.clock.now
	return r
}

func (r *localRig) request(maxStale time.Duration) Request {
	return Request{Hash: "k", Tables: []string{"t"}, TTL: time.Minute, Local: maxStale,
		Load: func(context.Context) (*rowcodec.Entry, error) {
			return rowcodec.NewEntry([]string{"v"}, [][]driver.Value{{fmt.Sprintf("v%d", r.n.Add(1))}})
		}}
}

// warm makes b hold the key in its near cache: its first Local request
// starts its subscription, and reads after it is live are kept.
func (r *localRig) warm(t *testing.T, maxStale time.Duration) string {
	t.Helper()
	do(t, r.b, r.request(maxStale))
	waitFor(t, "b's subscription", 10*time.Second, r.b.local.subscribed)
	v := do(t, r.b, r.request(maxStale))
	hits := r.b.stats.LocalHits.Load()
	if got := do(t, r.b, r.request(maxStale)); got != v || r.b.stats.LocalHits.Load() != hits+1 {
		t.Fatalf("after warming: %q (local hits %d -> %d), want a local hit of %q", got, hits, r.b.stats.LocalHits.Load(), v)
	}
	return v
}

// A local hit costs no Redis command; a query without Local never takes
// one.
func TestLocalHit(t *testing.T) {
	r := newLocalRig(t)
	r.warm(t, time.Hour)
	r.trips.reset()
	for range 5 {
		if v := do(t, r.b, r.request(time.Hour)); v != "v1" {
			t.Fatalf("local hit: %q, want v1", v)
		}
	}
	if trips := r.trips.snapshot(); len(trips) != 0 {
		t.Errorf("local hits sent %d round trips to Redis, want 0: %v", len(trips), trips)
	}
	if n := r.n.Load(); n != 1 {
		t.Errorf("%d loads, want 1", n)
	}
	hits := r.b.stats.LocalHits.Load()
	do(t, r.b, r.request(0))
	if r.b.stats.LocalHits.Load() != hits || len(r.trips.snapshot()) == 0 {
		t.Errorf("a query without Local was answered from the near cache")
	}
}

// A write through an instance ends its local entries before the write
// returns: the next read is new, at once, however late the bump's message.
func TestLocalReadsOwnWrites(t *testing.T) {
	r := newLocalRig(t)
	r.warm(t, time.Hour)
	r.b.local.prefix = "(none)" // b's listener now ignores every bump's message
	if err := r.b.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	if v := do(t, r.b, r.request(time.Hour)); v != "v2" {
		t.Errorf("after b's own write: %q, want the new load's v2", v)
	}
	if n := r.b.stats.LocalInvalidations.Load(); n != 1 {
		t.Errorf("LocalInvalidations = %d, want 1", n)
	}
}

// Another instance's write reaches the near cache through the bump's
// message, long before maxStale.
func TestLocalPushedInvalidation(t *testing.T) {
	r := newLocalRig(t)
	r.warm(t, time.Hour)
	if err := r.a.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to read a's write", 10*time.Second, func() bool { return do(t, r.b, r.request(time.Hour)) == "v2" })
	if n := r.n.Load(); n != 2 {
		t.Errorf("%d loads, want 2", n)
	}
}

// A write whose message never arrives (here the generation moves without
// one) is missed for at most maxStale: after it, the read goes to Redis.
func TestLocalMaxStale(t *testing.T) {
	r := newLocalRig(t)
	const maxStale = 10 * time.Second
	r.warm(t, maxStale)
	gen := r.a.GenKey("t")
	old, err := r.srv.Get(gen)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Set(gen, old+"1"); err != nil { // larger, silently
		t.Fatal(err)
	}
	r.clock.add(maxStale)
	if v := do(t, r.b, r.request(maxStale)); v != "v1" {
		t.Fatalf("within maxStale: %q, want the local v1", v)
	}
	r.clock.add(time.Nanosecond)
	if v := do(t, r.b, r.request(maxStale)); v != "v2" {
		t.Errorf("past maxStale: %q, want v2, loaded for the new generation", v)
	}
}

// While its subscription is lost, an instance serves no local hit, and what
// it held before is not served after it has subscribed again: messages
// may have been lost in between.
func TestLocalLostSubscription(t *testing.T) {
	r := newLocalRig(t)
	r.warm(t, time.Hour)
	hits := r.b.stats.LocalHits.Load()
	r.srv.Close() // every connection drops
	waitFor(t, "b to notice", 10*time.Second, func() bool { return !r.b.local.subscribed() })
	if v := do(t, r.b, r.request(time.Hour)); v != "v2" {
		t.Errorf("Redis down: %q, want v2 from the database", v)
	}
	if err := r.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to subscribe again", 10*time.Second, r.b.local.subscribed)
	if v := do(t, r.b, r.request(time.Hour)); v != "v1" {
		t.Errorf("after resubscribing: %q, want v1 from Redis", v)
	}
	if n := r.b.stats.LocalHits.Load(); n != hits {
		t.Errorf("%d local hits since the loss, want 0", n-hits)
	}
	if n := r.b.stats.LocalResubscribes.Load(); n != 1 {
		t.Errorf("LocalResubscribes = %d, want 1", n)
	}
	if v := do(t, r.b, r.request(time.Hour)); v != "v1" || r.b.stats.LocalHits.Load() != hits+1 {
		t.Errorf("then: %q, local hits +%d, want a local hit of v1", v, r.b.stats.LocalHits.Load()-hits)
	}
}

func TestGlobEscape(t *testing.T) {
	for in, want := range map[string]string{"app": "app", `a*b?[c]\d`: `a\*b\?\[c\]\\d`} {
		if got := globEscape(in); got != want {
			t.Errorf("globEscape(%q) = %q, want %q", in, got, want)
		}
	}
}
