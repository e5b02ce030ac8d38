package cachekey

import (
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"net"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

type keyCall struct {
	dialect, scope, query string
	args                  []any
	tables                []string
}

// kc builds the common case: fixed dialect, scope and query, varying args.
func kc(args ...any) keyCall {
	return keyCall{"postgres", "app", "SELECT * FROM t WHERE a = ?", args, []string{"t"}}
}

func mustKey(t testing.TB, c keyCall) string {
	t.Helper()
	k, err := Query(c.dialect, c.scope, c.query, c.args, c.tables)
	if err != nil {
		t.Fatalf("Query(%+v): %v", c, err)
	}
	return k
}

var keyFormat = regexp.MustCompile(`^[0-9a-f]{32}$`)

type status string
type userID int64
type rawBytes []byte
type myByte uint8
type uuidLike [16]byte
type myFloat float32

// intStringer prints unlike its number: pgx sends the number for integer
// parameters but the String result where it needs text.
type intStringer int

func (i intStringer) String() string { return "n" + string(rune('0'+i%10)) }

// int64Valuer is encoded by pgx through Int64Value, not its kind.
type int64Valuer int

func (i int64Valuer) Int64Value() (pgtype.Int8, error) {
	return pgtype.Int8{Int64: int64(i) + 1, Valid: true}, nil
}

// textValuerStr is encoded by pgx through TextValue where it needs text.
type textValuerStr string

func (s textValuerStr) TextValue() (pgtype.Text, error) {
	return pgtype.Text{String: "t:" + string(s), Valid: true}, nil
}

// mixedValuer's Value hides what pgx sends for text parameters.
type mixedValuer struct{ s string }

func (mixedValuer) Value() (driver.Value, error) { return "x", nil }
func (m mixedValuer) TextValue() (pgtype.Text, error) {
	return pgtype.Text{String: m.s, Valid: true}, nil
}

// dynValuer returns whatever it holds.
type dynValuer struct{ v any }

func (d dynValuer) Value() (driver.Value, error) { return d.v, nil }

// mapValuer cannot be walked but has no method besides Value that pgx reads.
type mapValuer map[string]string

func (m mapValuer) Value() (driver.Value, error) {
	b, err := json.Marshal(map[string]string(m))
	return string(b), err
}

// mapTextValuer cannot be walked and pgx would read TextValue, not Value.
type mapTextValuer map[string]string

func (mapTextValuer) Value() (driver.Value, error)    { return "v", nil }
func (mapTextValuer) TextValue() (pgtype.Text, error) { return pgtype.Text{}, nil }
func (mapTextValuer) SkipUnderlyingTypePlan()         {}
func (m mapTextValuer) MarshalJSON() ([]byte, error)  { return json.Marshal(map[string]string(m)) }
func (mapTextValuer) GormDataType() string            { return "jsonb" }
func (mapTextValuer) String() string                  { return "m" }
func (mapTextValuer) MarshalText() ([]byte, error)    { return []byte("m"), nil }
func (mapTextValuer) Error() string                   { return "m" }
func (mapTextValuer) GormDBDataType(any, any) string  { return "jsonb" }
func (mapTextValuer) Scan(any) error                  { return nil }

type valuerX struct{}

func (valuerX) Value() (driver.Value, error) { return "x", nil }

// ptrValuer dereferences its receiver, so calling Value on nil would panic.
type ptrValuer struct{ s string }

func (p *ptrValuer) Value() (driver.Value, error) { return p.s, nil }

var errValuerBoom = errors.New("boom")

type errValuer struct{}

func (errValuer) Value() (driver.Value, error) { return nil, errValuerBoom }

type rewriter string

func (rewriter) RewriteQuery() {}

func ptrTo[T any](v T) *T { return &v }

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
		// pgx sends NULL for a nil slice and '' for an empty one.
		{"nil vs empty bytes", []keyCall{kc([]byte(nil)), kc([]byte{})}},
		{"nil vs empty named bytes", []keyCall{kc(rawBytes(nil)), kc(rawBytes{})}},
		{"nil vs empty json.RawMessage", []keyCall{kc(json.RawMessage(nil)), kc(json.RawMessage{})}},
		// pgx sends a nil slice as NULL, an empty one as '{}' or '[]'.
		{"nil vs empty slices", []keyCall{kc(nil), kc([]int(nil)), kc([]int{}), kc([]string{})}},
		// pgx formats float32 with 32-bit precision: "0.1", not "0.10000000149011612".
		{"float32 vs float64", []keyCall{kc(float32(0.1)), kc(float64(float32(0.1)))}},
		{"named float32 vs float64", []keyCall{kc(myFloat(0.1)), kc(float64(float32(0.1)))}},
		// pgx sends json.RawMessage as json, []byte as bytea, net.IP as inet.
		{"named byte slices", []keyCall{kc(json.RawMessage(`{}`)), kc([]byte(`{}`)), kc(net.IP{1, 2, 3, 4}), kc([]byte{1, 2, 3, 4})}},
		{"slice types", []keyCall{kc([]int{1, 2}), kc([]any{1, 2}), kc([2]int64{1, 2}), kc([]uint{1, 2}), kc([]myByte{1, 2}), kc([]int{2, 1})}},
		// pgx sends [16]byte as a uuid.
		{"uuid array vs bytes", []keyCall{kc([16]byte{1}), kc(make([]byte, 16)), kc([16]uint16{1}), kc(uuidLike{1})}},
		{"duration vs int", []keyCall{kc(time.Second), kc(int64(time.Second))}},
		{"methods vs kind", []keyCall{kc(7), kc(intStringer(7)), kc(int64Valuer(7)), kc("x"), kc(textValuerStr("x"))}},
		{"pointer with methods vs value", []keyCall{kc(intStringer(7)), kc(ptrTo(intStringer(7)))}},
		{"valuer results", []keyCall{kc(dynValuer{nil}), kc(dynValuer{""}), kc(dynValuer{[]byte(nil)}), kc(dynValuer{[]byte{}})}},
		{"valuer types", []keyCall{kc(valuerX{}), kc(&ptrValuer{"x"}), kc(&valuerX{}), kc("x")}},
		{"valuer contents", []keyCall{kc(mixedValuer{"a"}), kc(mixedValuer{"b"})}},
		{"pgtype contents", []keyCall{kc(pgtype.Text{String: "a"}), kc(pgtype.Text{String: "b"})}},
		{"uint64 above int64", []keyCall{kc(uint64(math.MaxUint64)), kc(int64(-1))}},
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
		// Signed widths are normalised: pgx encodes them all through
		// Int64Value and database/sql converts them to int64.
		{"signed widths", []keyCall{kc(5), kc(int64(5)), kc(int32(5)), kc(int16(5)), kc(int8(5)), kc(userID(5))}},
		{"unsigned widths", []keyCall{kc(uint(5)), kc(uint8(5)), kc(uint16(5)), kc(uint32(5)), kc(uint64(5))}},
		{"float32 widths", []keyCall{kc(float32(1.5)), kc(myFloat(1.5))}},
		{"monotonic reading ignored", []keyCall{kc(now), kc(now.Round(0))}},
		{"pointer vs value", []keyCall{kc(s, i), kc(&s, pi), kc(&s, &pi)}},
		// A named string type without methods encodes like string: pgx
		// converts it to its underlying kind.
		{"named string type", []keyCall{kc(status("x")), kc("x")}},
		{"named bytes without methods", []keyCall{kc(rawBytes(`{}`)), kc([]byte(`{}`))}},
		{"nil named bytes", []keyCall{kc(rawBytes(nil)), kc([]byte(nil))}},
		{"nil pointers are nil", []keyCall{kc(nil), kc((*string)(nil)), kc((*valuerX)(nil)), kc((*intStringer)(nil))}},
		{"list of pointers", []keyCall{kc([]*int{pi}), kc([]*int{&i})}},
		{"valuer result", []keyCall{kc(&ptrValuer{"x"}), kc(&ptrValuer{"x"})}},
		{"unwalkable valuer", []keyCall{kc(mapValuer{"a": "b"}), kc(mapValuer{"a": "b"})}},
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
// than from Query's own helpers.
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
			lp("gormflight/key/v2"), lp("postgres"), lp("test"), lp("SELECT 1"),
			[]byte{2},
			[]byte{0x03, 0, 0, 0, 0, 0, 0, 0, 1}, // int64(1)
			[]byte{0x06}, lp("a"),                // "a"
			[]byte{1}, lp("t"),
		)
		// Also computed outside Go: printf '\x11gormflight/key/v2\x08postgres...' | sha256sum
		const golden = "04fe3ed305b6f4b76576b23d705dec2b"
		if h := hash(enc); h != golden {
			t.Fatalf("hand-built encoding hashes to %s, want %s", h, golden)
		}
		got := mustKey(t, keyCall{"postgres", "test", "SELECT 1", []any{int64(1), "a"}, []string{"t"}})
		if got != golden {
			t.Errorf("Query = %s, want %s", got, golden)
		}
		if !keyFormat.MatchString(got) {
			t.Errorf("key %q is not 32 lower-case hex chars", got)
		}
	})

	t.Run("time named list valuer nil", func(t *testing.T) {
		ts := time.Unix(0x01020304, 5).In(time.FixedZone("X", 3600))
		enc := cat(
			lp("gormflight/key/v2"), lp("mysql"), lp("db"), lp("q"),
			[]byte{5},
			[]byte{0x08, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 5}, lp("X"),
			[]byte{0, 0, 0, 0, 0, 0, 0x0e, 0x10}, lp("X"), // offset 3600, location name
			[]byte{0x0a}, lp("n"), []byte{0x02, 1}, // sql.Named("n", true)
			// []any{uint8(7), []byte{0xff}}: type, non-nil, count, elements
			[]byte{0x0b}, lp("[]interface {}"), []byte{1, 2, 0x04, 0, 0, 0, 0, 0, 0, 0, 7, 0x07, 1, 0xff},
			// valuerX{}: type (named with the path of the package this test is in),
			// Value() result, raw contents (no fields)
			[]byte{0x09}, lp("github.com/gormflight/gormflight/internal/cachekey.valuerX"), []byte{0x06}, lp("x"), []byte{1},
			[]byte{0x01}, // nil
			[]byte{0},
		)
		args := []any{ts, sql.Named("n", true), []any{uint8(7), []byte{0xff}}, valuerX{}, nil}
		if got, want := mustKey(t, keyCall{"mysql", "db", "q", args, nil}), hash(enc); got != want {
			t.Errorf("Query = %s, want %s", got, want)
		}
	})

	t.Run("nil bytes float32 typed", func(t *testing.T) {
		enc := cat(
			lp("gormflight/key/v2"), lp("postgres"), lp("db"), lp("q"),
			[]byte{4},
			[]byte{0x0d},                      // []byte(nil)
			[]byte{0x07, 0},                   // []byte{}
			[]byte{0x0c, 0x3f, 0xc0, 0, 0},    // float32(1.5)
			[]byte{0x0e}, lp("time.Duration"), // time.Second: type,
			[]byte{0x03, 0, 0, 0, 0, 0x3b, 0x9a, 0xca, 0}, // then its int64
			[]byte{0},
		)
		args := []any{[]byte(nil), []byte{}, float32(1.5), time.Second}
		if got, want := mustKey(t, keyCall{"postgres", "db", "q", args, nil}), hash(enc); got != want {
			t.Errorf("Query = %s, want %s", got, want)
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
		{"map", map[string]int{"a": 1}, ErrUnkeyable},
		{"nil map", map[string]int(nil), ErrUnkeyable},
		{"struct", struct{ X int }{}, ErrUnkeyable},
		{"chan", make(chan int), ErrUnkeyable},
		{"func", func() {}, ErrUnkeyable},
		{"complex", complex(1, 2), ErrUnkeyable},
		{"nested in slice", []any{1, map[string]int{}}, ErrUnkeyable},
		{"self-referencing slice", self, ErrUnkeyable},
		{"valuer error", errValuer{}, errValuerBoom},
		// pgx calls a pointer-receiver Value on a nil pointer: only the
		// method knows what that sends.
		{"nil pointer-receiver valuer", (*ptrValuer)(nil), ErrUnkeyable},
		{"query rewriter", rewriter("x"), ErrUnkeyable},
		{"unwalkable valuer with TextValue", mapTextValuer{}, ErrUnkeyable},
		{"big.Int", big.NewInt(1), ErrUnkeyable},
		{"netip.Addr", netip.MustParseAddr("1.2.3.4"), ErrUnkeyable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := Query("postgres", "app", "q", []any{"ok", tt.arg}, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want errors.Is %v", err, tt.want)
			}
			if k != "" {
				t.Errorf("key = %q alongside error", k)
			}
		})
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
			k, err := Query("postgres", "db", query, args, []string{a})
			if err != nil {
				t.Fatalf("Query: %v", err)
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
		// []byte(a) is never nil, so b must not be either for the swap to
		// give the same arguments: a nil slice is NULL, an empty one is not.
		swapped := key(string(b), []byte(a))
		if same := a == string(b) && b != nil; (key(a, b) == swapped) != same {
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
		if _, err := Query("postgres", "shop", query, args, tables); err != nil {
			b.Fatal(err)
		}
	}
}
