package engine

import (
	"database/sql/driver"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/rowcodec"
)

// A query's three names, built as slices of one string, are the names
// other instances (and earlier versions of this format) use.
func TestQueryKeyNames(t *testing.T) {
	for _, c := range []struct {
		prefix, hash string
		want         keys
	}{
		{"gft", "ab12", keys{entry: "gft:{ab12}:e2", lock: "gft:{ab12}:l", ready: "gft:{ab12}:r"}},
		{"", "", keys{entry: ":{}:e2", lock: ":{}:l", ready: ":{}:r"}},
		{"app:v1", "k", keys{entry: "app:v1:{k}:e2", lock: "app:v1:{k}:l", ready: "app:v1:{k}:r"}},
	} {
		if got := newKeys(c.prefix, c.hash); got != c.want {
			t.Errorf("newKeys(%q, %q) = %+v, want %+v", c.prefix, c.hash, got, c.want)
		}
	}
}

// A stored value records its query's time in whole milliseconds rounded
// up: a query of under a millisecond is not recorded as taking none, which
// would keep refresh-ahead from ever refreshing it.
func TestStoredLoadTime(t *testing.T) {
	ent, err := rowcodec.NewEntry([]string{"v"}, [][]driver.Value{{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ load, want time.Duration }{
		{0, 0},
		{600 * time.Microsecond, time.Millisecond},
		{time.Millisecond, time.Millisecond},
		{1500 * time.Microsecond, 2 * time.Millisecond},
		{200 * time.Millisecond, 200 * time.Millisecond},
	} {
		v, err := EncodeStored("s", c.load, 0, ent, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _, _, meta, ok := splitStored(v)
		if !ok || meta.load != c.want {
			t.Errorf("a load of %v is stored as %v (ok %v), want %v", c.load, meta.load, ok, c.want)
		}
	}
}
