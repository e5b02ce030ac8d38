package gormflight

import (
	"fmt"
	"testing"
	"time"
)

// Tables(...) declares tables that no SQL parser can see: the base table of
// a view, the table a SQL function reads. A write to a declared table
// through GORM on another instance must invalidate the query's entry at
// once. The same query cached without Tables(...) keeps serving the rows
// from before the write (the documented limitation), which shows the test
// would catch a declaration that did nothing.
func TestDeclaredTables(t *testing.T) {
	admin := openDB(t)
	s := randHex(5)
	base, view, fn := "gft_decl_base_"+s, "gft_decl_view_"+s, "gft_decl_func_"+s
	adminExec(t, admin, "CREATE TABLE "+quotedIdent(base)+" (id bigint PRIMARY KEY, name text NOT NULL)")
	dropAtEnd(t, admin,
		"DROP VIEW IF EXISTS "+quotedIdent(view),
		"DROP FUNCTION IF EXISTS "+quotedIdent(fn)+"()",
		"DROP TABLE IF EXISTS "+quotedIdent(base))
	adminExec(t, admin, "INSERT INTO "+quotedIdent(base)+" VALUES (1, 'one')")
	adminExec(t, admin, "CREATE VIEW "+quotedIdent(view)+" AS SELECT id, name FROM "+quotedIdent(base))
	adminExec(t, admin, "CREATE FUNCTION "+quotedIdent(fn)+"() RETURNS TABLE (id bigint, name text) LANGUAGE sql STABLE AS $$ SELECT b.id, b.name FROM "+quotedIdent(base)+" b $$")
	ins := newInstances(t, 2, nil)
	r, w := ins[0], ins[1]
	truth := func() string {
		return queryRows(t, admin, "SELECT id, name FROM "+quotedIdent(base)+" ORDER BY id")
	}

	next := int64(2)
	for _, c := range []struct {
		name     string
		query    string
		declared string
	}{
		{"view", "SELECT * FROM " + quotedIdent(view) + " ORDER BY id", base},
		{"function", "SELECT * FROM " + quotedIdent(fn) + "() ORDER BY id", base},
		// Other texts than above, so the entries without Tables are new too.
		{"view, schema-qualified declaration", "SELECT * FROM " + quotedIdent(view) + " v ORDER BY v.id", "public." + base},
		{"function, quoted declaration", "SELECT * FROM " + quotedIdent(fn) + "() f ORDER BY f.id", quotedIdent(base)},
	} {
		t.Run(c.name, func(t *testing.T) {
			read := func(in *instance, opts ...Option) string {
				t.Helper()
				var rows []idName
				if err := in.db.Scopes(Cache(time.Minute, opts...)).Raw(c.query).Scan(&rows).Error; err != nil {
					t.Fatalf("%s: %v", c.query, err)
				}
				return renderRows(rows)
			}
			declared := Tables(c.declared)
			before := truth()
			for _, opts := range [][]Option{{declared}, nil} {
				if got := read(r, opts...); got != before {
					t.Fatalf("prime (Tables %v): got %s, want %s", opts != nil, got, before)
				}
				hits := r.p.Stats().Hits
				if got := read(r, opts...); got != before {
					t.Fatalf("second read (Tables %v): got %s, want %s", opts != nil, got, before)
				}
				if r.p.Stats().Hits == hits {
					t.Fatalf("the second read (Tables %v) was not served from the cache: the test would prove nothing", opts != nil)
				}
			}

			row := idName{ID: next, Name: fmt.Sprintf("row-%d", next)}
			next++
			if err := w.db.Table(base).Create(&row).Error; err != nil {
				t.Fatal(err)
			}
			after := truth()
			if got := read(r, declared); got != after {
				t.Errorf("with Tables(%q): after another instance's write got %s, want %s", c.declared, got, after)
			}
			if got := read(w, declared); got != after {
				t.Errorf("with Tables(%q), on the writer: got %s, want %s", c.declared, got, after)
			}
			if got := read(r); got != before {
				t.Errorf("without Tables: got %s, want the rows from before the write %s; "+
					"the plugin now sees through this %s, so this control no longer shows the test can fail", got, before, c.name)
			}
		})
	}
}
