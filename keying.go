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
//
// v2: nil byte slices, float32, typed values and list types are told apart.
const keyVersion = "gormflight/key/v2"

// Value tags. The numbers are part of the key format (see keyVersion): never
// renumber them, only add new ones.
const (
	tagNil      byte = 0x01
	tagBool     byte = 0x02 // + 1 byte, 0 or 1
	tagInt      byte = 0x03 // + 8 bytes big-endian two's complement
	tagUint     byte = 0x04 // + 8 bytes big-endian
	tagFloat    byte = 0x05 // float64 + 8 bytes big-endian IEEE 754 bits
	tagString   byte = 0x06 // + uvarint length + bytes
	tagBytes    byte = 0x07 // non-nil byte slice + uvarint length + bytes
	tagTime     byte = 0x08 // + 8 bytes Unix seconds, 4 bytes nanoseconds, zone name, 8 bytes offset, location name
	tagValuer   byte = 0x09 // + type + encoded result of Value() + raw state (see appendRaw) or 0x00
	tagNamed    byte = 0x0a // + name (uvarint length + bytes) + encoded value
	tagList     byte = 0x0b // + type + 0x00 for a nil slice, or 0x01 + uvarint count + encoded elements
	tagFloat32  byte = 0x0c // + 4 bytes big-endian IEEE 754 bits
	tagNilBytes byte = 0x0d // nil byte slice
	tagTyped    byte = 0x0e // + type + encoded underlying value
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
//
// Two arguments may share an encoding only where every driver sends them
// identically. pgx, behind database/sql, receives arguments unconverted and
// picks its encoding by Go type: float32 is formatted with 32-bit precision,
// nil slices are NULL while empty ones are not, json.RawMessage is json where
// []byte is bytea, and methods (String, TextValue, Int64Value, Value, ...)
// override the underlying kind. So only types without methods are normalised:
// signed integers of every width share tagInt, unsigned share tagUint, named
// scalar types encode like their kind, and a pointer is its target. Any type
// with methods, and every slice or array type, is keyed by its name.
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

// appendFloat32 keeps float32 apart from float64: pgx formats a float32 with
// 32-bit precision ("0.1"), the same number widened prints as
// "0.10000000149011612".
func appendFloat32(buf []byte, f float32) []byte {
	return binary.BigEndian.AppendUint32(append(buf, tagFloat32), math.Float32bits(f))
}

// appendBytes keeps a nil slice apart from an empty one: drivers send NULL
// for the first and an empty value for the second.
func appendBytes(buf []byte, b []byte) []byte {
	if b == nil {
		return append(buf, tagNilBytes)
	}
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
	if _, ok := rv.Type().MethodByName("RewriteQuery"); ok {
		// A pgx.QueryRewriter replaces the SQL and arguments with whatever
		// it computes; the key cannot know what that is.
		return buf, fmt.Errorf("%w: %T rewrites the query", errUnkeyable, v)
	}
	// Valuers come before the kind switch: their Value() result, not their
	// Go representation, is what most drivers see.
	if vr, ok := v.(driver.Valuer); ok {
		return appendValuer(buf, vr, rv, depth)
	}
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return append(buf, tagNil), nil
		}
		if rv.Type().NumMethod() == 0 {
			return appendValue(buf, rv.Elem().Interface(), depth+1)
		}
	}
	if rv.Type().NumMethod() > 0 {
		// Methods may change what the driver sends (pgx consults String,
		// TextValue, Int64Value, ... before the underlying kind), and two
		// values of one type with equal contents call them alike.
		buf = appendType(append(buf, tagTyped), rv.Type())
		if rv.Kind() == reflect.Pointer {
			return appendValue(buf, rv.Elem().Interface(), depth+1)
		}
	}
	return appendKind(buf, rv, depth)
}

// appendKind encodes v by its kind, as drivers do for a type without methods.
func appendKind(buf []byte, rv reflect.Value, depth int) ([]byte, error) {
	switch rv.Kind() {
	case reflect.Bool:
		return appendBool(buf, rv.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendInt(buf, rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return appendUint(buf, rv.Uint()), nil
	case reflect.Float32:
		return appendFloat32(buf, float32(rv.Float())), nil
	case reflect.Float64:
		return appendFloat(buf, rv.Float()), nil
	case reflect.String:
		return appendString(append(buf, tagString), rv.String()), nil
	case reflect.Struct:
		if t, ok := rv.Interface().(time.Time); ok {
			return appendTime(buf, t), nil
		}
	case reflect.Slice, reflect.Array:
		// Only an element type of exactly byte makes a byte string: pgx
		// treats []myByte as an array of small integers.
		if rv.Kind() == reflect.Slice && rv.Type().Elem() == byteType {
			return appendBytes(buf, rv.Bytes()), nil
		}
		return appendList(buf, rv, depth)
	}
	return buf, fmt.Errorf("%w: %s", errUnkeyable, rv.Type())
}

var byteType = reflect.TypeFor[byte]()

// appendList keys a slice or array by its type as well as its elements:
// drivers choose the array type from the Go element type ([]int is int8[],
// [16]byte a uuid), and a nil slice is NULL where an empty one is '{}'.
func appendList(buf []byte, rv reflect.Value, depth int) ([]byte, error) {
	buf = appendType(append(buf, tagList), rv.Type())
	if rv.Kind() == reflect.Slice && rv.IsNil() {
		return append(buf, 0), nil
	}
	n := rv.Len()
	buf = binary.AppendUvarint(append(buf, 1), uint64(n))
	for i := 0; i < n; i++ {
		var err error
		if buf, err = appendValue(buf, rv.Index(i).Interface(), depth+1); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// appendValuer keys a driver.Valuer by its type, its Value() result and its
// raw contents. The raw contents matter because pgx prefers its own
// interfaces (TextValue, Int64Value, ...) to Value when a type has both.
func appendValuer(buf []byte, vr driver.Valuer, rv reflect.Value, depth int) ([]byte, error) {
	t := rv.Type()
	if rv.Kind() == reflect.Pointer && rv.IsNil() {
		// A nil pointer whose target has Value is NULL to database/sql and
		// pgx alike; with a pointer receiver they call Value on nil, which
		// only the method knows the outcome of (often a panic).
		if t.Elem().Implements(valuerType) {
			return append(buf, tagNil), nil
		}
		return buf, fmt.Errorf("%w: nil %s with a pointer-receiver Value", errUnkeyable, t)
	}
	dv, err := vr.Value()
	if err != nil {
		return buf, fmt.Errorf("gormflight: cache key: %s.Value: %w", t, err)
	}
	buf = appendType(append(buf, tagValuer), t)
	if buf, err = appendValue(buf, dv, depth+1); err != nil {
		return buf, err
	}
	if raw, ok := appendRaw(append(buf, 1), rv, depth+1); ok {
		return raw, nil
	}
	if hasEncoderMethods(t) {
		return buf, fmt.Errorf("%w: %s has encoding methods besides Value and contents that cannot be keyed", errUnkeyable, t)
	}
	return append(buf, 0), nil
}

var valuerType = reflect.TypeFor[driver.Valuer]()

// valuerOnlyMethods are methods pgx and database/sql never consult for a
// driver.Valuer (pgx checks Valuer before json.Marshaler). A Valuer with any
// other method might be encoded through it instead of Value.
var valuerOnlyMethods = map[string]bool{
	"Value": true, "String": true, "Error": true, "MarshalJSON": true, "MarshalText": true,
	"GormDataType": true, "GormDBDataType": true,
}

func hasEncoderMethods(t reflect.Type) bool {
	for i := 0; i < t.NumMethod(); i++ {
		if !valuerOnlyMethods[t.Method(i).Name] {
			return true
		}
	}
	return false
}

// appendRaw encodes the memory of rv, unexported fields included, for a value
// whose type is already in the key. It reports false for contents with no
// stable encoding (maps, funcs, channels, cycles).
func appendRaw(buf []byte, rv reflect.Value, depth int) ([]byte, bool) {
	if depth > maxDepth {
		return buf, false
	}
	switch rv.Kind() {
	case reflect.Bool:
		return appendBool(buf, rv.Bool()), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendInt(buf, rv.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return appendUint(buf, rv.Uint()), true
	case reflect.Float32, reflect.Float64:
		return appendFloat(buf, rv.Float()), true
	case reflect.Complex64, reflect.Complex128:
		c := rv.Complex()
		return appendFloat(appendFloat(buf, real(c)), imag(c)), true
	case reflect.String:
		return appendString(append(buf, tagString), rv.String()), true
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return append(buf, tagNil), true
		}
		if rv.Kind() == reflect.Interface {
			buf = appendType(append(buf, tagTyped), rv.Elem().Type())
		}
		return appendRaw(append(buf, 1), rv.Elem(), depth+1)
	case reflect.Slice:
		if rv.IsNil() {
			return append(buf, tagNil), true
		}
		fallthrough
	case reflect.Array:
		buf = binary.AppendUvarint(append(buf, tagList), uint64(rv.Len()))
		for i := 0; i < rv.Len(); i++ {
			var ok bool
			if buf, ok = appendRaw(buf, rv.Index(i), depth+1); !ok {
				return buf, false
			}
		}
		return buf, true
	case reflect.Struct:
		for i := 0; i < rv.NumField(); i++ {
			var ok bool
			if buf, ok = appendRaw(buf, rv.Field(i), depth+1); !ok {
				return buf, false
			}
		}
		return buf, true
	}
	return buf, false
}

var typeNames sync.Map // reflect.Type -> string

// appendType appends a name that tells apart types from different packages
// that share a short name (reflect's String gives only the package name).
func appendType(buf []byte, t reflect.Type) []byte {
	name, ok := typeNames.Load(t)
	if !ok {
		name, _ = typeNames.LoadOrStore(t, typeName(t))
	}
	return appendString(buf, name.(string))
}

func typeName(t reflect.Type) string {
	if t.Name() != "" {
		if t.PkgPath() == "" {
			return t.Name()
		}
		return t.PkgPath() + "." + t.Name()
	}
	switch t.Kind() {
	case reflect.Pointer:
		return "*" + typeName(t.Elem())
	case reflect.Slice:
		return "[]" + typeName(t.Elem())
	case reflect.Array:
		return fmt.Sprintf("[%d]%s", t.Len(), typeName(t.Elem()))
	case reflect.Map:
		return "map[" + typeName(t.Key()) + "]" + typeName(t.Elem())
	}
	return t.String()
}
