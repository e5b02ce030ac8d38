package gormflight

import (
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"time"
)

// errUnkeyable marks arguments that have no stable encoding. The caller runs
// such queries uncached instead of failing them.
var errUnkeyable = errors.New("gormflight: argument type cannot be part of a cache key")

// keyVersion starts every encoding. Bump it whenever the layout below changes
// so that old entries in Redis can never be mistaken for new ones.
const keyVersion = "gormflight/key/v1"

// Value tags. The numbers are part of the key format (see keyVersion): never
// renumber them, only add new ones.
const (
	tagNil    byte = 0x01
	tagBool   byte = 0x02 // + 1 byte, 0 or 1
	tagInt    byte = 0x03 // + 8 bytes big-endian two's complement
	tagUint   byte = 0x04 // + 8 bytes big-endian
	tagFloat  byte = 0x05 // + 8 bytes big-endian IEEE 754 bits
	tagString byte = 0x06 // + uvarint length + bytes
	tagBytes  byte = 0x07 // + uvarint length + bytes
	tagTime   byte = 0x08 // + 8 bytes Unix seconds, 4 bytes nanoseconds, zone name, 8 bytes offset, location name
	tagValuer byte = 0x09 // + encoded result of Value()
	tagNamed  byte = 0x0a // + name (uvarint length + bytes) + encoded value
	tagList   byte = 0x0b // + uvarint count + encoded elements
)

// maxDepth bounds recursion so that a self-referencing []any or a Valuer that
// returns itself yields an error instead of a stack overflow.
const maxDepth = 32

// maxPooledBuf keeps one query with huge arguments from pinning a large
// buffer in the pool forever.
const maxPooledBuf = 64 << 10

var keyBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// queryKey returns the identifier of one query: the lower-case hex encoding of the first 16 bytes
// (128 bits) of SHA-256 over an unambiguous encoding of a format version, dialect, database,
// SQL text, the typed argument values, and the declared table names.
//
// Layout (strings are uvarint length + bytes, counts are uvarint):
//
//	string(keyVersion) string(dialect) string(database) string(query)
//	count(args) value(args[0]) ... count(tables) string(tables[0]) ...
//
// where each value is a tag byte followed by the payload documented at the tags.
// Signed integers of every width share tagInt, unsigned share tagUint, float32
// is widened to float64, and named types encode like their underlying kind:
// database/sql normalises all of these the same way before they reach the
// database, so distinguishing them would only cost cache hits.
func queryKey(dialect, database, query string, args []any, tables []string) (string, error) {
	bp := keyBufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= maxPooledBuf {
			*bp = buf[:0]
			keyBufPool.Put(bp)
		}
	}()

	buf = appendString(buf, keyVersion)
	buf = appendString(buf, dialect)
	buf = appendString(buf, database)
	buf = appendString(buf, query)
	buf = binary.AppendUvarint(buf, uint64(len(args)))
	for _, a := range args {
		var err error
		if buf, err = appendValue(buf, a, 0); err != nil {
			return "", err
		}
	}
	buf = binary.AppendUvarint(buf, uint64(len(tables)))
	for _, t := range tables {
		buf = appendString(buf, t)
	}

	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:16]), nil
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func appendInt(buf []byte, i int64) []byte {
	return binary.BigEndian.AppendUint64(append(buf, tagInt), uint64(i))
}

func appendUint(buf []byte, u uint64) []byte {
	return binary.BigEndian.AppendUint64(append(buf, tagUint), u)
}

// appendFloat uses the raw bits so that -0.0 and 0.0 stay apart and NaN
// encodes the same way every time (== would treat them otherwise).
func appendFloat(buf []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(buf, tagFloat), math.Float64bits(f))
}

func appendBytes(buf []byte, b []byte) []byte {
	buf = binary.AppendUvarint(append(buf, tagBytes), uint64(len(b)))
	return append(buf, b...)
}

func appendBool(buf []byte, b bool) []byte {
	if b {
		return append(buf, tagBool, 1)
	}
	return append(buf, tagBool, 0)
}

// appendTime includes the location because drivers may render the same
// instant differently per zone (e.g. into timestamp without time zone).
func appendTime(buf []byte, t time.Time) []byte {
	// Nothing below reads the monotonic clock; stripping it documents that it
	// must never influence the key.
	t = t.Round(0)
	name, offset := t.Zone()
	buf = append(buf, tagTime)
	buf = binary.BigEndian.AppendUint64(buf, uint64(t.Unix()))
	buf = binary.BigEndian.AppendUint32(buf, uint32(t.Nanosecond()))
	buf = appendString(buf, name)
	buf = binary.BigEndian.AppendUint64(buf, uint64(int64(offset)))
	return appendString(buf, t.Location().String())
}

func appendValue(buf []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return buf, fmt.Errorf("%w: nested deeper than %d levels", errUnkeyable, maxDepth)
	}

	// Fast path: the concrete types GORM passes most often, without reflect.
	switch x := v.(type) {
	case nil:
		return append(buf, tagNil), nil
	case string:
		return appendString(append(buf, tagString), x), nil
	case int:
		return appendInt(buf, int64(x)), nil
	case int64:
		return appendInt(buf, x), nil
	case int32:
		return appendInt(buf, int64(x)), nil
	case uint:
		return appendUint(buf, uint64(x)), nil
	case float64:
		return appendFloat(buf, x), nil
	case bool:
		return appendBool(buf, x), nil
	case time.Time:
		return appendTime(buf, x), nil
	case []byte:
		return appendBytes(buf, x), nil
	case sql.NamedArg:
		buf = appendString(append(buf, tagNamed), x.Name)
		return appendValue(buf, x.Value, depth+1)
	}

	rv := reflect.ValueOf(v)

	// Valuers come before the kind switch: their Value() result, not their
	// Go representation, is what the database sees.
	if vr, ok := v.(driver.Valuer); ok {
		// Calling Value on a nil pointer would panic for value receivers and
		// usually for pointer receivers too; treat it as NULL.
		if rv.Kind() == reflect.Pointer && rv.IsNil() {
			return append(buf, tagNil), nil
		}
		dv, err := vr.Value()
		if err != nil {
			return buf, fmt.Errorf("gormflight: cache key: %T.Value: %w", v, err)
		}
		return appendValue(append(buf, tagValuer), dv, depth+1)
	}

	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return append(buf, tagNil), nil
		}
		return appendValue(buf, rv.Elem().Interface(), depth+1)
	case reflect.Bool:
		return appendBool(buf, rv.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendInt(buf, rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return appendUint(buf, rv.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return appendFloat(buf, rv.Float()), nil
	case reflect.String:
		return appendString(append(buf, tagString), rv.String()), nil
	case reflect.Slice, reflect.Array:
		// Covers json.RawMessage and other named byte slices.
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			return appendBytes(buf, rv.Bytes()), nil
		}
		n := rv.Len()
		buf = binary.AppendUvarint(append(buf, tagList), uint64(n))
		for i := 0; i < n; i++ {
			var err error
			if buf, err = appendValue(buf, rv.Index(i).Interface(), depth+1); err != nil {
				return buf, err
			}
		}
		return buf, nil
	}
	return buf, fmt.Errorf("%w: %T", errUnkeyable, v)
}
