package cachekey

import (
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// This file holds FuzzKeyDistinguishes, a differential fuzz of keys against
// what pgx sends, with its argument generators. It needs pgx only as a
// library: no server.

// fuzzBase carries a monotonic clock reading, which a key must ignore.
var fuzzBase = time.Now()

// fuzzGens builds one argument from a fuzz payload each. The classes are the
// ways drivers tell values apart: nil against empty, widths, named types,
// methods, pointers, slices against arrays, zones, Valuers.
var fuzzGens = []func(p []byte) any{
	func(p []byte) any { return nil },
	func(p []byte) any { return string(p) },
	func(p []byte) any { return status(p) },
	func(p []byte) any { return ptrTo(string(p)) },
	func(p []byte) any { return ptrTo(ptrTo(string(p))) },
	func(p []byte) any { return (*string)(nil) },
	func(p []byte) any { return textValuerStr(p) },
	func(p []byte) any { return p },
	func(p []byte) any { return []byte(nil) },
	func(p []byte) any { return append([]byte{}, p...) },
	func(p []byte) any { return json.RawMessage(p) },
	func(p []byte) any { return json.RawMessage(nil) },
	func(p []byte) any { return rawBytes(p) },
	func(p []byte) any { return rawBytes(nil) },
	func(p []byte) any { return net.IP(p) },
	func(p []byte) any { return bytesAs[myByte](p) },
	func(p []byte) any { var a [16]byte; copy(a[:], p); return a },
	func(p []byte) any { var a uuidLike; copy(a[:], p); return a },
	func(p []byte) any { var a [4]byte; copy(a[:], p); return a },
	func(p []byte) any { return int(fuzzInt(p)) },
	func(p []byte) any { return int8(fuzzInt(p)) },
	func(p []byte) any { return int16(fuzzInt(p)) },
	func(p []byte) any { return int32(fuzzInt(p)) },
	func(p []byte) any { return fuzzInt(p) },
	func(p []byte) any { return userID(fuzzInt(p)) },
	func(p []byte) any { return uint8(fuzzInt(p)) },
	func(p []byte) any { return uint16(fuzzInt(p)) },
	func(p []byte) any { return uint32(fuzzInt(p)) },
	func(p []byte) any { return uint64(fuzzInt(p)) },
	func(p []byte) any { return uint(fuzzInt(p)) },
	func(p []byte) any { return intStringer(fuzzInt(p)) },
	func(p []byte) any { return int64Valuer(fuzzInt(p)) },
	func(p []byte) any { return time.Duration(fuzzInt(p)) },
	func(p []byte) any { return ptrTo(int(fuzzInt(p))) },
	func(p []byte) any { return (*int)(nil) },
	func(p []byte) any { return math.Float64frombits(uint64(fuzzInt(p))) },
	func(p []byte) any { return math.Float32frombits(uint32(fuzzInt(p))) },
	func(p []byte) any { return float64(math.Float32frombits(uint32(fuzzInt(p)))) },
	func(p []byte) any { return float64(fuzzInt(p)) },
	func(p []byte) any { return float32(fuzzInt(p)) },
	func(p []byte) any { return myFloat(math.Float32frombits(uint32(fuzzInt(p)))) },
	func(p []byte) any { return len(p) > 0 && p[0]&1 == 1 },
	func(p []byte) any { return fuzzTime(p) },
	func(p []byte) any { return fuzzTime(p).Round(0) },
	func(p []byte) any { return []int(nil) },
	func(p []byte) any { return []int{} },
	func(p []byte) any { return intsAs[int](p) },
	func(p []byte) any { return intsAs[int64](p) },
	func(p []byte) any { return intsAs[int32](p) },
	func(p []byte) any { return anysOf(p) },
	func(p []byte) any { return []string(nil) },
	func(p []byte) any { return []string{} },
	func(p []byte) any { return fuzzStrings(p) },
	func(p []byte) any { return []any{string(p), nil} },
	func(p []byte) any { return []*int{nil, ptrTo(int(fuzzInt(p)))} },
	func(p []byte) any { var a [2]int64; copy(a[:], intsAs[int64](p)); return a },
	func(p []byte) any { return [][]byte{p, nil} },
	func(p []byte) any { return map[string]string(nil) },
	func(p []byte) any { return dynValuer{nil} },
	func(p []byte) any { return dynValuer{""} },
	func(p []byte) any { return dynValuer{string(p)} },
	func(p []byte) any { return dynValuer{[]byte(nil)} },
	func(p []byte) any { return dynValuer{append([]byte{}, p...)} },
	func(p []byte) any { return dynValuer{fuzzInt(p)} },
	func(p []byte) any { return mixedValuer{string(p)} },
	func(p []byte) any { return mapValuer{"k": string(p)} },
	func(p []byte) any { return (*valuerX)(nil) },
	func(p []byte) any { return &ptrValuer{string(p)} },
	func(p []byte) any { return pgtype.Text{String: string(p), Valid: len(p) > 0 && p[0]&1 == 1} },
	func(p []byte) any { return pgtype.Int8{Int64: fuzzInt(p), Valid: len(p) > 0} },
	func(p []byte) any { return pgtype.Float8{Float64: float64(fuzzInt(p)), Valid: true} },
	func(p []byte) any { return pgtype.Bool{Bool: len(p) > 0 && p[0]&1 == 1, Valid: true} },
	func(p []byte) any {
		return pgtype.Numeric{Int: big.NewInt(fuzzInt(p)), Exp: int32(len(p)%5) - 2, Valid: true}
	},
	func(p []byte) any { return pgtype.Timestamptz{Time: fuzzTime(p), Valid: true} },
	func(p []byte) any { var u pgtype.UUID; copy(u.Bytes[:], p); u.Valid = true; return u },
	func(p []byte) any { return sql.NullString{String: string(p), Valid: len(p) > 0} },
	func(p []byte) any { return sql.NullInt64{Int64: fuzzInt(p), Valid: true} },
	func(p []byte) any { return sql.Null[[]byte]{V: p, Valid: true} },
	func(p []byte) any { return netip.AddrFrom4([4]byte(append(append([]byte{}, p...), 0, 0, 0, 0)[:4])) },
}

// fuzzInt reads up to 8 bytes big-endian, so that short payloads give the
// same small number to every width.
func fuzzInt(p []byte) int64 {
	var n uint64
	for i := 0; i < len(p) && i < 8; i++ {
		n = n<<8 | uint64(p[i])
	}
	return int64(n)
}

func bytesAs[T ~uint8](p []byte) []T {
	out := make([]T, len(p))
	for i, b := range p {
		out[i] = T(b)
	}
	return out
}

func intsAs[T ~int | ~int32 | ~int64](p []byte) []T {
	out := make([]T, 0, len(p))
	for _, b := range p {
		out = append(out, T(b))
	}
	return out
}

func anysOf(p []byte) []any {
	out := make([]any, 0, len(p))
	for _, b := range p {
		out = append(out, int(b))
	}
	return out
}

func fuzzStrings(p []byte) []string {
	var out []string
	for len(p) > 0 {
		n := min(int(p[0]%4), len(p)-1)
		out = append(out, string(p[1:1+n]))
		p = p[1+n:]
	}
	return out
}

// fuzzTime picks an instant, a zone and whether to keep fuzzBase's
// monotonic reading from p.
func fuzzTime(p []byte) time.Time {
	n := fuzzInt(p)
	t := fuzzBase.Add(time.Duration(n % (1 << 50)))
	zones := []*time.Location{time.UTC, time.FixedZone("UTC", 0), time.FixedZone("", 0), time.FixedZone("X", 3600), time.FixedZone("X", -3600)}
	if len(p) > 0 {
		t = t.In(zones[int(p[len(p)-1])%len(zones)])
	}
	return t
}

// fuzzOIDs are parameter types the server may describe. 16385 stands for
// one pgx does not know (an enum, a domain), which it encodes by Go type.
var fuzzOIDs = []uint32{
	pgtype.TextOID, pgtype.VarcharOID, pgtype.ByteaOID, pgtype.Int8OID, pgtype.Int4OID, pgtype.Int2OID,
	pgtype.Float8OID, pgtype.Float4OID, pgtype.NumericOID, pgtype.BoolOID, pgtype.TimestamptzOID,
	pgtype.TimestampOID, pgtype.DateOID, pgtype.JSONBOID, pgtype.JSONOID, pgtype.TextArrayOID,
	pgtype.Int8ArrayOID, pgtype.ByteaArrayOID, pgtype.UUIDOID, pgtype.IntervalOID, pgtype.InetOID, 16385,
}

// pgxEncoding is what pgx makes of one argument: NULL, bytes, or an error.
func pgxEncoding(m *pgtype.Map, oid uint32, format int16, v any) (enc string) {
	defer func() {
		if r := recover(); r != nil {
			enc = "panic"
		}
	}()
	// A non-nil buffer, as pgx's ExtendedQueryBuilder passes, so that an
	// empty value is not mistaken for NULL.
	buf, err := m.Encode(oid, format, v, make([]byte, 0, 16))
	switch {
	case err != nil:
		return "error"
	case buf == nil:
		return "NULL"
	}
	return "value " + hex.EncodeToString(buf)
}

// pgxWire is what pgx sends for one argument, format choice and fallback
// included: sd nil is QueryExecModeExec (text, parameter type left to the
// server); otherwise the extended protocol with the described type.
func pgxWire(m *pgtype.Map, sd *pgconn.StatementDescription, v any) (wire string) {
	defer func() {
		if r := recover(); r != nil {
			wire = "panic"
		}
	}()
	var eqb pgx.ExtendedQueryBuilder
	if err := eqb.Build(m, sd, []any{v}); err != nil {
		return "error"
	}
	if eqb.ParamValues[0] == nil {
		return "NULL"
	}
	return fmt.Sprintf("format %d value %x", eqb.ParamFormats[0], eqb.ParamValues[0])
}

// pgxDiff reports how pgx treats a and b differently, if at all: for every
// described parameter type in either format, in the extended protocol as
// sent, and as text for QueryExecModeExec and the simple protocol (whose
// convertSimpleArgument is Encode(0, text), then quoting that text alone).
func pgxDiff(m *pgtype.Map, a, b any) string {
	if ea, eb := pgxEncoding(m, 0, pgtype.TextFormatCode, a), pgxEncoding(m, 0, pgtype.TextFormatCode, b); ea != eb {
		return fmt.Sprintf("simple protocol: %s vs %s", ea, eb)
	}
	if wa, wb := pgxWire(m, nil, a), pgxWire(m, nil, b); wa != wb {
		return fmt.Sprintf("exec mode: %s vs %s", wa, wb)
	}
	for _, oid := range fuzzOIDs {
		sd := &pgconn.StatementDescription{ParamOIDs: []uint32{oid}}
		if wa, wb := pgxWire(m, sd, a), pgxWire(m, sd, b); wa != wb {
			return fmt.Sprintf("extended protocol, oid %d: %s vs %s", oid, wa, wb)
		}
		if oid == 16385 {
			continue // never encoded in a format other than the one chosen above
		}
		for _, format := range []int16{pgtype.TextFormatCode, pgtype.BinaryFormatCode} {
			if ea, eb := pgxEncoding(m, oid, format, a), pgxEncoding(m, oid, format, b); ea != eb {
				return fmt.Sprintf("oid %d format %d: %s vs %s", oid, format, ea, eb)
			}
		}
	}
	return ""
}

// FuzzKeyDistinguishes is a differential fuzz of the key against pgx: two
// arguments that share a key must be encoded identically by pgx for every
// parameter type in both formats. The arguments come from one payload (or
// two) through two generator classes, so that same-valued arguments of
// different types are tried.
func FuzzKeyDistinguishes(f *testing.F) {
	for i := range fuzzGens {
		f.Add(uint8(i), uint8(i), true, []byte{}, []byte{})
		f.Add(uint8(i), uint8(i+1), true, []byte{1}, []byte{})
	}
	f.Add(uint8(7), uint8(8), true, []byte{}, []byte{}) // []byte{} vs []byte(nil)
	f.Add(uint8(36), uint8(37), true, []byte{0x3d, 0xcc, 0xcc, 0xcd}, []byte{})
	f.Add(uint8(1), uint8(6), true, []byte("x"), []byte{})

	m := pgtype.NewMap()
	f.Fuzz(func(t *testing.T, ga, gb uint8, same bool, pa, pb []byte) {
		if same {
			pb = pa
		}
		a := fuzzGens[int(ga)%len(fuzzGens)](pa)
		b := fuzzGens[int(gb)%len(fuzzGens)](pb)
		ka, erra := Query("postgres", "db", "q", []any{a}, nil)
		kb, errb := Query("postgres", "db", "q", []any{b}, nil)
		if erra != nil || errb != nil || ka != kb {
			return
		}
		if d := pgxDiff(m, a, b); d != "" {
			t.Fatalf("%T %#v and %T %#v share key %s but pgx tells them apart: %s", a, a, b, b, ka, d)
		}
	})
}
