package engine

import "testing"

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
