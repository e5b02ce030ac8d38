// Package sqlitereplay checks that an entry captured from SQLite through
// modernc.org/sqlite (a pure-Go build of SQLite, the driver of the
// embedded demo), encoded, decoded and replayed, scans exactly like the
// live rows: every value with its Go type and every column type. It is a
// module of its own so that the library does not depend on the driver.
package sqlitereplay

import (
	"database/sql"
	"testing"

	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/gormflight/gormflight/internal/rowcodec/replaytest"
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
	for _, q := range []struct {
		query string
		args  []any
	}{
		{"SELECT * FROM kinds ORDER BY id", nil},
		{"SELECT * FROM kinds WHERE id >= ? ORDER BY id", []any{0}},
		{"SELECT id, i + 1 AS expr, t || 'x' AS cat, count(*) OVER () AS w FROM kinds ORDER BY id", nil},
	} {
		replaytest.Check(t, db, replay, q.query, q.args...)
	}
}
