package engine

import (
	"context"
	"testing"
)

// fill.lua stores an entry unless the one there was computed under newer
// generations, comparing stamps component by component, as numbers.
func TestFillScript(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	rdb := e.rdb
	ctx := context.Background()
	key := e.cfg.Prefix + ":{x}:e"
	store := func(stamp string) int64 {
		t.Helper()
		n, err := fillScript.Eval(ctx, rdb, []string{key}, stamp, stamp+"|payload", 60000).Int64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, c := range []struct {
		stamp  string
		stored int64
		keeps  string
	}{
		{"100,500", 1, "100,500"}, // empty key
		{"100,499", 0, "100,500"}, // older in the second component
		{"99,900", 0, "100,500"},  // older in the first, newer in the second
		{"100,500", 1, "100,500"}, // equal: replaced
		{"101,1", 1, "101,1"},     // newer in the first component decides
		{"101,2", 1, "101,2"},
		{"1000,2", 1, "1000,2"}, // numeric, not string, comparison
		{"999,3", 0, "1000,2"},
	} {
		if got := store(c.stamp); got != c.stored {
			t.Errorf("store %q returned %d, want %d", c.stamp, got, c.stored)
		}
		v, err := rdb.Get(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := c.keeps + "|payload"; v != want {
			t.Errorf("after storing %q the key holds %q, want %q", c.stamp, v, want)
		}
	}
}
