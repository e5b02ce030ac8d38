package mysqloracle

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gormflight/gormflight/internal/sqlscan"
)

// hardCase is a statement MariaDB runs that an adversarial review found
// the analyser missing a table of: each must now be covered, or be
// reported as Schema or Catalog.
// mutate, for a read case, changes the table the statement reads and the
// analyser does not report: the statement's result must change with it.
type hardCase struct {
	setup  []string
	stmt   string
	mutate string // "" for a write case: the statement's own effect is checked
	table  string // the table missed
}

var hardCases = []hardCase{
	// STRAIGHT_JOIN is one word: the table after it is not a from-item.
	{stmt: "SELECT count(*) FROM a STRAIGHT_JOIN b ON a.id = b.id", mutate: "DELETE FROM b", table: "b"},
	{stmt: "UPDATE a STRAIGHT_JOIN b ON a.id = b.id SET b.n = 7", table: "b"},
	// SET STATEMENT ... FOR runs the statement after FOR (not FOR UPDATE).
	{stmt: "SET STATEMENT max_statement_time = 100 FOR UPDATE b SET n = 7", table: "b"},
	// An index hint's FOR JOIN / FOR ORDER BY ends the from-list (FOR, ORDER).
	{stmt: "SELECT count(*) FROM a USE INDEX FOR JOIN (PRIMARY), b", mutate: "DELETE FROM b", table: "b",
		setup: []string{"ALTER TABLE a ADD PRIMARY KEY (id)"}},
	{stmt: "UPDATE a USE INDEX FOR JOIN (PRIMARY), b SET b.n = 7 WHERE a.id = b.id", table: "b",
		setup: []string{"ALTER TABLE a ADD PRIMARY KEY (id)"}},
	// FOR SYSTEM_TIME ends the from-list too.
	{stmt: "SELECT count(*) FROM sv FOR SYSTEM_TIME ALL, b", mutate: "DELETE FROM b", table: "b",
		setup: []string{"CREATE TABLE sv (id INT) WITH SYSTEM VERSIONING", "INSERT INTO sv VALUES (1)"}},
	// A parenthesised table reference after UPDATE.
	{stmt: "UPDATE (a JOIN b ON a.id = b.id) SET a.n = 7, b.n = 7", table: "a"},
	// ODBC's { OJ ... } join.
	{stmt: "SELECT count(*) FROM { OJ b LEFT OUTER JOIN a ON a.id = b.id }", mutate: "DELETE FROM b", table: "b"},
	// .tbl_name: the default database (ODBC).
	{stmt: "SELECT count(*) FROM .b", mutate: "DELETE FROM b", table: "b"},
	{stmt: "INSERT INTO .b VALUES (9, 9)", table: "b"},
	{stmt: "DELETE FROM .b", table: "b"},
	// Identifiers that start with digits but lex as numbers (1_000, 0o17, 0b1a).
	{stmt: "SELECT count(*) FROM 2024_01", mutate: "DELETE FROM `2024_01`", table: "2024_01",
		setup: []string{"CREATE TABLE `2024_01` (id INT)", "INSERT INTO `2024_01` VALUES (1)"}},
	{stmt: "INSERT INTO 2024_01 VALUES (2)", table: "2024_01",
		setup: []string{"CREATE TABLE `2024_01` (id INT)"}},
	{stmt: "DELETE FROM 0o17", table: "0o17",
		setup: []string{"CREATE TABLE `0o17` (id INT)", "INSERT INTO `0o17` VALUES (1)"}},
	// A NUL byte inside a string: MySQL reads on, the analyser stops.
	{stmt: "SELECT 'x\x00', count(*) FROM b", mutate: "DELETE FROM b", table: "b"},
	// An alias that is one of the walk's keywords (DO, OFFSET).
	{stmt: "SELECT count(*) FROM a do, b", mutate: "DELETE FROM b", table: "b"},
	{stmt: "UPDATE a do JOIN b ON do.id = b.id SET b.n = 7", table: "b"},
	// REPLACE without INTO away from the statement's head.
	{stmt: "ANALYZE REPLACE u VALUES (1, 7)", table: "u"},
	// DDL away from the statement's head.
	{stmt: "BEGIN NOT ATOMIC RENAME TABLE b TO b2; END", table: "b"},
	{stmt: "BEGIN NOT ATOMIC DROP TABLE b; END", table: "b"},
}

func result(t *testing.T, conn *sql.Conn, stmt string) string {
	rows, err := conn.QueryContext(context.Background(), stmt)
	if err != nil {
		t.Fatalf("%q: %v", stmt, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var b strings.Builder
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%q\n", vals)
	}
	return b.String()
}

func TestHardStatements(t *testing.T) {
	_, conn := open(t)
	ctx := context.Background()
	for _, c := range hardCases {
		t.Run(c.stmt, func(t *testing.T) {
			reset(t, conn)
			for _, name := range []string{"sv", "2024_01", "0o17", "B", "b2"} {
				_, _ = conn.ExecContext(ctx, "DROP TABLE IF EXISTS `"+name+"`")
			}
			for _, s := range c.setup {
				if _, err := conn.ExecContext(ctx, s); err != nil {
					t.Fatalf("%s: %v", s, err)
				}
			}
			got := sqlscan.Analyze(sqlscan.MySQL, c.stmt)
			if got.Catalog || got.Schema {
				t.Skipf("analyser: Catalog %v Schema %v", got.Catalog, got.Schema)
			}
			if c.mutate != "" {
				before := result(t, conn, c.stmt)
				if _, err := conn.ExecContext(ctx, c.mutate); err != nil {
					t.Fatal(err)
				}
				after := result(t, conn, c.stmt)
				if before != after && !slices.Contains(got.Reads, strings.ToLower(c.table)) && !slices.Contains(got.Writes, strings.ToLower(c.table)) {
					t.Errorf("%q reads %q (result %q became %q after %q); the analyser reports reads %q, writes %q",
						c.stmt, c.table, before, after, c.mutate, got.Reads, got.Writes)
				}
				return
			}
			before := contents(t, conn)
			if _, err := conn.ExecContext(ctx, c.stmt); err != nil {
				t.Fatalf("MariaDB refuses %q: %v", c.stmt, err)
			}
			after := contents(t, conn)
			for _, name := range union(before, after) {
				if before[name] != after[name] && !slices.Contains(got.Writes, name) {
					t.Errorf("%q changed %q; the analyser reports writes %q (DDL %v)", c.stmt, name, got.Writes, got.DDL)
				}
			}
		})
	}
}
