package gormflight

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func memoData(t *testing.T, rows ...string) ([]byte, *entry) {
	t.Helper()
	e := &entry{
		columns: []column{{name: "v", dbType: "TEXT", scanType: reflect.TypeFor[string]()}},
		names:   []string{"v"},
	}
	for _, r := range rows {
		e.rows = append(e.rows, []driver.Value{r})
	}
	data, err := encodeEntry(nil, e, 0)
	if err != nil {
		t.Fatal(err)
	}
	return data, e
}

func TestMemo(t *testing.T) {
	t.Run("same bytes decode once", func(t *testing.T) {
		m := newMemo(1 << 20)
		data, want := memoData(t, "a", "b")
		first, err := m.decode("k", data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(first.rows, want.rows) {
			t.Fatalf("rows %v, want %v", first.rows, want.rows)
		}
		again, err := m.decode("k", append([]byte(nil), data...))
		if err != nil {
			t.Fatal(err)
		}
		if again != first {
			t.Errorf("equal bytes were decoded again")
		}
	})
	t.Run("changed bytes decode anew", func(t *testing.T) {
		m := newMemo(1 << 20)
		old, _ := memoData(t, "old")
		cur, want := memoData(t, "new")
		if _, err := m.decode("k", old); err != nil {
			t.Fatal(err)
		}
		got, err := m.decode("k", cur)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.rows, want.rows) {
			t.Errorf("after the stored entry changed: rows %v, want %v", got.rows, want.rows)
		}
	})
	t.Run("corrupt bytes are an error and forgotten", func(t *testing.T) {
		m := newMemo(1 << 20)
		data, _ := memoData(t, "a")
		if _, err := m.decode("k", data); err != nil {
			t.Fatal(err)
		}
		if _, err := m.decode("k", data[:len(data)-1]); !errors.Is(err, errCorrupt) {
			t.Fatalf("truncated entry: %v, want errCorrupt", err)
		}
		if n := m.len(); n != 0 {
			t.Errorf("memo holds %d entries after a corrupt one replaced its key, want 0", n)
		}
	})
	t.Run("bounded by size, least recently used evicted", func(t *testing.T) {
		data, _ := memoData(t, "a row of some length")
		limit := 10 * len(data)
		m := newMemo(limit)
		if _, err := m.decode("hot", data); err != nil {
			t.Fatal(err)
		}
		hot, _ := m.decode("hot", data)
		for i := range 100 {
			if _, err := m.decode(fmt.Sprintf("k%d", i), data); err != nil {
				t.Fatal(err)
			}
			if i%5 == 0 { // keep "hot" recently used
				if got, _ := m.decode("hot", data); got != hot {
					t.Fatalf("the recently used entry was evicted at insert %d", i)
				}
			}
			if m.size > limit {
				t.Fatalf("memo holds %d bytes, limit %d", m.size, limit)
			}
		}
		if n := m.len(); n != 10 {
			t.Errorf("memo holds %d entries, want 10 (limit %d bytes of %d each)", n, limit, len(data))
		}
	})
	t.Run("large entries are not kept", func(t *testing.T) {
		data, _ := memoData(t, "x")
		m := newMemo(4*len(data) - 1)
		if _, err := m.decode("k", data); err != nil {
			t.Fatal(err)
		}
		if n := m.len(); n != 0 {
			t.Errorf("memo kept an entry over a quarter of its size")
		}
	})
	t.Run("disabled", func(t *testing.T) {
		m := newMemo(-1)
		data, _ := memoData(t, "a")
		a, _ := m.decode("k", data)
		b, _ := m.decode("k", data)
		if a == b || m.len() != 0 {
			t.Errorf("a disabled memo kept an entry")
		}
	})
}

// FuzzDecodeEntry feeds arbitrary bytes to the entry decoder: it must never
// panic, and what it accepts must encode back to bytes that decode to the
// same entry.
func FuzzDecodeEntry(f *testing.F) {
	data, err := encodeEntry(nil, &entry{
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
		e, err := decodeEntry(b)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v does not wrap errCorrupt", err)
			}
			return
		}
		again, err := encodeEntry(nil, e, 0)
		if err != nil {
			t.Fatalf("decoded entry does not encode: %v", err)
		}
		e2, err := decodeEntry(again)
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip changed the entry:\n%+v\n%+v", e, e2)
		}
	})
}
