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
	s := tsSuffix()
	base, view, fn := "gft_decl_base_"+s, "gft_decl_view_"+s, "gft_decl_func_"+s
	tsExec(t, admin, "CREATE TABLE "+tsIdent(base)+" (id bigint PRIMARY KEY, name text NOT NULL)")
	tsDropLater(t, admin,
		"DROP VIEW IF EXISTS "+tsIdent(view),
		"DROP FUNCTION IF EXISTS "+tsIdent(fn)+"()",
		"DROP TABLE IF EXISTS "+tsIdent(base))
	tsExec(t, admin, "INSERT INTO "+tsIdent(base)+" VALUES (1, 'one')")
	tsExec(t, admin, "CREATE VIEW "+tsIdent(view)+" AS SELECT id, name FROM "+tsIdent(base))
	tsExec(t, admin, "CREATE FUNCTION "+tsIdent(fn)+"() RETURNS TABLE (id bigint, name text) LANGUAGE sql STABLE AS $$ SELECT b.id, b.name FROM "+tsIdent(base)+" b $$")
	ins := newInstances(t, 2, nil)
	r, w := ins[0], ins[1]
	truth := func() string {
		return tsQuery(t, admin, "SELECT id, name FROM "+tsIdent(base)+" ORDER BY id")
	}

	next := int64(2)
	for _, c := range []struct {
		name     string
		query    string
		declared string
	}{
		{"view", "SELECT * FROM " + tsIdent(view) + " ORDER BY id", base},
		{"function", "SELECT * FROM " + tsIdent(fn) + "() ORDER BY id", base},
		// Other texts than above, so the entries without Tables are new too.
		{"view, schema-qualified declaration", "SELECT * FROM " + tsIdent(view) + " v ORDER BY v.id", "public." + base},
		{"function, quoted declaration", "SELECT * FROM " + tsIdent(fn) + "() f ORDER BY f.id", tsIdent(base)},
	} {
		t.Run(c.name, func(t *testing.T) {
			read := func(in *instance, opts ...Option) string {
				t.Helper()
				var rows []tsRow
				if err := in.db.Scopes(Cache(time.Minute, opts...)).Raw(c.query).Scan(&rows).Error; err != nil {
					t.Fatalf("%s: %v", c.query, err)
				}
				return tsRender(rows)
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

			row := tsRow{ID: next, Name: fmt.Sprintf("row-%d", next)}
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
