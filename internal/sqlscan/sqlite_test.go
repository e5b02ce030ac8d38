package sqlscan

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sqliteCases are statements of SQLite and what Analyze must report.
var sqliteCases = []struct {
	sql  string
	want Result
}{
	// Names: quoted three ways or by a string, folded to lower case
	// whether quoted or not, schema dropped.
	{`SELECT * FROM users`, Result{Reads: l("users")}},
	{`SELECT * FROM "Users"`, Result{Reads: l("users")}},
	{`SELECT * FROM [Order Items]`, Result{Reads: l("order items")}},
	{"SELECT * FROM `Users` u JOIN main.orders o ON o.uid = u.id", Result{Reads: l("orders", "users")}},
	{`SELECT * FROM 'users'`, Result{Reads: l("users")}},
	{`SELECT * FROM "a""b", ` + "`c``d`", Result{Reads: l(`a"b`, "c`d")}},
	{`SELECT * FROM temp.t, "main"."U"`, Result{Reads: l("t", "u")}},
	// Words PostgreSQL reserves or knows as keywords name tables in SQLite.
	{`SELECT * FROM user, only, copy, lateral`, Result{Reads: l("copy", "lateral", "only", "user")}},
	{`SELECT * FROM t INDEXED BY t_idx WHERE x = ?`, Result{Reads: l("t")}},
	{`SELECT * FROM t NOT INDEXED`, Result{Reads: l("t")}},
	// Parameters, comments (which do not nest) and strings.
	{`SELECT * FROM t WHERE a = :a AND b = @b AND c = $c AND d = ?2`, Result{Reads: l("t")}},
	{`SELECT * FROM t /* FROM x */ -- FROM y`, Result{Reads: l("t")}},
	{`SELECT * FROM t /* a /* b */, u`, Result{Reads: l("t", "u")}},
	{`SELECT '/*' FROM t`, Result{Reads: l("t")}},
	{`SELECT $a$ FROM t`, Result{Reads: l("t")}}, // a parameter, not a dollar quote
	{`SELECT X'00ff' FROM t`, Result{Reads: l("t")}},
	{`WITH c AS (SELECT * FROM a) SELECT * FROM c, b`, Result{Reads: l("a", "b")}},
	{`SELECT * FROM json_each(?)`, Result{}},
	{`SELECT changes FROM t`, Result{Reads: l("t")}}, // a column, not the function
	// x IN table: a read of the table.
	{`SELECT * FROM t WHERE id IN sel`, Result{Reads: l("sel", "t")}},
	{`SELECT * FROM t WHERE id NOT IN main."Sel"`, Result{Reads: l("sel", "t")}},
	{`SELECT * FROM t WHERE id IN (SELECT id FROM u)`, Result{Reads: l("t", "u")}},
	{`SELECT * FROM t WHERE id IN (1, 2) OR id IN json_each(?)`, Result{Reads: l("t")}},
	{`DELETE FROM t WHERE id IN sel`, Result{Reads: l("sel"), Writes: l("t")}},
	// Writes.
	{`INSERT INTO users (name) VALUES (?)`, Result{Writes: l("users")}},
	{`INSERT OR REPLACE INTO users VALUES (1)`, Result{Writes: l("users")}},
	{`INSERT OR IGNORE INTO "Users" VALUES (1)`, Result{Writes: l("users")}},
	{`insert or rollback into t default values`, Result{Writes: l("t")}},
	{`REPLACE INTO users VALUES (1)`, Result{Writes: l("users")}},
	{`INSERT INTO 'users' VALUES (1)`, Result{Writes: l("users")}},
	{`UPDATE OR IGNORE users SET name = ? WHERE id = ?`, Result{Writes: l("users")}},
	{`UPDATE [Users] SET n = (SELECT count(*) FROM orders)`, Result{Reads: l("orders"), Writes: l("users")}},
	{`DELETE FROM users WHERE id IN (SELECT uid FROM bans)`, Result{Reads: l("bans"), Writes: l("users")}},
	{`INSERT INTO t (id) VALUES (1) ON CONFLICT(id) DO UPDATE SET n = n + 1`, Result{Writes: l("t")}},
	{`INSERT INTO copy SELECT * FROM merge`, Result{Reads: l("merge"), Writes: l("copy")}},
	{`INSERT INTO t VALUES (1) RETURNING id`, Result{Writes: l("t")}},
	{`UPDATE only SET x = 1`, Result{Writes: l("only")}},
	// DDL.
	{`CREATE TABLE t (id INTEGER PRIMARY KEY)`, Result{Writes: l("t"), DDL: true}},
	{`CREATE TEMP TABLE IF NOT EXISTS t AS SELECT * FROM u`, Result{Reads: l("u"), Writes: l("t"), DDL: true}},
	// A virtual table's module may create tables of its own (fts5:
	// docs_content, docs_data, ...): every table.
	{`CREATE VIRTUAL TABLE docs USING fts5(body)`, Result{Reads: l("docs"), Writes: l(AllTables), DDL: true, Schema: true}},
	{`ALTER TABLE t RENAME TO u`, Result{Writes: l("t", "u"), DDL: true}},
	{`DROP TABLE IF EXISTS main.t`, Result{Writes: l("t"), DDL: true}},
	{`CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n = n + 1; END`, Result{Writes: l("t", "u"), DDL: true}},
	{`ATTACH DATABASE 'x.db' AS x`, Result{Writes: l(AllTables), DDL: true, Schema: true}},
	{`SELECT * FROM call, execute, do`, Result{Reads: l("call", "do", "execute")}}, // names in SQLite
	{`DETACH x`, Result{Writes: l(AllTables), DDL: true, Schema: true}},
	// The catalog and the connection's state: never cached.
	{`PRAGMA table_info(users)`, Result{Catalog: true}}, // reads: the schema stays known
	{`PRAGMA foreign_keys`, Result{Catalog: true}},
	{`PRAGMA foreign_keys = ON`, Result{Catalog: true, DDL: true}},
	{`SELECT name FROM sqlite_master WHERE type = 'table'`, Result{Reads: l("sqlite_master"), Catalog: true}},
	{`SELECT * FROM "SQLITE_SCHEMA"`, Result{Reads: l("sqlite_schema"), Catalog: true}},
	{`SELECT seq FROM sqlite_sequence WHERE name = 't'`, Result{Reads: l("sqlite_sequence"), Catalog: true}},
	{`SELECT * FROM pragma_table_info('t')`, Result{Catalog: true}},
	{`SELECT last_insert_rowid()`, Result{Catalog: true}},
	{`SELECT sqlite_version()`, Result{Catalog: true}},
}

func TestSQLite(t *testing.T) {
	for _, c := range sqliteCases {
		if got := Analyze(SQLite, c.sql); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Analyze(SQLite, %q)\n got %+v\nwant %+v", c.sql, got, c.want)
		}
	}
}

func TestSQLiteNames(t *testing.T) {
	for _, c := range []struct {
		name, want string
		whole      bool
	}{
		{"Users", "users", true},
		{`"Users"`, "users", true},
		{"[Order Items]", "order items", true},
		{"`x`", "x", true},
		{"main.Users", "users", true},
		{`"a""b"`, `a"b`, true},
		{"t; x", "t", false},
		{"my-view", "my", false},
	} {
		if got := NormTable(SQLite, c.name); got != c.want {
			t.Errorf("NormTable(SQLite, %q) = %q, want %q", c.name, got, c.want)
		}
		if got, ok := TableName(SQLite, c.name); ok != c.whole || ok && got != c.want {
			t.Errorf("TableName(SQLite, %q) = %q, %v; want %q, %v", c.name, got, ok, c.want, c.whole)
		}
	}
}

func TestSQLiteClassify(t *testing.T) {
	for sql, want := range map[string]Kind{
		"SELECT 1":                             Select,
		"SELECT 1; DELETE FROM t":              Query,
		"WITH a AS (SELECT 1) SELECT * FROM a": Query,
		"REPLACE INTO t VALUES (1)":            Write,
		"INSERT OR REPLACE INTO t VALUES (1)":  Write,
		"PRAGMA foreign_keys":                  Other,
		"SHOW x":                               Other,
		"ATTACH 'x.db' AS x":                   Other,
	} {
		if got := Classify(SQLite, sql); got != want {
			t.Errorf("Classify(SQLite, %q) = %v, want %v", sql, got, want)
		}
	}
}

func TestSQLiteLex(t *testing.T) {
	const sql = "SELECT [a b], `c`, \"d\", 'e', ?1, :f FROM t -- x"
	var kinds []TokenKind
	for _, tok := range Lex(SQLite, sql) {
		kinds = append(kinds, tok.Kind)
	}
	want := []TokenKind{TokWord, TokQuoted, TokOther, TokQuoted, TokOther, TokQuoted, TokOther,
		TokOther, TokOther, TokOther, TokOther, TokOther, TokWord, TokWord}
	if !slices.Equal(kinds, want) {
		t.Errorf("Lex(SQLite, %q) kinds = %v, want %v", sql, kinds, want)
	}
}

// FuzzSQLiteTables checks FuzzTables' properties for SQLite: no panic,
// sorted sets, determinism, nothing in a comment, a trailing line comment
// and the case of every word (quoted ones too: SQLite folds them) change
// nothing, and Schema comes with AllTables.
func FuzzSQLiteTables(f *testing.F) {
	for _, c := range sqliteCases {
		f.Add(c.sql, "FROM x")
	}
	f.Add("SELECT * FROM [t", "] FROM x")
	f.Add("SELECT * FROM `t", "` FROM x")
	f.Add("SELECT * FROM t /* x", "*/ FROM y")
	f.Fuzz(func(t *testing.T, sql, tail string) {
		read, written := Tables(SQLite, sql)
		checkSet(t, "read", sql, read)
		checkSet(t, "written", sql, written)
		if r2, w2 := Tables(SQLite, sql); !slices.Equal(r2, read) || !slices.Equal(w2, written) {
			t.Fatalf("second call differs for %q", sql)
		}
		commented := "/* " + stripCommentDelimiters(sql) + " */"
		if r, w := Tables(SQLite, commented); r != nil || w != nil {
			t.Fatalf("Tables(SQLite, %q) = %q, %q; want nothing", commented, r, w)
		}
		if r, _ := Tables(SQLite, sql+"\n;SELECT * FROM zz_sentinel"); slices.Contains(r, "zz_sentinel") && !slices.Contains(read, "zz_sentinel") {
			tail = strings.NewReplacer("\n", "", "\r", "").Replace(tail)
			with := sql + "-- " + tail
			if r, w := Tables(SQLite, with); !slices.Equal(r, read) || !slices.Equal(w, written) {
				t.Fatalf("Tables(SQLite, %q) = %q, %q; Tables(SQLite, %q) = %q, %q", with, r, w, sql, read, written)
			}
		}
		r := Analyze(SQLite, sql)
		if flipped := flipASCIICase(sql); !reflect.DeepEqual(Analyze(SQLite, flipped), r) && !strings.ContainsAny(sql, "'xX") {
			// Strings keep their case (and X'' blobs their prefix): only
			// statements without them must compare equal.
			t.Fatalf("Analyze(SQLite, %q) = %+v; Analyze(SQLite, %q) = %+v", sql, r, flipped, Analyze(SQLite, flipped))
		}
		if r.Schema && !slices.Contains(r.Writes, AllTables) {
			t.Fatalf("Analyze(SQLite, %q) = %+v: Schema without AllTables", sql, r)
		}
		_ = NormTable(SQLite, sql)
	})
}

// flipASCIICase swaps the ASCII case of every letter of s.
func flipASCIICase(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c >= 'A' && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}
