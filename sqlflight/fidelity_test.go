package sqlflight_test

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/testdb"
	"github.com/gormflight/gormflight/sqlflight"
	"github.com/jmoiron/sqlx"
)

// Fidelity: every column kind of each database, read through the wrapper
// cached (the flight's own entry, then a Redis hit), gives what the same
// query gives without it: the values the driver returns, and the column
// types before the first row and at each row (SQLite's follow the row),
// through database/sql and through sqlx's MapScan. MariaDB is read through
// both protocols: a query without arguments is sent as text, one with
// arguments is prepared (binary).
func TestFidelity(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		testdb.SetupFidelity(t, r.name, r.plain)
		table := testdb.FidelityTables[r.name]
		in := r.instance(t)
		for _, c := range []struct {
			name  string
			query string
			args  []any
		}{
			{"text", "SELECT * FROM " + table + " ORDER BY id", nil},
			{"binary", r.q("SELECT * FROM " + table + " WHERE id > ? ORDER BY id"), []any{0}},
		} {
			t.Run(c.name, func(t *testing.T) {
				live := rawRows(t, r.plain, context.Background(), c.query, c.args)
				liveMaps := mapRows(t, sqlx.NewDb(r.plain, r.sqlxDriver()), context.Background(), c.query, c.args)
				ctx := sqlflight.WithCache(context.Background(), time.Minute)
				for i, label := range []string{"cached", "cached (hit)"} {
					hits := in.c.Stats().Hits
					got := rawRows(t, in.db, ctx, c.query, c.args)
					if i == 1 && in.c.Stats().Hits == hits {
						t.Errorf("%s: not a hit", label)
					}
					if !reflect.DeepEqual(got, live) {
						t.Errorf("%s differs from live:\n got %v\nwant %v", label, got, live)
					}
					if got := mapRows(t, sqlx.NewDb(in.db, r.sqlxDriver()), ctx, c.query, c.args); !reflect.DeepEqual(got, liveMaps) {
						t.Errorf("%s through sqlx differs from live:\n got %v\nwant %v", label, got, liveMaps)
					}
				}
			})
		}
	})
}

// rawRows reads a query into what database/sql reports: column types
// before the first row and after each, and every value as the driver
// returned it.
func rawRows(t *testing.T, db *sql.DB, ctx context.Context, query string, args []any) []string {
	t.Helper()
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := []string{columnTypes(t, rows)}
	for rows.Next() {
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%#v", vals), columnTypes(t, rows))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func columnTypes(t *testing.T, rows *sql.Rows) string {
	t.Helper()
	cts, err := rows.ColumnTypes()
	if err != nil {
		t.Fatal(err)
	}
	var s string
	for _, c := range cts {
		null, nullOK := c.Nullable()
		length, lengthOK := c.Length()
		prec, scale, decOK := c.DecimalSize()
		s += fmt.Sprintf("[%s %s %v %v %v %d %v %d %d %v]", c.Name(), c.DatabaseTypeName(), c.ScanType(), null, nullOK, length, lengthOK, prec, scale, decOK)
	}
	return s
}

// mapRows reads a query with sqlx's MapScan.
func mapRows(t *testing.T, x *sqlx.DB, ctx context.Context, query string, args []any) []map[string]any {
	t.Helper()
	rows, err := x.QueryxContext(ctx, query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		m := map[string]any{}
		if err := rows.MapScan(m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
