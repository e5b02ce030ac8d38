package rowcodec

import (
	"bytes"
	"database/sql/driver"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Every value kind a driver returns comes back from Encode and Decode equal,
// times with the location they had.
func TestRoundTrip(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no zoneinfo:", err)
	}
	at := time.Date(2026, 3, 29, 1, 30, 0, 123456789, time.UTC)
	values := []driver.Value{
		nil, int64(-1 << 63), int64(1<<63 - 1), 3.5, true, false, "", "text", []byte{}, []byte{0, 1, 2},
		// go-sql-driver's FLOAT and BIGINT UNSIGNED keep their types.
		float32(3.25), float32(-1e38), uint64(0), uint64(1<<64 - 1), uint64(200), int64(200),
		[]byte(nil), // modernc's empty blob: not NULL
		at, at.Local(), at.In(paris), at.In(time.FixedZone("X", -3*3600-1800)), at.In(time.FixedZone("", 60)),
	}
	rows := make([][]driver.Value, len(values))
	for i, v := range values {
		rows[i] = []driver.Value{v}
	}
	in := mustEntry(t, []string{"v"}, rows)
	in.columns[0].scanType = nil
	data, err := Encode(nil, in, 0)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	for i, row := range out.Values() {
		got, want := row[0], values[i]
		if wt, ok := want.(time.Time); ok {
			gt, ok := got.(time.Time)
			if !ok || !gt.Equal(wt) || gt.Location().String() != wt.Location().String() {
				t.Errorf("value %d: got %v, want %v", i, got, want)
			}
			gn, go_ := gt.Zone()
			wn, wo := wt.Zone()
			if gn != wn || go_ != wo {
				t.Errorf("value %d: zone %s%+d, want %s%+d", i, gn, go_, wn, wo)
			}
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("value %d: got %#v, want %#v", i, got, want)
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		e     *Entry
		limit int
		want  error
	}{
		{"unknown value type", mustEntry(t, []string{"v"}, [][]driver.Value{{int32(1)}}), 0, ErrUnencodable},
		{"short row", &Entry{columns: make([]column, 2), names: []string{"a", "b"}, rows: [][]driver.Value{{int64(1)}}}, 0, ErrUnencodable},
		{"over the limit", mustEntry(t, []string{"v"}, [][]driver.Value{{string(make([]byte, 100))}}), 64, ErrTooLarge},
		{"too many rows of no columns", &Entry{rows: make([][]driver.Value, maxBareRows+1)}, 0, ErrUnencodable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Encode(nil, tc.e, tc.limit); !errors.Is(err, tc.want) {
				t.Fatalf("Encode: %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzDecodeEntry feeds arbitrary bytes to the entry decoder: it must never
// panic, and what it accepts must encode back to bytes that decode to the
// same entry.
func FuzzDecodeEntry(f *testing.F) {
	data, err := Encode(nil, &Entry{
		columns: []column{{name: "v", dbType: "TEXT", scanType: reflect.TypeFor[string]()}},
		names:   []string{"v"},
		rows:    [][]driver.Value{{"a"}, {nil}, {int64(-1)}, {[]byte{}}},
	}, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte{})
	f.Add([]byte{0x01, 0x90, 0x90})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := Encode(nil, e, 0)
		if err != nil {
			t.Fatalf("decoded entry does not encode: %v", err)
		}
		e2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip changed the entry:\n%+v\n%+v", e, e2)
		}
	})
}

func mustEntry(t testing.TB, names []string, rows [][]driver.Value) *Entry {
	t.Helper()
	e, err := NewEntry(names, rows)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// NewEntry refuses rows that do not hold one value per column: replayed,
// a short row would show the values of the row before it.
func TestNewEntryRowLength(t *testing.T) {
	for _, rows := range [][][]driver.Value{{{int64(1), "a"}, {int64(2)}}, {{int64(1), "a", "extra"}}} {
		if _, err := NewEntry([]string{"id", "name"}, rows); !errors.Is(err, ErrUnencodable) {
			t.Errorf("NewEntry(%v): %v, want ErrUnencodable", rows, err)
		}
	}
}

// Rows of no columns take no bytes, so Decode caps their claimed number
// rather than allocate for it.
func TestDecodeCapsBareRows(t *testing.T) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	_ = enc.EncodeUint(Version)
	_ = enc.EncodeArrayLen(0)
	_ = enc.EncodeArrayLen(maxBareRows + 1)
	if _, err := Decode(buf.Bytes()); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Decode of %d rows of no columns: %v, want ErrCorrupt", maxBareRows+1, err)
	}
}

// The scan types of a driver that reports them per row (SQLite's) survive
// Encode and Decode, and a replay reports each row's at that row.
func TestRowScanTypes(t *testing.T) {
	in := mustEntry(t, []string{"v"}, [][]driver.Value{{int64(1)}, {[]byte{1}}, {nil}})
	in.columns[0].scanType = nil // before the first row
	in.rowTypes = [][]rowColumn{{{scanType: reflect.TypeFor[int64]()}}, {{scanType: reflect.TypeFor[[][]byte](), length: 1<<63 - 1, lengthOK: true}}, {{}}}
	data, err := Encode(nil, in, 0)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out.rowTypes, in.rowTypes) || out.columns[0].scanType != nil {
		t.Fatalf("decoded row types %v (before the first row %v), want %v", out.rowTypes, out.columns[0].scanType, in.rowTypes)
	}
	r := &replayRows{entry: out}
	dest := make([]driver.Value, 1)
	want := []reflect.Type{nil, reflect.TypeFor[int64](), reflect.TypeFor[[][]byte](), nil, nil}
	for i, w := range want {
		if got := r.ColumnTypeScanType(0); got != w {
			t.Errorf("before Next %d: scan type %v, want %v", i, got, w)
		}
		if n, ok := r.ColumnTypeLength(0); (i == 2) != ok || ok && n != 1<<63-1 {
			t.Errorf("before Next %d: length %d, %v", i, n, ok)
		}
		_ = r.Next(dest)
	}
	in.rowTypes = in.rowTypes[:2]
	if _, err := Encode(nil, in, 0); !errors.Is(err, ErrUnencodable) {
		t.Errorf("Encode with scan types of 2 rows for 3: %v, want ErrUnencodable", err)
	}
}
