package sqlscan

import (
	"reflect"
	"slices"
	"testing"
)

func TestDialectOf(t *testing.T) {
	for _, c := range []struct {
		name string
		want Dialect
		ok   bool
	}{
		{"postgres", PostgreSQL, true},
		{"Postgres", 0, false},
		{"mysql", MySQL, true},
		{"MySQL", 0, false},
		{"sqlite", SQLite, true},
		{"sqlite3", 0, false},
		{"", 0, false},
	} {
		if d, ok := DialectOf(c.name); d != c.want || ok != c.ok {
			t.Errorf("DialectOf(%q) = %v, %v; want %v, %v", c.name, d, ok, c.want, c.ok)
		}
	}
	if s := PostgreSQL.String(); s != "PostgreSQL" {
		t.Errorf("PostgreSQL.String() = %q", s)
	}
	if s := MySQL.String(); s != "MySQL" {
		t.Errorf("MySQL.String() = %q", s)
	}
	if s := SQLite.String(); s != "SQLite" {
		t.Errorf("SQLite.String() = %q", s)
	}
}

// TestZeroDialect checks that a Dialect the package does not know gets
// the answers that cost misses, never stale rows: nothing cached, every
// table invalidated.
func TestZeroDialect(t *testing.T) {
	const query = `SELECT * FROM users`
	for _, d := range []Dialect{0, MySQL + 1, 255} {
		t.Run(d.String(), func(t *testing.T) {
			want := Result{Reads: l(AllTables), Writes: l(AllTables), Catalog: true, DDL: true, Schema: true}
			r := Analyze(d, query)
			if !reflect.DeepEqual(r, want) {
				t.Errorf("Analyze = %+v, want %+v", r, want)
			}
			r.Reads[0], r.Writes[0] = "x", "x" // callers own the lists
			if read, written := Tables(d, query); !slices.Equal(read, l(AllTables)) || !slices.Equal(written, l(AllTables)) {
				t.Errorf("Tables = %q, %q; want AllTables, AllTables", read, written)
			}
			if got := NormTable(d, "users"); got != AllTables {
				t.Errorf("NormTable = %q, want AllTables", got)
			}
			if got := Classify(d, query); got != Other {
				t.Errorf("Classify = %v, want Other", got)
			}
			if got := Lex(d, query); got != nil {
				t.Errorf("Lex = %v, want nil", got)
			}
		})
	}
}
