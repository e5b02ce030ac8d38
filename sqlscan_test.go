package gormflight

import (
	"slices"
	"testing"
)

// isSelect lets writtenTables skip parsing plain SELECTs; a second statement
// after a semicolon must not hide behind the first one's SELECT.
func TestIsSelect(t *testing.T) {
	for _, c := range []struct {
		sql  string
		want bool
	}{
		{"SELECT * FROM t", true},
		{"  (SELECT 1) UNION (SELECT 2)", true},
		{"SELECTED", false},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", false},
		{"SELECT pg_advisory_lock(1); UPDATE t SET a = 1", false},
		{"UPDATE t SET a = 1", false},
	} {
		if got := isSelect(c.sql); got != c.want {
			t.Errorf("isSelect(%q) = %v, want %v", c.sql, got, c.want)
		}
	}
	if _, written := sqlTables("SELECT pg_advisory_lock(1); UPDATE t SET a = 1"); !slices.Equal(written, []string{"t"}) {
		t.Errorf("tables written by a SELECT followed by an UPDATE: %v, want [t]", written)
	}
}
