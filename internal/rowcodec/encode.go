package rowcodec

import (
	"bytes"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Version is the version of the encoding, the first value of every encoded
// entry. Decode refuses any other.
const Version = 2

// maxBareRows caps the rows of an entry with no columns, whose rows take
// no bytes: Decode cannot bound their number by the input's size.
const maxBareRows = 1 << 20

// TimeExt is the msgpack extension type of a time.Time with its location.
const TimeExt int8 = 1

// Uint64Ext is the msgpack extension type of a uint64 (go-sql-driver's
// BIGINT UNSIGNED): msgpack's own unsigned codes also carry positive
// int64s, so they could not tell the two apart.
const Uint64Ext int8 = 2

// NilBytesExt is the msgpack extension type of a nil []byte, which is not
// NULL: modernc.org/sqlite returns one for an empty blob, and it scans
// into a string as "" where NULL fails. msgpack writes a nil slice as nil.
const NilBytesExt int8 = 3

// Location kinds of an encoded time.
const (
	locUTC   = 0
	locLocal = 1
	locFixed = 2 // a zone name and an offset, as time.FixedZone
	locNamed = 3 // an IANA name, as time.LoadLocation
)

// Errors of Encode and Decode. Match them with errors.Is.
var (
	// ErrCorrupt is wrapped by every error of Decode.
	ErrCorrupt = errors.New("gormflight: corrupt cache entry")
	// ErrUnencodable: a value or scan type the codec cannot keep exactly.
	ErrUnencodable = errors.New("gormflight: value cannot be stored in a cache entry")
	// ErrTooLarge: the encoded entry would exceed Encode's limit.
	ErrTooLarge = errors.New("gormflight: result larger than Config.MaxEntrySize")
)

// scanTypes are the column scan types an entry can carry, by a stable code.
// A column whose scan type is not listed makes the entry unencodable (the
// result is still returned, only not stored).
var scanTypes = []reflect.Type{
	nil, // 0: the driver reported nil (up to Version 1: it reported none, now interface{})
	reflect.TypeFor[int64](), reflect.TypeFor[int32](), reflect.TypeFor[int16](),
	reflect.TypeFor[int8](), reflect.TypeFor[int](), reflect.TypeFor[uint64](),
	reflect.TypeFor[uint32](), reflect.TypeFor[uint16](), reflect.TypeFor[uint8](),
	reflect.TypeFor[uint](), reflect.TypeFor[float64](), reflect.TypeFor[float32](),
	reflect.TypeFor[bool](), reflect.TypeFor[string](), reflect.TypeFor[[]byte](),
	reflect.TypeFor[time.Time](), reflect.TypeFor[any](), reflect.TypeFor[sql.RawBytes](),
	reflect.TypeFor[sql.NullInt64](), reflect.TypeFor[sql.NullInt32](), reflect.TypeFor[sql.NullInt16](),
	reflect.TypeFor[sql.NullByte](), reflect.TypeFor[sql.NullFloat64](), reflect.TypeFor[sql.NullBool](),
	reflect.TypeFor[sql.NullString](), reflect.TypeFor[sql.NullTime](),
	// Appended, so that the codes above keep their meaning: go-sql-driver's
	// unsigned and unknown columns.
	reflect.TypeFor[sql.Null[uint64]](), reflect.TypeFor[*any](),
	// The SQLite driver's (github.com/glebarez/go-sqlite) for a BLOB value.
	reflect.TypeFor[[][]byte](),
}

var scanTypeCodes = func() map[reflect.Type]int {
	m := make(map[reflect.Type]int, len(scanTypes))
	for i, t := range scanTypes {
		m[t] = i
	}
	return m
}()

var encoderPool = sync.Pool{New: func() any {
	w := new(entryWriter)
	w.enc = msgpack.NewEncoder(&w.buf)
	return w
}}

// entryWriter is a msgpack encoder over its own buffer; the encoder writes
// straight into buf (bytes.Buffer is an io.ByteWriter, so msgpack does not
// buffer), which lets extension payloads be appended to buf directly.
type entryWriter struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

// Encode appends the binary form of e to dst. It fails with
// ErrUnencodable for a value or scan type the codec does not keep exactly,
// and with ErrTooLarge as soon as the result would exceed limit bytes
// (limit <= 0: no limit).
func Encode(dst []byte, e *Entry, limit int) ([]byte, error) {
	w := encoderPool.Get().(*entryWriter)
	defer encoderPool.Put(w)
	w.buf.Reset()
	enc := w.enc
	over := func() bool { return limit > 0 && len(dst)+w.buf.Len() > limit }

	_ = enc.EncodeUint(Version)
	_ = enc.EncodeArrayLen(len(e.columns))
	for _, c := range e.columns {
		code, ok := scanTypeCodes[c.scanType]
		if !ok {
			return dst, fmt.Errorf("%w: scan type %v", ErrUnencodable, c.scanType)
		}
		var flags uint64
		for i, f := range [...]bool{c.nullableOK, c.nullable, c.lengthOK, c.decimalOK} {
			if f {
				flags |= 1 << i
			}
		}
		_ = enc.EncodeString(c.name)
		_ = enc.EncodeString(c.dbType)
		_ = enc.EncodeUint(uint64(code))
		_ = enc.EncodeUint(flags)
		_ = enc.EncodeInt(c.length)
		_ = enc.EncodeInt(c.precision)
		_ = enc.EncodeInt(c.scale)
	}
	if len(e.columns) == 0 && len(e.rows) > maxBareRows {
		return dst, fmt.Errorf("%w: %d rows of no columns", ErrUnencodable, len(e.rows))
	}
	_ = enc.EncodeArrayLen(len(e.rows))
	for _, row := range e.rows {
		if len(row) != len(e.columns) {
			return dst, fmt.Errorf("%w: row of %d values for %d columns", ErrUnencodable, len(row), len(e.columns))
		}
		for _, v := range row {
			if err := w.encodeValue(v); err != nil {
				return dst, err
			}
		}
		if over() {
			return dst, ErrTooLarge
		}
	}
	if err := w.encodeRowTypes(e); err != nil {
		return dst, err
	}
	if over() {
		return dst, ErrTooLarge
	}
	return append(dst, w.buf.Bytes()...), nil
}

// encodeRowTypes writes e.rowTypes: their count (0 for none), then for
// each row and column the scan type's code, the length and whether it was
// reported.
func (w *entryWriter) encodeRowTypes(e *Entry) error {
	if e.rowTypes != nil && len(e.rowTypes) != len(e.rows) {
		return fmt.Errorf("%w: scan types of %d rows for %d rows", ErrUnencodable, len(e.rowTypes), len(e.rows))
	}
	_ = w.enc.EncodeArrayLen(len(e.rowTypes))
	for _, cols := range e.rowTypes {
		if len(cols) != len(e.columns) {
			return fmt.Errorf("%w: %d scan types for %d columns", ErrUnencodable, len(cols), len(e.columns))
		}
		for _, c := range cols {
			code, ok := scanTypeCodes[c.scanType]
			if !ok {
				return fmt.Errorf("%w: scan type %v", ErrUnencodable, c.scanType)
			}
			_ = w.enc.EncodeUint(uint64(code))
			_ = w.enc.EncodeInt(c.length)
			_ = w.enc.EncodeBool(c.lengthOK)
		}
	}
	return nil
}

func (w *entryWriter) encodeValue(v driver.Value) error {
	enc := w.enc
	switch v := v.(type) {
	case nil:
		return enc.EncodeNil()
	case int64:
		return enc.EncodeInt(v)
	case float64:
		return enc.EncodeFloat64(v)
	case float32: // go-sql-driver's FLOAT; msgpack's float 32 code is its own
		return enc.EncodeFloat32(v)
	case uint64:
		if err := enc.EncodeExtHeader(Uint64Ext, 8); err != nil {
			return err
		}
		_, err := w.buf.Write(binary.BigEndian.AppendUint64(nil, v))
		return err
	case bool:
		return enc.EncodeBool(v)
	case string:
		return enc.EncodeString(v)
	case []byte:
		if v == nil {
			return enc.EncodeExtHeader(NilBytesExt, 0)
		}
		return enc.EncodeBytes(v)
	case time.Time:
		return w.encodeTime(v)
	default:
		return fmt.Errorf("%w: %T", ErrUnencodable, v)
	}
}

// encodeTime writes a time as seconds, nanoseconds and its location, so that
// a replayed time has the location the live driver gave it (pgx: Local for
// timestamptz, UTC for timestamp and date).
func (w *entryWriter) encodeTime(t time.Time) error {
	var b [64]byte
	out := binary.BigEndian.AppendUint64(b[:0], uint64(t.Unix()))
	out = binary.BigEndian.AppendUint32(out, uint32(t.Nanosecond()))
	switch loc := t.Location(); loc {
	case time.UTC:
		out = append(out, locUTC)
	case time.Local:
		out = append(out, locLocal)
	default:
		name, offset := t.Zone()
		if s := loc.String(); isNamedLocation(s, t) {
			out = append(out, locNamed) // an IANA location keeps its rules
			out = append(out, s...)
		} else {
			out = append(out, locFixed)
			out = binary.BigEndian.AppendUint32(out, uint32(int32(offset)))
			out = append(out, name...)
		}
	}
	if err := w.enc.EncodeExtHeader(TimeExt, len(out)); err != nil {
		return err
	}
	_, err := w.buf.Write(out)
	return err
}
