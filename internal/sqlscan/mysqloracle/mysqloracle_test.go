// Package mysqloracle checks the MySQL dialect of internal/sqlscan
// against vitess's MySQL parser (vitess_test.go) and against MariaDB
// (127.0.0.1:3306, or GORMFLIGHT_MYSQL_DSN), in a module
// of its own so that the library does not depend on a MySQL driver: every
// statement of the analyser's tests, and GORM's MySQL shapes below, runs
// on a scratch database of its own, and every table whose rows or
// definition it really changed must be among the analyser's writes (or
// the analyser must say Schema, every table, or Catalog, never cached).
// Data changes run in a transaction that is rolled back; a statement that
// commits by itself (DDL) is followed by a fresh schema. Statements
// MariaDB refuses on the scratch schema are skipped, and the test
// requires that most run.
package mysqloracle

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/gormflight/gormflight/internal/sqlscan"
	sqlcorpus "github.com/gormflight/gormflight/internal/sqlscan/corpus"
)

// schema is the scratch database every statement runs on.
var schema = []string{
	"CREATE TABLE users (id INT PRIMARY KEY, name TEXT, n INT)",
	"CREATE TABLE orders (id INT PRIMARY KEY, uid INT)",
	"CREATE TABLE bans (uid INT)",
	"CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, n INT, x INT, a INT, b INT)",
	"CREATE TABLE u (id INT PRIMARY KEY, n INT)",
	"CREATE TABLE a (id INT, n INT, x INT)", "CREATE TABLE b (id INT, n INT)", "CREATE TABLE c (id INT, x INT)",
	"CREATE TABLE `Order Items` (id INT, uid INT)",
	"CREATE TABLE copy (id INT)", "CREATE TABLE merge (id INT)", "CREATE TABLE only (id INT)",
	"CREATE TABLE user (id INT)", "CREATE TABLE quick (id INT)", "CREATE TABLE value (id INT)",
	"CREATE TABLE accounts (id INT, user TEXT)", "CREATE TABLE `1abc` (id INT)",
	"INSERT INTO users VALUES (1, 'a', 1), (2, 'b', 2)",
	"INSERT INTO orders VALUES (1, 1)", "INSERT INTO bans VALUES (2)",
	"INSERT INTO t (n, x) VALUES (1, 1)", "INSERT INTO u VALUES (1, 1)",
	"INSERT INTO a VALUES (1, 1, 1)", "INSERT INTO b VALUES (1, 2)", "INSERT INTO c VALUES (1, 1)",
}

// extraCorpus is what GORM's MySQL dialector generates, and MySQL's forms
// of writing, besides the analyser's own cases.
var extraCorpus = []string{
	"SELECT * FROM `users` WHERE `users`.`id` = ? ORDER BY `users`.`id` LIMIT 1",
	"INSERT INTO `users` (`id`,`name`,`n`) VALUES (?,?,?) ON DUPLICATE KEY UPDATE `name`=VALUES(`name`)",
	"UPDATE `users` SET `name`=? WHERE `id` = ?",
	"DELETE FROM `users` WHERE `users`.`id` = ?",
	"INSERT INTO `t` (`n`) VALUES (?)",
	"CREATE TABLE `pets` (`id` bigint unsigned AUTO_INCREMENT,`name` longtext,PRIMARY KEY (`id`))",
	"ALTER TABLE `users` ADD `age` bigint",
	"ALTER TABLE `users` RENAME COLUMN `n` TO `m`",
	"DROP TABLE IF EXISTS `bans`",
	"CREATE INDEX `idx_users_name` ON `users`(`name`(10))",
	"UPDATE users u JOIN orders o ON o.uid = u.id SET u.n = u.n + 1, o.uid = 2",
	"UPDATE users, orders SET orders.uid = users.id WHERE users.id = 2",
	"DELETE users, orders FROM users JOIN orders ON orders.uid = users.id",
	"DELETE FROM orders USING users JOIN orders ON orders.uid = users.id",
	"INSERT INTO u SELECT id, n FROM users WHERE id NOT IN (SELECT id FROM u)",
	"REPLACE INTO u (id, n) SELECT id, n FROM users",
	"INSERT IGNORE INTO u VALUES (1, 5), (2, 5)",
	"RENAME TABLE a TO a2, b TO b2",
	"TRUNCATE bans",
}

func dsn(t *testing.T) string {
	if v := os.Getenv("GORMFLIGHT_MYSQL_DSN"); v != "" {
		return v
	}
	return "root@tcp(127.0.0.1:3306)/test"
}

// open returns a connection to a scratch database made for this test,
// dropped when it ends.
func open(t *testing.T) (*sql.DB, *sql.Conn) {
	cfg, err := mysql.ParseDSN(dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MultiStatements = false
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err == nil {
		err = db.Ping()
	}
	if err != nil {
		if os.Getenv("GORMFLIGHT_TEST_REQUIRED") != "" {
			t.Fatalf("MariaDB: %v", err)
		}
		t.Skipf("MariaDB not reachable: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	name := "gft_oracle_" + strings.ToLower(rand.Text()[:10])
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Exec("DROP DATABASE IF EXISTS " + name) })
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := conn.ExecContext(context.Background(), "USE "+name); err != nil {
		t.Fatal(err)
	}
	return db, conn
}

// reset drops every table of the scratch database and creates the schema.
func reset(t *testing.T, conn *sql.Conn) {
	ctx := context.Background()
	for _, name := range tables(t, conn) {
		kind := "TABLE"
		if views[name] {
			kind = "VIEW"
		}
		if _, err := conn.ExecContext(ctx, "DROP "+kind+" `"+strings.ReplaceAll(name, "`", "``")+"`"); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range schema {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// views tells which of the names tables returned are views.
var views = map[string]bool{}

// tables returns the names of the scratch database's tables and views.
func tables(t *testing.T, conn *sql.Conn) []string {
	rows, err := conn.QueryContext(context.Background(), "SHOW FULL TABLES")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var name, kind string
		if err := rows.Scan(&name, &kind); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
		views[name] = kind == "VIEW"
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	return names
}

// contents returns every table's definition and rows, by lower-case name.
func contents(t *testing.T, conn *sql.Conn) map[string]string {
	ctx := context.Background()
	out := map[string]string{}
	for _, name := range tables(t, conn) {
		q := "`" + strings.ReplaceAll(name, "`", "``") + "`"
		var b strings.Builder
		var n, def string
		if err := conn.QueryRowContext(ctx, "SHOW CREATE TABLE "+q).Scan(&n, &def); err != nil {
			t.Fatal(err)
		}
		// The next AUTO_INCREMENT value moves with inserts: not a definition.
		for _, line := range strings.Split(def, " ") {
			if !strings.HasPrefix(line, "AUTO_INCREMENT=") {
				b.WriteString(line + " ")
			}
		}
		rows, err := conn.QueryContext(ctx, "SELECT * FROM "+q)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("%q", vals))
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(lines)
		b.WriteString(strings.Join(lines, "\n"))
		out[strings.ToLower(name)] = b.String()
	}
	return out
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

// params returns an argument, 1, for each ? of stmt.
func params(stmt string) []any {
	var args []any
	for _, tok := range sqlscan.Lex(sqlscan.MySQL, stmt) {
		if tok.Kind == sqlscan.TokOther && stmt[tok.Pos:tok.End] == "?" {
			args = append(args, 1)
		}
	}
	return args
}

func TestMariaDBOracle(t *testing.T) {
	_, conn := open(t)
	ctx := context.Background()
	reset(t, conn)
	ran := 0
	for _, stmt := range corpus(t) {
		got := sqlscan.Analyze(sqlscan.MySQL, stmt)
		if got.Catalog || got.Schema || strings.Contains(strings.ToLower(stmt), "infile") {
			continue
		}
		before := contents(t, conn)
		if _, err := conn.ExecContext(ctx, "START TRANSACTION"); err != nil {
			t.Fatal(err)
		}
		// Query, not Exec: some are SELECTs, whose rows Exec would leave
		// unread on the connection.
		rows, err := conn.QueryContext(ctx, stmt, params(stmt)...)
		if err == nil {
			err = rows.Close()
		}
		if err != nil {
			_, _ = conn.ExecContext(ctx, "ROLLBACK")
			var me *mysql.MySQLError
			if !errorsAs(err, &me) {
				t.Fatalf("%q: %v", stmt, err) // not a refusal by MariaDB
			}
			continue
		}
		ran++
		after := contents(t, conn)
		for _, name := range union(before, after) {
			if before[name] != after[name] && !slices.Contains(got.Writes, name) {
				t.Errorf("%q changed %q; the analyser reports writes %q", stmt, name, got.Writes)
			}
		}
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		if got.DDL || !mapsEqual(contents(t, conn), before) {
			reset(t, conn) // DDL committed itself
		}
	}
	t.Logf("%d statements ran on MariaDB", ran)
	if ran < 60 {
		t.Errorf("only %d statements ran: the corpus or the schema drifted", ran)
	}
}

func errorsAs(err error, target **mysql.MySQLError) bool {
	me, ok := err.(*mysql.MySQLError)
	if ok {
		*target = me
	}
	return ok
}

func union(ms ...map[string]string) []string {
	var out []string
	for _, m := range ms {
		for k := range m {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
