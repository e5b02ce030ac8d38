// Package replaytest is for the modules that check rowcodec against a
// driver (mysqlreplay, sqlitereplay): a result captured, encoded, decoded
// and replayed must scan exactly like the live one.
package replaytest

import (
	"context"
	"database/sql"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/gormflight/gormflight/internal/rowcodec"
)

// Check runs query on db twice, live and through the codec (Capture,
// Encode, Decode, then replay), and fails t unless every value, with its
// Go type, and every column type are equal.
func Check(t testing.TB, db *sql.DB, replay *rowcodec.Replayer, query string, args ...any) {
	t.Helper()
	ctx := context.Background()
	live, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		t.Fatal(err)
	}
	want := scan(t, live)
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		t.Fatal(err)
	}
	ent, err := rowcodec.Capture(rows)
	if err != nil {
		t.Fatal(err)
	}
	data, err := rowcodec.Encode(nil, ent, 0)
	if err != nil {
		t.Fatalf("%s: Encode: %v", query, err)
	}
	dec, err := rowcodec.Decode(data)
	if err != nil {
		t.Fatalf("%s: Decode: %v", query, err)
	}
	replayed, err := replay.Rows(ctx, dec)
	if err != nil {
		t.Fatal(err)
	}
	got := scan(t, replayed)
	if !reflect.DeepEqual(got.types, want.types) {
		t.Errorf("%s: column types\n got %q\nwant %q", query, got.types, want.types)
	}
	if len(got.rows) != len(want.rows) {
		t.Fatalf("%s: %d rows, want %d", query, len(got.rows), len(want.rows))
	}
	for r := range want.rows {
		for c := range want.rows[r] {
			if g, w := got.rows[r][c], want.rows[r][c]; !reflect.DeepEqual(g, w) {
				t.Errorf("%s: row %d column %s: got %#v (%T), want %#v (%T)", query, r, strings.Fields(want.types[c])[0], g, g, w, w)
			}
		}
	}
}

// scanned is a result as database/sql hands it out: each value scanned
// into *any, and the column types as text.
type scanned struct {
	rows  [][]any
	types []string
}

func scan(t testing.TB, rows *sql.Rows) scanned {
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
