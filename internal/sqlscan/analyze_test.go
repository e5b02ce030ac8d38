package sqlscan

import (
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestTablesLargeInputs feeds pathological inputs of a few hundred
// kilobytes (20000-fold nesting, unclosed comments and quotes): they must be
// parsed without a panic or a stack overflow, and a quadratic tokenizer
// would run the suite into its timeout. BenchmarkTables times parsing.
func TestTablesLargeInputs(t *testing.T) {
	const n = 20000
	var ctes, refs strings.Builder
	for i := range n {
		if i > 0 {
			ctes.WriteString(", ")
			refs.WriteString(", ")
		}
		fmt.Fprintf(&ctes, "c%d AS (SELECT 1)", i)
		fmt.Fprintf(&refs, "c%d", i)
	}
	inputs := map[string]string{
		"many ctes":        "WITH " + ctes.String() + " SELECT * FROM " + refs.String() + ", real_t",
		"deep parens":      strings.Repeat("(", n) + "SELECT * FROM t" + strings.Repeat(")", n),
		"unbalanced with":  strings.Repeat("WITH a (x, ", n),
		"nested with":      strings.Repeat("WITH a AS (", n) + "SELECT * FROM t",
		"unclosed comment": "SELECT * FROM t /*" + strings.Repeat("/* x ", n),
		"unclosed dollar":  strings.Repeat("$a$ $b", n),
		"many joins":       "SELECT * FROM t0" + strings.Repeat(" JOIN t ON a.x = b.y", n),
		"many statements":  strings.Repeat("SELECT * FROM t;", n),
		"long string":      "SELECT '" + strings.Repeat("FROM x ", n) + "' FROM t",
	}
	for name, sql := range inputs {
		t.Run(name, func(t *testing.T) {
			read, _ := Tables(PostgreSQL, sql)
			if name == "many ctes" && !slices.Equal(read, l("real_t")) {
				t.Errorf("read = %q", read)
			}
		})
	}
}

// TestTablesReuse checks that pooled state does not leak between calls.
func TestTablesReuse(t *testing.T) {
	for range 3 {
		for _, tc := range tablesCases {
			read, written := Tables(PostgreSQL, tc.sql)
			if !slices.Equal(read, tc.read) || !slices.Equal(written, tc.written) {
				t.Fatalf("%s: got %q %q", tc.name, read, written)
			}
		}
	}
}

func TestTablesConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for k := range 50 {
				tc := tablesCases[(g*31+k)%len(tablesCases)]
				read, written := Tables(PostgreSQL, tc.sql)
				if !slices.Equal(read, tc.read) || !slices.Equal(written, tc.written) {
					errs <- tc.name
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for name := range errs {
		t.Errorf("%s: wrong result under concurrency", name)
	}
}

func TestTablesAllocs(t *testing.T) {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				t.Skip("sync.Pool drops items at random under the race detector")
			}
		}
	}
	allocs := testing.AllocsPerRun(100, func() { Tables(PostgreSQL, gormJoinQuery) })
	if allocs > 1 {
		t.Errorf("Tables allocates %v times per call, want at most 1", allocs)
	}
}

func checkSet(t *testing.T, what, sql string, v []string) {
	t.Helper()
	if v != nil && len(v) == 0 {
		t.Fatalf("%s of %q: empty non-nil list", what, sql)
	}
	for i, s := range v {
		if s == "" {
			t.Fatalf("%s of %q: empty name in %q", what, sql, v)
		}
		if i > 0 && v[i-1] >= s {
			t.Fatalf("%s of %q: not sorted and unique: %q", what, sql, v)
		}
	}
}

// stripCommentDelimiters removes every "/*" and "*/" so that the result can
// be placed inside a block comment.
func stripCommentDelimiters(s string) string {
	for strings.Contains(s, "/*") || strings.Contains(s, "*/") {
		s = strings.ReplaceAll(s, "/*", "")
		s = strings.ReplaceAll(s, "*/", "")
	}
	return s
}

func FuzzTables(f *testing.F) {
	for _, tc := range tablesCases {
		f.Add(tc.sql, "FROM x")
	}
	for _, c := range append(slices.Clone(ddlCases), catalogCases...) {
		f.Add(c.sql, "CASCADE")
	}
	f.Add("SELECT * FROM t /* unterminated", "*/ FROM x")
	f.Add("SELECT * FROM $q$ t", "$q$ FROM x")
	f.Add(`SELECT * FROM "t`, `" FROM x`)
	f.Fuzz(func(t *testing.T, sql, tail string) {
		read, written := Tables(PostgreSQL, sql)
		checkSet(t, "read", sql, read)
		checkSet(t, "written", sql, written)

		// Deterministic, and no state leaks through the pool.
		if r2, w2 := Tables(PostgreSQL, sql); !slices.Equal(r2, read) || !slices.Equal(w2, written) {
			t.Fatalf("second call differs for %q", sql)
		}

		// Nothing inside a comment is a table.
		commented := "/* " + stripCommentDelimiters(sql) + " */"
		if r, w := Tables(PostgreSQL, commented); r != nil || w != nil {
			t.Fatalf("Tables(%q) = %q, %q; want nothing", commented, r, w)
		}

		// A trailing line comment changes nothing, provided the statement
		// does not end inside a string, quoted identifier or block comment
		// (detected by checking that a following statement is seen).
		if r, _ := Tables(PostgreSQL, sql+"\n;SELECT * FROM zz_sentinel"); slices.Contains(r, "zz_sentinel") && !slices.Contains(read, "zz_sentinel") {
			tail = strings.NewReplacer("\n", "", "\r", "").Replace(tail)
			with := sql + "-- " + tail
			if r, w := Tables(PostgreSQL, with); !slices.Equal(r, read) || !slices.Equal(w, written) {
				t.Fatalf("Tables(%q) = %q, %q; Tables(%q) = %q, %q", with, r, w, sql, read, written)
			}
		}

		// Keywords and unquoted names are case-insensitive: flipping their
		// case changes nothing.
		r := Analyze(PostgreSQL, sql)
		if flipped := flipWordCase(sql); !reflect.DeepEqual(Analyze(PostgreSQL, flipped), r) {
			t.Fatalf("Analyze(%q) = %+v; Analyze(%q) = %+v", sql, r, flipped, Analyze(PostgreSQL, flipped))
		}
		if r.Schema && !slices.Contains(r.Writes, AllTables) {
			t.Fatalf("Analyze(%q) = %+v: Schema without AllTables", sql, r)
		}

		_ = NormTable(PostgreSQL, sql)
	})
}

// flipWordCase swaps the ASCII case of every unquoted word of sql.
func flipWordCase(sql string) string {
	b := []byte(sql)
	for _, t := range Lex(PostgreSQL, sql) {
		if t.Kind != TokWord {
			continue
		}
		for i := t.Pos; i < t.End; i++ {
			switch c := b[i]; {
			case c >= 'a' && c <= 'z':
				b[i] = c - 'a' + 'A'
			case c >= 'A' && c <= 'Z':
				b[i] = c - 'A' + 'a'
			}
		}
	}
	return string(b)
}

func BenchmarkTables(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Tables(PostgreSQL, gormJoinQuery)
	}
}
