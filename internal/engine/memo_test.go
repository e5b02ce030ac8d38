package engine

import (
	"crypto/sha256"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/gormflight/gormflight/internal/rowcodec"
)

// later is an expiry the memo tests do not reach.
var later = time.Now().Add(time.Hour)

// memoWeightOf is the weight the memo gives data under key.
func memoWeightOf(t *testing.T, key string, data []byte) int {
	t.Helper()
	e, err := rowcodec.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return memoWeight(key, testHead(data), e)
}

func memoData(t *testing.T, rows ...string) ([]byte, *rowcodec.Entry) {
	t.Helper()
	var values [][]driver.Value
	for _, r := range rows {
		values = append(values, []driver.Value{r})
	}
	e, err := rowcodec.NewEntry([]string{"v"}, values)
	if err != nil {
		t.Fatal(err)
	}
	data, err := rowcodec.Encode(nil, e, 0)
	if err != nil {
		t.Fatal(err)
	}
	return data, e
}

func TestMemo(t *testing.T) {
	t.Run("same bytes decode once", func(t *testing.T) {
		m := newMemo(1 << 20)
		data, want := memoData(t, "a", "b")
		first, err := m.decode("k", testHead(data), data, later)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(first.Values(), want.Values()) {
			t.Fatalf("rows %v, want %v", first.Values(), want.Values())
		}
		again, err := m.decode("k", testHead(data), append([]byte(nil), data...), later)
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
		if _, err := m.decode("k", testHead(old), old, later); err != nil {
			t.Fatal(err)
		}
		got, err := m.decode("k", testHead(cur), cur, later)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Values(), want.Values()) {
			t.Errorf("after the stored entry changed: rows %v, want %v", got.Values(), want.Values())
		}
	})
	t.Run("corrupt bytes are an error and forgotten", func(t *testing.T) {
		m := newMemo(1 << 20)
		data, _ := memoData(t, "a")
		if _, err := m.decode("k", testHead(data), data, later); err != nil {
			t.Fatal(err)
		}
		if _, err := m.decode("k", testHead(data[:len(data)-1]), data[:len(data)-1], later); !errors.Is(err, rowcodec.ErrCorrupt) {
			t.Fatalf("truncated entry: %v, want rowcodec.ErrCorrupt", err)
		}
		if n := m.len(); n != 0 {
			t.Errorf("memo holds %d entries after a corrupt one replaced its key, want 0", n)
		}
	})
	t.Run("bounded by size, least recently used evicted", func(t *testing.T) {
		data, _ := memoData(t, "a row of some length")
		limit := 10 * memoWeightOf(t, "k0", data)
		m := newMemo(limit)
		if _, err := m.decode("hot", testHead(data), data, later); err != nil {
			t.Fatal(err)
		}
		hot, _ := m.decode("hot", testHead(data), data, later)
		for i := range 100 {
			if _, err := m.decode(fmt.Sprintf("k%d", i), testHead(data), data, later); err != nil {
				t.Fatal(err)
			}
			if i%5 == 0 { // keep "hot" recently used
				if got, _ := m.decode("hot", testHead(data), data, later); got != hot {
					t.Fatalf("the recently used entry was evicted at insert %d", i)
				}
			}
			if m.size > limit {
				t.Fatalf("memo holds %d bytes, limit %d", m.size, limit)
			}
		}
		if n := m.len(); n != 10 {
			t.Errorf("memo holds %d entries, want 10 (limit %d bytes of %d each)", n, limit, memoWeightOf(t, "k0", data))
		}
	})
	t.Run("large entries are not kept", func(t *testing.T) {
		data, _ := memoData(t, "x")
		m := newMemo(4*memoWeightOf(t, "k", data) - 1)
		if _, err := m.decode("k", testHead(data), data, later); err != nil {
			t.Fatal(err)
		}
		if n := m.len(); n != 0 {
			t.Errorf("memo kept an entry over a quarter of its size")
		}
	})
	t.Run("disabled", func(t *testing.T) {
		m := newMemo(-1)
		data, _ := memoData(t, "a")
		a, _ := m.decode("k", testHead(data), data, later)
		b, _ := m.decode("k", testHead(data), data, later)
		if a == b || m.len() != 0 {
			t.Errorf("a disabled memo kept an entry")
		}
	})
}

// memoRow encodes a one-row entry of typical columns, distinct per i.
func memoRow(t testing.TB, i, rows int) []byte {
	t.Helper()
	var values [][]driver.Value
	for r := range rows {
		values = append(values, []driver.Value{
			int64(i*1000 + r), fmt.Sprintf("customer number %d/%d", i, r),
			time.Unix(int64(1_700_000_000+i), 0).UTC(), nil,
		})
	}
	e, err := rowcodec.NewEntry([]string{"id", "name", "created_at", "payload"}, values)
	if err != nil {
		t.Fatal(err)
	}
	data, err := rowcodec.Encode(nil, e, 0)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// heapInUse is the live heap after collecting garbage.
func heapInUse() int64 {
	var ms runtime.MemStats
	for range 2 { // sync.Pool keeps what it held through one collection
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// The memo's bound holds for the memory it really holds, measured by the Go
// runtime, not only for the encoded bytes; and when its entries expire in
// Redis, it lets go of them without being read again.
func TestMemoMemoryBound(t *testing.T) {
	const limit = 4 << 20
	// slack covers what the measurement cannot attribute to the memo: the
	// test's own few allocations and the runtime's, and the sizes the
	// estimate rounds differently from the allocator.
	const slack = 1 << 20
	for _, c := range []struct {
		name       string
		keys, rows int
	}{
		{"100k keys of 1 row", 100_000, 1},
		{"3000 keys of 200 rows", 3_000, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := newMemo(limit)
			expires := time.Now().Add(time.Hour)
			base := heapInUse()
			for i := range c.keys {
				key := fmt.Sprintf("gormflight:{%032x}:e", i)
				row := memoRow(t, i, c.rows)
				if _, err := m.decode(key, testHead(row), row, expires); err != nil {
					t.Fatal(err)
				}
			}
			grown := heapInUse() - base
			t.Logf("%s: memo holds %d entries, %d bytes by its estimate; heap grew %d bytes (limit %d)", c.name, m.len(), m.size, grown, limit)
			if grown > limit+slack {
				t.Errorf("heap grew %d bytes with a memo bounded to %d (+%d slack)", grown, limit, slack)
			}
			if m.len() == 0 {
				t.Fatal("the memo kept nothing: the test did not test anything")
			}

			// An hour later (TestMemoExpiry waits for a real timer).
			m.mu.Lock()
			m.now = func() time.Time { return expires }
			m.mu.Unlock()
			m.sweep()
			if n := m.len(); n != 0 {
				t.Fatalf("%d entries are left after all expired", n)
			}
			if left := heapInUse() - base; left > slack {
				t.Errorf("after every entry expired, the heap is %d bytes above where it started", left)
			}
			runtime.KeepAlive(m)
		})
	}
}

// An item leaves the memo when its entry expires in Redis, read or not, and
// a later read of the same bytes (stored again) keeps it longer.
func TestMemoExpiry(t *testing.T) {
	m := newMemo(1 << 20)
	data, _ := memoData(t, "a")
	if _, err := m.decode("short", testHead(data), data, time.Now().Add(50*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.decode("long", testHead(data), data, later); err != nil {
		t.Fatal(err)
	}
	if _, err := m.decode("none", testHead(data), data, time.Time{}); err != nil {
		t.Fatal(err)
	}
	for _, expires := range []time.Time{time.Now().Add(50 * time.Millisecond), later} {
		if _, err := m.decode("renewed", testHead(data), data, expires); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.len(); n != 3 {
		t.Fatalf("memo holds %d entries, want 3 (an entry without expiry is not kept)", n)
	}
	waitFor(t, "the short entry to expire", time.Minute, func() bool { return m.len() == 2 })
	m.mu.Lock()
	_, long := m.byKey["long"]
	_, renewed := m.byKey["renewed"]
	m.mu.Unlock()
	if !long || !renewed {
		t.Fatalf("after the short entry expired: long kept %v, renewed kept %v; want both", long, renewed)
	}
	m.close()
	if n := m.len(); n != 0 {
		t.Errorf("closed memo holds %d entries", n)
	}
}

// testHead stands for the head of the stored value data is the entry of:
// distinct for distinct data, as the tag in a real head makes it.
func testHead(data []byte) string {
	sum := sha256.Sum256(data)
	return "1,2|" + hex.EncodeToString(sum[:8]) + ",5|"
}

// The memo keeps an entry's key on its own: a query's entry name is a
// slice of one string that also holds its lock and channel names, and the
// memo's weight counts the key's bytes only.
func TestMemoKeyHeldAlone(t *testing.T) {
	m := newMemo(1 << 20)
	names := newKeys("gft", "0123456789abcdef")
	row := memoRow(t, 1, 1)
	if _, err := m.decode(names.entry, testHead(row), row, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.byKey) != 1 {
		t.Fatalf("%d items, want 1", len(m.byKey))
	}
	for key, el := range m.byKey {
		it := el.Value.(*memoItem)
		if key != names.entry || it.key != names.entry {
			t.Fatalf("held under %q / %q, want %q", key, it.key, names.entry)
		}
		for _, held := range []string{key, it.key} {
			if unsafe.StringData(held) == unsafe.StringData(names.entry) {
				t.Errorf("the memo holds the request's string (%d bytes with the lock and channel names), not a %d-byte key",
					len(names.entry)+len(names.lock)+len(names.ready), len(names.entry))
			}
		}
	}
}
