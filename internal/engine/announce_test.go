package engine

import (
	"context"
	"testing"
)

// A write's announcement is ended by its own token: a bump retried after a
// reply was lost cannot end another write's announcement, and the writers
// key goes away with the last one.
func TestAnnouncementTokens(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	ctx := context.Background()
	const table = "gft_announce"
	writers := func() int64 {
		t.Helper()
		n, err := e.rdb.ZCard(ctx, e.WritersKey(table)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	a := e.Announce(ctx, []string{table}, false)
	b := e.Announce(ctx, []string{table}, false)
	if !a.has(table) || !b.has(table) || a.token == b.token {
		t.Fatalf("announcements %+v and %+v: want both marked, with distinct tokens", a, b)
	}
	if n := writers(); n != 2 {
		t.Fatalf("%d writers announced, want 2", n)
	}
	gen := func() int64 {
		t.Helper()
		v, err := e.rdb.Get(ctx, e.GenKey(table)).Int64()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	// A's bump, then the same bump again, as a retry after a lost reply.
	for i := range 2 {
		if _, _, err := e.bump(ctx, []string{table}, a.ends()); err != nil {
			t.Fatal(err)
		}
		if n := writers(); n != 1 {
			t.Fatalf("after A's bump #%d: %d writers, want 1 (B's announcement must stand)", i+1, n)
		}
	}
	g1 := gen()
	if _, _, err := e.bump(ctx, []string{table}, b.ends()); err != nil {
		t.Fatal(err)
	}
	if n, err := e.rdb.Exists(ctx, e.WritersKey(table)).Result(); err != nil || n != 0 {
		t.Errorf("writers key after both bumps: exists=%d, %v; want gone", n, err)
	}
	if g2 := gen(); g2 <= g1 {
		t.Errorf("generation went from %d to %d, want it to grow", g1, g2)
	}
	// A bump without announcements (Invalidate, the retrier of a failed
	// announce) leaves nothing behind either.
	if _, _, err := e.bump(ctx, []string{table}, nil); err != nil {
		t.Fatal(err)
	}
	if n := writers(); n != 0 {
		t.Errorf("%d writers after a plain bump, want 0", n)
	}
}
