package rowcodec

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"reflect"
	"testing"
	"time"
)

func testEntry() *Entry {
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	e, err := NewEntry([]string{"id", "name", "blob", "at", "note"}, [][]driver.Value{
		{int64(1), "a", []byte("xy"), at, nil},
		{int64(2), "b", []byte{}, at.Add(time.Hour), "n"},
	})
	if err != nil {
		panic(err)
	}
	e.columns[0].dbType, e.columns[0].nullableOK = "INT8", true
	e.columns[1].length, e.columns[1].lengthOK = 32, true
	e.columns[4].scanType = nil // the driver reported nil
	return e
}

// A replay is a genuine *sql.Rows: database/sql converts into every
// destination, and column types report what the entry keeps.
func TestReplayRows(t *testing.T) {
	r := NewReplayer()
	defer r.Close()
	rows, err := r.Rows(context.Background(), testEntry())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		t.Fatal(err)
	}
	if got := types[0].DatabaseTypeName(); got != "INT8" {
		t.Errorf("DatabaseTypeName %q, want INT8", got)
	}
	if n, ok := types[1].Length(); !ok || n != 32 {
		t.Errorf("Length %d, %v; want 32, true", n, ok)
	}
	if st := types[4].ScanType(); st != nil {
		t.Errorf("ScanType of a column the driver reported nil for: %v, want nil", st)
	}
	type row struct {
		id   int32
		name sql.NullString
		blob sql.RawBytes
		at   time.Time
		note sql.NullString
	}
	var got []row
	for rows.Next() {
		var x row
		if err := rows.Scan(&x.id, &x.name, &x.blob, &x.at, &x.note); err != nil {
			t.Fatal(err)
		}
		x.blob = append(sql.RawBytes(nil), x.blob...)
		got = append(got, x)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].id != 1 || got[1].name.String != "b" || string(got[0].blob) != "xy" ||
		got[0].note.Valid || got[1].note.String != "n" || !got[1].at.Equal(got[0].at.Add(time.Hour)) {
		t.Errorf("scanned %+v", got)
	}
}

// Callers of one entry cannot reach each other through it: column names
// and []byte values are copies.
func TestReplayIsolatesCallers(t *testing.T) {
	r := NewReplayer()
	defer r.Close()
	e := testEntry()
	rows, err := r.Rows(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := rows.Columns()
	cols[0] = "changed"
	rows.Next()
	var id int64
	var name string
	var blob sql.RawBytes
	var at time.Time
	var note any
	if err := rows.Scan(&id, &name, &blob, &at, &note); err != nil {
		t.Fatal(err)
	}
	blob[0] = 'Z'
	rows.Close()
	if e.Names()[0] != "id" || string(e.Values()[0][2].([]byte)) != "xy" {
		t.Errorf("a caller changed the shared entry: names %v, blob %q", e.Names(), e.Values()[0][2])
	}
}

// Row carries a live query's error; Capture reads a result back into an
// equal entry.
func TestReplayRowAndCapture(t *testing.T) {
	r := NewReplayer()
	defer r.Close()
	boom := errors.New("boom")
	var n int
	if err := r.Row(context.Background(), nil, boom).Scan(&n); !errors.Is(err, boom) {
		t.Errorf("Row with an error: %v, want boom", err)
	}
	if err := r.Row(context.Background(), mustEntry(t, []string{"n"}, nil), nil).Scan(&n); !errors.Is(err, sql.ErrNoRows) {
		t.Errorf("Row of no rows: %v, want sql.ErrNoRows", err)
	}
	want := testEntry()
	rows, err := r.Rows(context.Background(), want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Capture(rows)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("captured %+v\nwant %+v", got, want)
	}
}

// A zero Replayer, or no entry, is an error, never a panic.
func TestReplayNothing(t *testing.T) {
	var zero Replayer
	if _, err := zero.Rows(context.Background(), mustEntry(t, []string{"n"}, nil)); err == nil {
		t.Error("zero Replayer: Rows succeeded")
	}
	var n int
	if err := zero.Row(context.Background(), mustEntry(t, []string{"n"}, nil), nil).Scan(&n); err == nil {
		t.Error("zero Replayer: Row succeeded")
	}
	if err := zero.Close(); err != nil {
		t.Errorf("zero Replayer: Close: %v", err)
	}
	r := NewReplayer()
	defer r.Close()
	if _, err := r.Rows(context.Background(), nil); err == nil {
		t.Error("Rows(nil) succeeded")
	}
	if err := r.Row(context.Background(), nil, nil).Scan(&n); err == nil {
		t.Error("Row(nil, nil) succeeded")
	}
}
