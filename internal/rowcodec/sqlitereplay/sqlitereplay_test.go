// Package sqlitereplay checks that an entry captured from SQLite through
// modernc.org/sqlite (a pure-Go build of SQLite, the driver of the
// embedded demo), encoded, decoded and replayed, scans exactly like the
// live rows: every value with its Go type and every column type. It is a
// module of its own so that the library does not depend on the driver.
package sqlitereplay

import (
	"context"
	"database/sql"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/gormflight/gormflight/internal/rowcodec"
	_ "modernc.org/sqlite"
)

var setup = []string{
	`CREATE TABLE kinds (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, n NUMERIC,
		bo BOOLEAN, d DATE, dt DATETIME, ts TIMESTAMP, v VARCHAR(10), any_ ANY_TYPE, none_)`,
	`INSERT INTO kinds VALUES (1, -9223372036854775808, 1.5e300, 'héllo', x'00ff', 12.5, 1,
		'2024-02-29', '2024-02-29 23:59:59.123456789', '2024-01-01T00:00:00Z', 'v', 7, 'untyped')`,
	`INSERT INTO kinds (id) VALUES (2)`,
	`INSERT INTO kinds VALUES (3, 9223372036854775807, -0.0, '', x'', '1e3', 0,
		'not a date', 1700000000, 'x', '', x'01', 3.5)`,
}

type scanned struct {
	rows  [][]any
	types []string
}

func scanAll(t *testing.T, rows *sql.Rows) scanned {
	t.Helper()
	defer rows.Close()
	var s scanned
	cts, err := rows.ColumnTypes()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cts {
		n, nok := c.Nullable()
		l, lok := c.Length()
		p, sc, dok := c.DecimalSize()
		st := "<nil>"
		if c.ScanType() != nil {
			st = c.ScanType().String()
		}
		s.types = append(s.types, strings.Join([]string{c.Name(), c.DatabaseTypeName(), st,
			strconv.FormatBool(n), strconv.FormatBool(nok), strconv.FormatInt(l, 10), strconv.FormatBool(lok),
			strconv.FormatInt(p, 10), strconv.FormatInt(sc, 10), strconv.FormatBool(dok)}, " "))
	}
	for rows.Next() {
		vals := make([]any, len(cts))
		ptrs := make([]any, len(cts))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		s.rows = append(s.rows, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReplayExact(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+t.TempDir()+"/replay.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range setup {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	replay := rowcodec.NewReplayer()
	defer replay.Close()
	ctx := context.Background()
	for _, q := range []struct {
		query string
		args  []any
	}{
		{"SELECT * FROM kinds ORDER BY id", nil},
		{"SELECT * FROM kinds WHERE id >= ? ORDER BY id", []any{0}},
		{"SELECT id, i + 1 AS expr, t || 'x' AS cat, count(*) OVER () AS w FROM kinds ORDER BY id", nil},
	} {
		live, err := db.QueryContext(ctx, q.query, q.args...)
		if err != nil {
			t.Fatal(err)
		}
		want := scanAll(t, live)
		rows, err := db.QueryContext(ctx, q.query, q.args...)
		if err != nil {
			t.Fatal(err)
		}
		ent, err := rowcodec.Capture(rows)
		if err != nil {
			t.Fatal(err)
		}
		data, err := rowcodec.Encode(nil, ent, 0)
		if err != nil {
			t.Fatalf("%s: Encode: %v", q.query, err)
		}
		dec, err := rowcodec.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		replayed, err := replay.Rows(ctx, dec)
		if err != nil {
			t.Fatal(err)
		}
		got := scanAll(t, replayed)
		if !reflect.DeepEqual(got.types, want.types) {
			t.Errorf("%s: column types\n got %q\nwant %q", q.query, got.types, want.types)
		}
		if len(got.rows) != len(want.rows) {
			t.Fatalf("%s: %d rows, want %d", q.query, len(got.rows), len(want.rows))
		}
		for r := range want.rows {
			for c := range want.rows[r] {
				g, w := got.rows[r][c], want.rows[r][c]
				if !reflect.DeepEqual(g, w) {
					t.Errorf("%s: row %d column %d: got %#v (%T), want %#v (%T)", q.query, r, c, g, g, w, w)
				}
			}
		}
	}
}
