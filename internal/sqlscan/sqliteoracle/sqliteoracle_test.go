// Package sqliteoracle checks the SQLite dialect of internal/sqlscan
// against SQLite itself (modernc.org/sqlite, a pure-Go build of SQLite,
// in a module of its own so that the library does not depend on it):
//
//   - the tables a statement opens, as its compiled program (EXPLAIN)
//     shows them: every table it opens for reading must be among the
//     analyser's reads or writes, and every table it opens for writing
//     among its writes;
//   - the statement's real effect on a scratch database: every table
//     whose rows or definition it changed must be among the analyser's
//     writes.
//
// Either may be answered by Schema (every table written) or Catalog
// (never cached). The statements are the string literals of the
// analyser's own tests and GORM's shapes below; those SQLite refuses on
// the scratch schema are skipped, and the test requires that most run.
package sqliteoracle

import (
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gormflight/gormflight/internal/sqlscan"
	sqlcorpus "github.com/gormflight/gormflight/internal/sqlscan/corpus"
	_ "modernc.org/sqlite"
)

// schema is the scratch database every statement runs on.
const schema = `
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, n INT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, uid INT);
CREATE TABLE bans (uid INT);
CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INT, x INT, a INT, b INT, c INT, d INT);
CREATE TABLE u (id INTEGER PRIMARY KEY, n INT);
CREATE TABLE a (id INT); CREATE TABLE b (id INT);
CREATE TABLE "Order Items" (id INT);
CREATE TABLE copy (id INT); CREATE TABLE merge (id INT);
CREATE TABLE only (id INT, x INT); CREATE TABLE user (id INT); CREATE TABLE lateral (id INT);
CREATE INDEX t_idx ON t (n);
INSERT INTO users VALUES (1, 'a', 1), (2, 'b', 2);
INSERT INTO orders VALUES (1, 1); INSERT INTO bans VALUES (2);
INSERT INTO t (n, x) VALUES (1, 1); INSERT INTO u VALUES (1, 1);
INSERT INTO a VALUES (1); INSERT INTO b VALUES (1); INSERT INTO only VALUES (1, 1);
`

// extraCorpus is what GORM's SQLite dialector generates, besides the
// analyser's own cases.
var extraCorpus = []string{
	"SELECT * FROM `users` WHERE `users`.`id` = ? ORDER BY `users`.`id` LIMIT 1",
	"SELECT count(*) FROM `users` WHERE name = ?",
	"SELECT `users`.`id`,`users`.`name`,`Order`.`id` AS `Order__id` FROM `users` LEFT JOIN `orders` `Order` ON `users`.`id` = `Order`.`uid`",
	"INSERT INTO `users` (`name`,`n`) VALUES (?,?) RETURNING `id`",
	"INSERT INTO `users` (`id`,`name`) VALUES (?,?) ON CONFLICT (`id`) DO UPDATE SET `name`=`excluded`.`name`",
	"UPDATE `users` SET `name`=? WHERE `id` = ?",
	"DELETE FROM `users` WHERE `users`.`id` = ?",
	"INSERT INTO `t` (`n`) VALUES (?)",
	"SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?",
	"CREATE TABLE `pets` (`id` integer PRIMARY KEY AUTOINCREMENT,`name` text)",
	"ALTER TABLE `users` ADD `age` integer",
	"ALTER TABLE `users` RENAME COLUMN `n` TO `m`",
	"DROP TABLE IF EXISTS `bans`",
	"CREATE INDEX IF NOT EXISTS `idx_users_name` ON `users`(`name`)",
	"UPDATE users SET n = n + 1 WHERE id IN (SELECT uid FROM orders)",
	"DELETE FROM t WHERE n IN (SELECT n FROM u)",
	"INSERT INTO u SELECT id, n FROM users WHERE id NOT IN (SELECT id FROM u)",
	"WITH x AS (SELECT id FROM a) DELETE FROM b WHERE id IN (SELECT id FROM x)",
	"REPLACE INTO u (id, n) SELECT id, n FROM users",
}

// corpus returns extraCorpus and every string literal of the analyser's
// tests.
func corpus(t *testing.T) []string {
	strs, err := sqlcorpus.TestStrings("..")
	if err != nil || len(strs) == 0 {
		t.Fatalf("analyser tests not found: %v", err)
	}
	return append(slices.Clone(extraCorpus), strs...)
}

func scratch(t *testing.T) *sql.DB {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // one connection: one in-memory database
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Exec(schema); err != nil {
		t.Fatal(err)
	}
	return db
}

// opened returns the tables sql's program opens for reading and for
// writing, by name, lower case, from EXPLAIN: OpenRead and OpenWrite name
// the root page of a table or of one of its indexes.
func opened(db *sql.DB, stmt string, args []any) (read, written []string, err error) {
	roots := map[int64]string{}
	rows, err := db.Query(`SELECT rootpage, lower(tbl_name) FROM sqlite_schema WHERE rootpage > 0`)
	if err != nil {
		return nil, nil, err
	}
	for rows.Next() {
		var page int64
		var name string
		if err := rows.Scan(&page, &name); err != nil {
			return nil, nil, err
		}
		roots[page] = name
	}
	if err := rows.Close(); err != nil {
		return nil, nil, err
	}
	rows, err = db.Query("EXPLAIN "+stmt, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var addr, p1, p2, p3, p5 int64
		var opcode string
		var p4, comment sql.NullString
		if err := rows.Scan(&addr, &opcode, &p1, &p2, &p3, &p4, &p5, &comment); err != nil {
			return nil, nil, err
		}
		name, ok := roots[p2]
		if !ok || p3 != 0 { // p3: the database (0: main)
			continue
		}
		switch opcode {
		case "OpenRead":
			read = append(read, name)
		case "OpenWrite":
			written = append(written, name)
		}
	}
	return read, written, rows.Err()
}

// contents returns every table's definition and rows, by lower-case name.
func contents(t *testing.T, db *sql.DB) map[string]string {
	out := map[string]string{}
	rows, err := db.Query(`SELECT name, sql FROM sqlite_schema WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	defs := map[string]string{}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			t.Fatal(err)
		}
		defs[name] = def
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	for name, def := range defs {
		var b strings.Builder
		b.WriteString(def)
		rows, err := db.Query(`SELECT * FROM "` + strings.ReplaceAll(name, `"`, `""`) + `" ORDER BY rowid`)
		if err != nil { // a WITHOUT ROWID table, a virtual one
			rows, err = db.Query(`SELECT * FROM "` + strings.ReplaceAll(name, `"`, `""`) + `"`)
		}
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "\n%v", vals)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		out[strings.ToLower(name)] = b.String()
	}
	return out
}

// argsFor returns arguments for the statement's parameters: 1 for each.
func argsFor(stmt string) []any {
	n := 0
	for _, tok := range sqlscan.Lex(sqlscan.SQLite, stmt) {
		if s := stmt[tok.Pos:tok.End]; tok.Kind == sqlscan.TokOther && (s[0] == '?' || s[0] == ':' || s[0] == '@' || s[0] == '$') && len(s) > 0 {
			if s[0] == '?' {
				n++
			} else {
				return nil // named: left unbound (NULL)
			}
		}
	}
	args := make([]any, n)
	for i := range args {
		args[i] = 1
	}
	return args
}

func TestSQLiteOracle(t *testing.T) {
	ran, compiled := 0, 0
	for _, stmt := range corpus(t) {
		got := sqlscan.Analyze(sqlscan.SQLite, stmt)
		if got.Catalog || got.Schema {
			continue // never cached, or every table written
		}
		covered := func(name string, lists ...[]string) bool {
			if strings.HasPrefix(name, "sqlite_") {
				return true // the catalog; sqlite_sequence moves with inserts
			}
			for _, l := range lists {
				if slices.Contains(l, name) {
					return true
				}
			}
			return false
		}
		db := scratch(t)
		args := argsFor(stmt)
		read, written, err := opened(db, stmt, args)
		if err != nil {
			continue // not SQLite, or not on this schema
		}
		compiled++
		for _, name := range read {
			if !covered(name, got.Reads, got.Writes) {
				t.Errorf("%q opens %q for reading; the analyser reports reads %q, writes %q", stmt, name, got.Reads, got.Writes)
			}
		}
		for _, name := range written {
			if !covered(name, got.Writes) {
				t.Errorf("%q opens %q for writing; the analyser reports writes %q", stmt, name, got.Writes)
			}
		}
		before := contents(t, db)
		if _, err := db.Exec(stmt, args...); err != nil {
			continue
		}
		ran++
		after := contents(t, db)
		for name := range mapsKeys(before, after) {
			if before[name] != after[name] && !covered(name, got.Writes) {
				t.Errorf("%q changed %q; the analyser reports writes %q", stmt, name, got.Writes)
			}
		}
	}
	t.Logf("%d statements compiled on the scratch schema, %d ran", compiled, ran)
	if compiled < 50 || ran < 30 {
		t.Errorf("only %d statements compiled and %d ran: the corpus or the schema drifted", compiled, ran)
	}
}

func mapsKeys(ms ...map[string]string) map[string]bool {
	out := map[string]bool{}
	for _, m := range ms {
		for k := range m {
			out[k] = true
		}
	}
	return out
}
