package gormflight

import (
	"testing"
	"time"

	"gorm.io/gorm"
)

// Regression tests for defects found by using the plugin as a user would
// (issue 7). Each failed before its fix.

// What a caller does to the rows it receives never changes what the next
// caller gets: GORM's MapColumns renames the column slice it is handed in
// place, and a replayed entry is shared by a flight's callers and the memo.
func TestReplayColumnsAreCallersOwn(t *testing.T) {
	in := newInstances(t, 1, nil)[0]
	const q = "SELECT 7 AS id, 'gopher' AS name"
	type row struct {
		ID    int
		Name  string
		Title string
	}
	read := func(db *gorm.DB) row {
		t.Helper()
		var r row
		if err := db.Raw(q).Scan(&r).Error; err != nil {
			t.Fatal(err)
		}
		return r
	}
	cached := func() *gorm.DB { return in.db.Scopes(Cache(time.Minute)) }
	if got := read(cached()); got.Name != "gopher" {
		t.Fatalf("first read: %+v", got)
	}
	// A hit, with the column renamed for this caller only.
	if got := read(cached().MapColumns(map[string]string{"name": "title"})); got.Title != "gopher" || got.Name != "" {
		t.Fatalf("MapColumns read: %+v, want Title set and Name empty", got)
	}
	if got := read(cached()); got.Name != "gopher" || got.Title != "" {
		t.Fatalf("a later plain hit scanned %+v: the rename leaked into the shared entry", got)
	}
	if in.p.Stats().Hits < 2 {
		t.Fatalf("expected the later reads to be hits, stats %+v", in.p.Stats())
	}
}

// The longest TTL, with a jitter that would overflow a time.Duration, is
// stored with an expiry Redis accepts, and the next read is a hit.
func TestLongestTTLIsStored(t *testing.T) {
	in := newInstances(t, 1, func(c *Config) { c.TTLJitter = 5 })[0]
	tag := uniqueTag(t)
	for i := 0; i < 2; i++ {
		var n int
		if err := in.db.Scopes(Cache(MaxTTL)).Raw("SELECT gft_record(?, 0) AS n", tag).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
	}
	if got := calls(t, in.db, tag); got != 1 {
		t.Fatalf("the query ran %d times, want 1 (the second read a hit)", got)
	}
	if s := in.p.Stats(); s.RedisErrors != 0 || s.Hits != 1 {
		t.Fatalf("stats %+v, want 1 hit and no Redis errors", s)
	}
}
