package engine

import (
	"slices"
	"testing"
)

func TestRealTables(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{nil, nil},
		{[]string{"*"}, []string{}},
		{[]string{"*", "a", "b"}, []string{"a", "b"}},
		{[]string{"!odd", "*", "a"}, []string{"!odd", "a"}},
		{[]string{"a", "b"}, []string{"a", "b"}},
	} {
		in := slices.Clone(c.in)
		if got := RealTables(in); !slices.Equal(got, c.want) {
			t.Errorf("RealTables(%q) = %q, want %q", c.in, got, c.want)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("RealTables changed its argument %q to %q", c.in, in)
		}
	}
}
