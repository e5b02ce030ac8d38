package gormflight

import (
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"testing"
	"time"
)

type keyCall struct {
	dialect, database, query string
	args                     []any
	tables                   []string
}

// kc builds the common case: fixed dialect, database and query, varying args.
func kc(args ...any) keyCall {
	return keyCall{"postgres", "app", "SELECT * FROM t WHERE a = ?", args, []string{"t"}}
}

func mustKey(t testing.TB, c keyCall) string {
	t.Helper()
	k, err := queryKey(c.dialect, c.database, c.query, c.args, c.tables)
	if err != nil {
		t.Fatalf("queryKey(%+v): %v", c, err)
	}
	return k
}

var keyFormat = regexp.MustCompile(`^[0-9a-f]{32}$`)

type status string
type userID int64

type valuerX struct{}

func (valuerX) Value() (driver.Value, error) { return "x", nil }

// ptrValuer dereferences its receiver, so calling Value on nil would panic.
type ptrValuer struct{ s string }

func (p *ptrValuer) Value() (driver.Value, error) { return p.s, nil }

var errValuerBoom = errors.New("boom")

type errValuer struct{}

func (errValuer) Value() (driver.Value, error) { return nil, errValuerBoom }

func TestQueryKeyDistinct(t *testing.T) {
	instant := time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC)
	zones := []keyCall{
		kc(instant),
		kc(instant.In(time.FixedZone("X", 3600))),
		// Same offset as UTC, different zone name.
		kc(instant.In(time.FixedZone("GMT", 0))),
	}
	if tokyo, err := time.LoadLocation("Asia/Tokyo"); err == nil {
		zones = append(zones, kc(instant.In(tokyo)))
	} else {
		t.Logf("no tzdata, skipping named location: %v", err)
	}

	tests := []struct {
		name  string
		calls []keyCall
	}{
		{"arg boundary", []keyCall{kc("x y", "z"), kc("x", "y z")}},
		{"nil vs empty string", []keyCall{kc(nil), kc("")}},
		{"int vs string", []keyCall{kc(int64(1)), kc("1")}},
		{"same instant in different zones", zones},
		{"bytes vs string", []keyCall{kc([]byte("a")), kc("a")}},
		{"nil vs nil bytes vs empty string", []keyCall{kc(nil), kc([]byte(nil)), kc("")}},
		{"query text", []keyCall{
			{"postgres", "app", "SELECT 1", nil, nil},
			{"postgres", "app", "SELECT 2", nil, nil},
		}},
		{"dialect/database/query boundaries", []keyCall{
			{"postgres", "ab", "c", nil, nil},
			{"postgres", "a", "bc", nil, nil},
			{"postgresa", "b", "c", nil, nil},
			{"mysql", "ab", "c", nil, nil},
		}},
		{"tables", []keyCall{
			{"postgres", "app", "q", nil, []string{"a", "b"}},
			{"postgres", "app", "q", nil, []string{"b", "a"}},
			{"postgres", "app", "q", nil, []string{"ab"}},
			{"postgres", "app", "q", nil, []string{"a b"}},
			{"postgres", "app", "q", nil, nil},
		}},
		{"arg count", []keyCall{kc("a"), kc("a", nil)}},
		{"bool vs int", []keyCall{kc(true), kc(1)}},
		{"float vs int", []keyCall{kc(float64(1)), kc(int64(1))}},
		{"slices", []keyCall{kc([]int{1, 2}), kc([]int{12}), kc(1, 2), kc([]int{2, 1})}},
		{"valuer vs plain", []keyCall{kc(valuerX{}), kc("x")}},
		{"named arg", []keyCall{kc(1), kc(sql.Named("a", 1)), kc(sql.Named("b", 1))}},
		{"args vs tables", []keyCall{
			{"postgres", "app", "q", []any{"t"}, nil},
			{"postgres", "app", "q", nil, []string{"t"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := make([]string, len(tt.calls))
			for i, c := range tt.calls {
				keys[i] = mustKey(t, c)
				for j := 0; j < i; j++ {
					if keys[i] == keys[j] {
						t.Errorf("calls %d and %d share key %s:\n%+v\n%+v", j, i, keys[i], tt.calls[j], tt.calls[i])
					}
				}
			}
		})
	}
}

func TestQueryKeyEqual(t *testing.T) {
	s, i := "x", 5
	pi := &i
	now := time.Now() // carries a monotonic reading
	tests := []struct {
		name  string
		calls []keyCall
	}{
		{"same inputs twice", []keyCall{kc(int64(1), "a", now), kc(int64(1), "a", now)}},
		// Signed widths are normalised: database/sql hands them all to the
		// driver as int64, so they must share cache entries.
		{"signed widths", []keyCall{kc(5), kc(int64(5)), kc(int32(5)), kc(int16(5)), kc(int8(5)), kc(userID(5))}},
		{"unsigned widths", []keyCall{kc(uint(5)), kc(uint8(5)), kc(uint16(5)), kc(uint32(5)), kc(uint64(5))}},
		{"float widths", []keyCall{kc(float32(1.5)), kc(1.5)}},
		{"monotonic reading ignored", []keyCall{kc(now), kc(now.Round(0))}},
		{"pointer vs value", []keyCall{kc(s, i), kc(&s, pi), kc(&s, &pi)}},
		// A named string type encodes like string: the driver receives the
		// same value either way.
		{"named string type", []keyCall{kc(status("x")), kc("x")}},
		{"json.RawMessage is bytes", []keyCall{kc(json.RawMessage(`{}`)), kc([]byte(`{}`))}},
		{"nil pointers are nil", []keyCall{kc(nil), kc((*string)(nil)), kc((*valuerX)(nil)), kc((*ptrValuer)(nil))}},
		{"list kinds", []keyCall{kc([]int{1, 2}), kc([]any{1, 2}), kc([2]int64{1, 2})}},
		{"valuer result", []keyCall{kc(&ptrValuer{"x"}), kc(valuerX{}), kc(&valuerX{})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := mustKey(t, tt.calls[0])
			for i, c := range tt.calls[1:] {
				if got := mustKey(t, c); got != want {
					t.Errorf("call %d: key %s, want %s (%+v vs %+v)", i+1, got, want, c, tt.calls[0])
				}
			}
		})
	}
}

func TestQueryKeyDeterministicFloats(t *testing.T) {
	for _, f := range []float64{0, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1)} {
		if a, b := mustKey(t, kc(f)), mustKey(t, kc(f)); a != b {
			t.Errorf("%v: keys differ: %s vs %s", f, a, b)
		}
	}
}

// TestQueryKeyStable pins the format: keys live in Redis across deploys, so
// the expected encodings are built by hand from the documented layout rather
// than from queryKey's own helpers.
func TestQueryKeyStable(t *testing.T) {
	// lp length-prefixes strings shorter than 128 bytes, where the uvarint is one byte.
	lp := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	hash := func(b []byte) string { sum := sha256.Sum256(b); return hex.EncodeToString(sum[:16]) }

	t.Run("int and string", func(t *testing.T) {
		enc := cat(
			lp("gormflight/key/v1"), lp("postgres"), lp("test"), lp("SELECT 1"),
			[]byte{2},
			[]byte{0x03, 0, 0, 0, 0, 0, 0, 0, 1}, // int64(1)
			[]byte{0x06}, lp("a"),                // "a"
			[]byte{1}, lp("t"),
		)
		// Also computed outside Go: printf '\x11gormflight/key/v1\x08postgres...' | sha256sum
		const golden = "606c3be62bfc3e78a7b0e603c9c7b7ab"
		if h := hash(enc); h != golden {
			t.Fatalf("hand-built encoding hashes to %s, want %s", h, golden)
		}
		got := mustKey(t, keyCall{"postgres", "test", "SELECT 1", []any{int64(1), "a"}, []string{"t"}})
		if got != golden {
			t.Errorf("queryKey = %s, want %s", got, golden)
		}
		if !keyFormat.MatchString(got) {
			t.Errorf("key %q is not 32 lower-case hex chars", got)
		}
	})

	t.Run("time named list valuer nil", func(t *testing.T) {
		ts := time.Unix(0x01020304, 5).In(time.FixedZone("X", 3600))
		enc := cat(
			lp("gormflight/key/v1"), lp("mysql"), lp("db"), lp("q"),
			[]byte{5},
			[]byte{0x08, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 5}, lp("X"),
			[]byte{0, 0, 0, 0, 0, 0, 0x0e, 0x10}, lp("X"), // offset 3600, location name
			[]byte{0x0a}, lp("n"), []byte{0x02, 1}, // sql.Named("n", true)
			[]byte{0x0b, 2, 0x04, 0, 0, 0, 0, 0, 0, 0, 7, 0x07, 1, 0xff}, // []any{uint8(7), []byte{0xff}}
			[]byte{0x09, 0x06}, lp("x"), // valuerX{}
			[]byte{0x01}, // nil
			[]byte{0},
		)
		args := []any{ts, sql.Named("n", true), []any{uint8(7), []byte{0xff}}, valuerX{}, nil}
		if got, want := mustKey(t, keyCall{"mysql", "db", "q", args, nil}), hash(enc); got != want {
			t.Errorf("queryKey = %s, want %s", got, want)
		}
	})
}

func TestQueryKeyErrors(t *testing.T) {
	self := []any{nil}
	self[0] = self
	tests := []struct {
		name string
		arg  any
		want error
	}{
		{"map", map[string]int{"a": 1}, errUnkeyable},
		{"struct", struct{ X int }{}, errUnkeyable},
		{"chan", make(chan int), errUnkeyable},
		{"func", func() {}, errUnkeyable},
		{"complex", complex(1, 2), errUnkeyable},
		{"nested in slice", []any{1, map[string]int{}}, errUnkeyable},
		{"self-referencing slice", self, errUnkeyable},
		{"valuer error", errValuer{}, errValuerBoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := queryKey("postgres", "app", "q", []any{"ok", tt.arg}, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want errors.Is %v", err, tt.want)
			}
			if k != "" {
				t.Errorf("key = %q alongside error", k)
			}
		})
	}
}

func TestQueryKeyNilPointerValuer(t *testing.T) {
	var p *ptrValuer
	var _ driver.Valuer = p
	got := mustKey(t, kc(p)) // would panic if Value were called
	if want := mustKey(t, kc(nil)); got != want {
		t.Errorf("nil *ptrValuer key %s, want nil key %s", got, want)
	}
}

func FuzzQueryKey(f *testing.F) {
	f.Add("SELECT 1", "", []byte(nil), int64(0), 0.0, false)
	f.Add("SELECT * FROM users WHERE name = ? AND id = ?", "alice", []byte("alice"), int64(-1), math.Inf(1), true)
	f.Add("", "x y", []byte("z"), int64(math.MaxInt64), math.NaN(), true)
	f.Add("q", "\x00\xff", []byte{0, 0xff}, int64(math.MinInt64), math.Copysign(0, -1), false)

	f.Fuzz(func(t *testing.T, query, a string, b []byte, i int64, fl float64, useTime bool) {
		args := []any{a, b, i, fl}
		if useTime {
			args = append(args, time.Unix(i, int64(len(a))).In(time.FixedZone(a, int(i%86400))))
		}
		key := func(args ...any) string {
			k, err := queryKey("postgres", "db", query, args, []string{a})
			if err != nil {
				t.Fatalf("queryKey: %v", err)
			}
			if !keyFormat.MatchString(k) {
				t.Fatalf("key %q is not 32 lower-case hex chars", k)
			}
			return k
		}

		if k1, k2 := key(args...), key(args...); k1 != k2 {
			t.Fatalf("not deterministic: %s vs %s", k1, k2)
		}
		if key(a) == key([]byte(a)) {
			t.Fatalf("string %q and []byte share a key", a)
		}
		if key(a, b) == key(a+string(b)) {
			t.Fatalf("two args %q,%q share a key with their concatenation", a, b)
		}
		swapped := key(string(b), []byte(a))
		if same := a == string(b); (key(a, b) == swapped) != same {
			t.Fatalf("swap of %q and %q: equal keys = %v, want %v", a, b, !same, same)
		}
	})
}

func BenchmarkQueryKey(b *testing.B) {
	const query = `SELECT "orders"."id","orders"."user_id","orders"."status","orders"."total" FROM "orders" WHERE user_id = $1 AND status = $2 AND created_at > $3 LIMIT 50`
	args := []any{int64(42), "paid", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
	tables := []string{"orders"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := queryKey("postgres", "shop", query, args, tables); err != nil {
			b.Fatal(err)
		}
	}
}
