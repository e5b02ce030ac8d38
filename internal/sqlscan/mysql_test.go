package sqlscan

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// mysqlCases are statements of MySQL and MariaDB and what Analyze must
// report.
var mysqlCases = []struct {
	sql  string
	want Result
}{
	// Names: backticks, folded to lower case, the database dropped.
	{"SELECT * FROM `Users`", Result{Reads: l("users")}},
	{"SELECT * FROM shop.`Order Items` oi JOIN users u ON u.id = oi.uid", Result{Reads: l("order items", "users")}},
	{"SELECT * FROM `a``b`", Result{Reads: l("a`b")}},
	{"SELECT * FROM 1abc, $t", Result{Reads: l("$t", "1abc")}},
	{"SELECT * FROM user, only, copy, merge, quick, value", Result{Reads: l("copy", "merge", "only", "quick", "user", "value")}},
	// Strings in '' and "", with backslash escapes; comments.
	{`SELECT * FROM t WHERE a = 'it\'s FROM x' AND b = "FROM \" y"`, Result{Reads: l("t")}},
	{"SELECT * FROM t # FROM x\n, u", Result{Reads: l("t", "u")}},
	{"SELECT * FROM t -- FROM x\n, u", Result{Reads: l("t", "u")}},
	{"SELECT 1--2 FROM t", Result{Reads: l("t")}}, // 1 - (-2): no comment
	{"SELECT * FROM t /* FROM x */, u", Result{Reads: l("t", "u")}},
	{"SELECT * FROM t /*!40000 , u */", Result{Reads: l("t", "u")}}, // runs
	{"SELECT * FROM t /*M!100000 , u */", Result{Reads: l("t", "u")}},
	{"SELECT /*+ NO_INDEX(t) */ * FROM t", Result{Reads: l("t")}},
	{"SELECT * FROM t WHERE id = ?", Result{Reads: l("t")}},
	{"SELECT * FROM t FORCE INDEX (i) WHERE x = 1", Result{Reads: l("t")}},
	{"SELECT * FROM t PARTITION (p0)", Result{Reads: l("t")}},
	{"WITH c AS (SELECT * FROM a) SELECT * FROM c, b", Result{Reads: l("a", "b")}},
	{"TABLE t", Result{Reads: l("t")}},
	// Writes.
	// CALL and EXECUTE run code the walk cannot follow: every table.
	{"CALL p(1)", Result{Writes: l(AllTables), Schema: true}},
	{"EXECUTE stmt USING @a", Result{Writes: l(AllTables), Catalog: true, Schema: true}}, // @a: a variable
	// SET STATEMENT ... FOR runs the statement after FOR.
	{"SET STATEMENT max_statement_time = 100 FOR UPDATE t SET a = 1", Result{Writes: l("t")}},
	{"SET STATEMENT a = 1, b = 2 FOR DELETE FROM t", Result{Reads: l("t"), Writes: l("t")}},
	{"SET STATEMENT a = 1 FOR SELECT * FROM t FOR UPDATE", Result{Reads: l("t")}},
	{"INSERT INTO users (name) VALUES (?)", Result{Writes: l("users")}},
	{"INSERT IGNORE INTO users VALUES (1)", Result{Writes: l("users")}},
	{"INSERT LOW_PRIORITY IGNORE users VALUES (1)", Result{Writes: l("users")}},
	{"INSERT users VALUE (1)", Result{Writes: l("users")}},
	{"INSERT INTO t (id) VALUES (1) ON DUPLICATE KEY UPDATE n = n + 1", Result{Writes: l("t")}},
	{"INSERT INTO t SELECT * FROM u", Result{Reads: l("u"), Writes: l("t")}},
	{"REPLACE INTO users VALUES (1)", Result{Writes: l("users")}},
	{"REPLACE DELAYED users SET id = 1", Result{Writes: l("users")}},
	{"UPDATE LOW_PRIORITY IGNORE users SET n = 1", Result{Writes: l("users")}},
	{"UPDATE a JOIN b ON a.id = b.id SET b.n = a.n WHERE a.x = (SELECT max(x) FROM c)", Result{Reads: l("b", "c"), Writes: l("a", "b")}},
	{"UPDATE a, b SET a.n = b.n", Result{Reads: l("b"), Writes: l("a", "b")}},
	{"DELETE FROM users WHERE id IN (SELECT uid FROM bans)", Result{Reads: l("bans", "users"), Writes: l("users")}},
	{"DELETE LOW_PRIORITY QUICK IGNORE FROM t WHERE id = 1", Result{Reads: l("t"), Writes: l("t")}},
	{"DELETE a FROM a JOIN b ON a.id = b.id", Result{Reads: l("a", "b"), Writes: l("a", "b")}},
	{"DELETE a, b FROM a INNER JOIN b WHERE a.id = b.id", Result{Reads: l("a", "b"), Writes: l("a", "b")}},
	{"DELETE FROM a, b USING a JOIN b JOIN c WHERE a.id = b.id", Result{Reads: l("a", "b", "c"), Writes: l("a", "b", "c")}},
	{"LOAD DATA LOCAL INFILE 'x.csv' REPLACE INTO TABLE t FIELDS TERMINATED BY ','", Result{Writes: l("t")}},
	{"TRUNCATE TABLE t", Result{Writes: l("t")}},
	{"TRUNCATE t", Result{Writes: l("t")}},
	// DDL.
	{"CREATE TABLE t (id INT PRIMARY KEY)", Result{Writes: l("t"), DDL: true}},
	{"CREATE TABLE t LIKE u", Result{Writes: l("t"), DDL: true}}, // u's definition, not its rows
	{"RENAME TABLE a TO b, c TO d", Result{Writes: l("a", "b", "c", "d"), DDL: true}},
	{"ALTER TABLE t RENAME AS u", Result{Writes: l("t", "u"), DDL: true}},
	{"ALTER TABLE t RENAME u", Result{Writes: l("t", "u"), DDL: true}},
	{"ALTER TABLE t RENAME COLUMN a TO b", Result{Writes: l("t"), DDL: true}},
	{"ALTER TABLE t EXCHANGE PARTITION p WITH TABLE u", Result{Writes: l("t", "u"), DDL: true}},
	{"DROP TABLE IF EXISTS a, b", Result{Writes: l("a", "b"), DDL: true}},
	// The catalog and the session: never cached.
	{"SELECT * FROM information_schema.tables WHERE table_schema = DATABASE()", Result{Reads: l("tables"), Catalog: true}},
	{"SELECT * FROM mysql.user", Result{Reads: l("user"), Catalog: true}},
	{"SELECT LAST_INSERT_ID()", Result{Catalog: true}},
	{"SELECT * FROM t WHERE id = @id", Result{Reads: l("t"), Catalog: true}},
	{"SELECT @@session.sql_mode", Result{Catalog: true}},
	{"SHOW TABLES", Result{Catalog: true}},
	{"DESCRIBE t", Result{Catalog: true}},
	{"SELECT user FROM accounts", Result{Reads: l("accounts")}}, // a column
}

func TestMySQL(t *testing.T) {
	for _, c := range mysqlCases {
		if got := Analyze(MySQL, c.sql); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Analyze(MySQL, %q)\n got %+v\nwant %+v", c.sql, got, c.want)
		}
	}
}

func TestMySQLNames(t *testing.T) {
	for _, c := range []struct {
		name, want string
		whole      bool
	}{
		{"Users", "users", true},
		{"`Users`", "users", true},
		{"shop.`Order Items`", "order items", true},
		{"`ÄB`", "äb", true}, // lower_case_table_names = 1 folds non-ASCII letters too
		{"t; x", "t", false},
	} {
		if got := NormTable(MySQL, c.name); got != c.want {
			t.Errorf("NormTable(MySQL, %q) = %q, want %q", c.name, got, c.want)
		}
		if got, ok := TableName(MySQL, c.name); ok != c.whole || ok && got != c.want {
			t.Errorf("TableName(MySQL, %q) = %q, %v; want %q, %v", c.name, got, ok, c.want, c.whole)
		}
	}
}

func TestMySQLClassify(t *testing.T) {
	for sql, want := range map[string]Kind{
		"SELECT 1":                          Select,
		"REPLACE INTO t VALUES (1)":         Write,
		"INSERT IGNORE t VALUES (1)":        Write,
		"SHOW TABLES":                       Query,
		"LOAD DATA INFILE 'x' INTO TABLE t": Other,
		"USE shop":                          Other,
	} {
		if got := Classify(MySQL, sql); got != want {
			t.Errorf("Classify(MySQL, %q) = %v, want %v", sql, got, want)
		}
	}
}

// FuzzMySQLTables checks FuzzTables' properties for MySQL.
func FuzzMySQLTables(f *testing.F) {
	for _, c := range mysqlCases {
		f.Add(c.sql, "FROM x")
	}
	f.Add("SELECT * FROM t /*! , u", "*/ FROM x")
	f.Add("SELECT 'a\\", "' FROM x")
	f.Fuzz(func(t *testing.T, sql, tail string) {
		read, written := Tables(MySQL, sql)
		checkSet(t, "read", sql, read)
		checkSet(t, "written", sql, written)
		if r2, w2 := Tables(MySQL, sql); !slices.Equal(r2, read) || !slices.Equal(w2, written) {
			t.Fatalf("second call differs for %q", sql)
		}
		if !strings.Contains(sql, "*/") {
			commented := "/* " + sql + " */"
			if r, w := Tables(MySQL, commented); r != nil || w != nil {
				t.Fatalf("Tables(MySQL, %q) = %q, %q; want nothing", commented, r, w)
			}
		}
		if r, _ := Tables(MySQL, sql+"\n;SELECT * FROM zz_sentinel"); slices.Contains(r, "zz_sentinel") && !slices.Contains(read, "zz_sentinel") {
			tail = strings.NewReplacer("\n", "", "\r", "").Replace(tail)
			with := sql + "\n# " + tail
			if r, w := Tables(MySQL, with); !slices.Equal(r, read) || !slices.Equal(w, written) {
				t.Fatalf("Tables(MySQL, %q) = %q, %q; Tables(MySQL, %q) = %q, %q", with, r, w, sql, read, written)
			}
		}
		if r := Analyze(MySQL, sql); r.Schema && !slices.Contains(r.Writes, AllTables) {
			t.Fatalf("Analyze(MySQL, %q) = %+v: Schema without AllTables", sql, r)
		}
		_ = NormTable(MySQL, sql)
	})
}
