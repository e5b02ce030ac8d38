package engine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// slot agrees with Redis's own CLUSTER KEYSLOT, and each copy's tag lies in
// its sixteenth of the slots.
func TestCopyTagsSpreadOverSlots(t *testing.T) {
	node := redis.NewClient(&redis.Options{Addr: startClusterNode(t)})
	defer node.Close()
	for _, table := range []string{"users", "*", `"Odd"."Name"`, "t"} {
		tags := copyTags(table, 16)
		for i, tag := range tags {
			want, err := node.ClusterKeySlot(context.Background(), tag).Result()
			if err != nil {
				t.Fatal(err)
			}
			if got := slot(tag); int64(got) != want {
				t.Fatalf("slot(%q) = %d, Redis says %d", tag, got, want)
			}
			if r := int(want) * 16 / slots; r != i {
				t.Errorf("copy %d of %q has tag %q in slot %d, range %d", i, table, tag, want, r)
			}
		}
	}
}

// With several copies of a table's keys, queries read different copies,
// and a write ends the entries of every one of them.
func TestWriteEndsEveryCopy(t *testing.T) {
	a, srv := newTestEngine(t, func(c *Config) { c.KeyCopies = 4 })
	b := newEngineOn(t, srv, func(c *Config) { c.KeyCopies = 4 })
	var loads atomic.Int64
	seen := map[int]bool{}
	var hashes []string
	for i := 0; len(seen) < 4; i++ {
		h := fmt.Sprintf("q%d", i)
		seen[a.copyOf(h)] = true
		hashes = append(hashes, h)
	}
	for _, h := range hashes {
		do(t, a, testRequest(h, "old", &loads))
		if v := do(t, b, testRequest(h, "old", &loads)); v != "old" {
			t.Fatalf("%s: b read %q", h, v)
		}
	}
	if n := loads.Load(); n != int64(len(hashes)) {
		t.Fatalf("%d loads for %d keys read twice, want one each", n, len(hashes))
	}
	for round, announce := range []bool{false, true} {
		a.stats.Fallbacks.Store(0)
		b.stats.Fallbacks.Store(0)
		before := loads.Load()
		var ann Announcement
		if announce {
			ann = a.Announce(context.Background(), []string{"t"}, false)
		}
		if err := a.Invalidate(context.Background(), []string{"t"}, ann); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprint("new", round)
		for _, h := range hashes {
			if v := do(t, b, testRequest(h, want, &loads)); v != want {
				t.Errorf("%s (copy %d): read %q after write %d, want %s", h, b.copyOf(h), v, round, want)
			}
		}
		// Each key loaded once, by a flight that met no write in progress.
		if n, f := loads.Load()-before, b.stats.Fallbacks.Load(); n != int64(len(hashes)) || f != 0 {
			t.Errorf("write %d: %d loads for %d keys (want one each), %d fallbacks (want 0)", round, n, len(hashes), f)
		}
	}
}

// Instances that share a prefix must agree on KeyCopies: a write bumps only
// the copies its instance knows of. New refuses a value that differs from
// the one the first instance recorded.
func TestKeyCopiesMustAgree(t *testing.T) {
	_, srv := newTestEngine(t, func(c *Config) { c.KeyCopies = 4 })
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	for _, n := range []int{0, 1, 16} {
		cfg := testConfig(t, rdb)
		cfg.KeyCopies = n
		if e, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			if e != nil {
				_, _ = e.Close()
			}
			t.Errorf("KeyCopies %d after an instance with 4: New returned %v, want ErrInvalidConfig", n, err)
		}
	}
	b := newEngineOn(t, srv, func(c *Config) { c.KeyCopies = 4 })
	if b.cfg.KeyCopies != 4 {
		t.Fatal("the same KeyCopies refused")
	}
}

// A query reads the copy of its tables' keys whose slots are in the same
// n-th of the slot space as its entry's, so that shards owning even
// ranges of slots serve a lookup from one node.
func TestCopyInEntrySlotRange(t *testing.T) {
	const n = 16
	e := &Engine{cfg: Config{KeyCopies: n}}
	tags := copyTags("users", n)
	used := map[int]int{}
	for i := range 4096 {
		h := fmt.Sprintf("%064x", i*2654435761)
		c := e.copyOf(h)
		if got, want := int(slot(tags[c]))*n/slots, int(slot(h))*n/slots; got != want {
			t.Fatalf("hash %s (slot %d) reads copy %d (tag %s, slot %d): range %d, want %d", h, slot(h), c, tags[c], slot(tags[c]), got, want)
		}
		used[c]++
	}
	for c := range n {
		if used[c] < 4096/n/2 {
			t.Errorf("copy %d read by %d of 4096 queries, want about %d", c, used[c], 4096/n)
		}
	}
}
