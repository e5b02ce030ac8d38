package gormflight

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
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// An entry is one query's result as the driver produced it: the columns with
// the metadata database/sql reports for them, and the rows of driver values
// (int64, float64, bool, string, []byte, time.Time or nil). Replaying an
// entry through the replay driver lets database/sql do the conversions into
// the caller's destinations, exactly as it does for a live query.
type entry struct {
	columns []column
	names   []string
	rows    [][]driver.Value
	// local: computed in a session other than the one its key names (see
	// session.go), so returned to its callers and never stored.
	local bool
}

// column is what *sql.ColumnType reports for one live column. Each "ok" flag
// keeps whether the live driver reported the property at all.
type column struct {
	name                 string
	dbType               string
	scanType             reflect.Type
	nullable, nullableOK bool
	length               int64
	lengthOK             bool
	precision, scale     int64
	decimalOK            bool
}

const codecVersion = 1

// timeExt is the msgpack extension type of a time.Time with its location.
const timeExt int8 = 1

// Location kinds of an encoded time.
const (
	locUTC   = 0
	locLocal = 1
	locFixed = 2 // a zone name and an offset, as time.FixedZone
	locNamed = 3 // an IANA name, as time.LoadLocation
)

var (
	errCorrupt     = errors.New("gormflight: corrupt cache entry")
	errUnencodable = errors.New("gormflight: value cannot be stored in a cache entry")
	errTooLarge    = errors.New("gormflight: result larger than Config.MaxEntrySize")
)

// scanTypes are the column scan types an entry can carry, by a stable code.
// A column whose scan type is not listed makes the entry unencodable (the
// result is still returned, only not stored).
var scanTypes = []reflect.Type{
	nil, // 0: the driver reported no scan type
	reflect.TypeFor[int64](), reflect.TypeFor[int32](), reflect.TypeFor[int16](),
	reflect.TypeFor[int8](), reflect.TypeFor[int](), reflect.TypeFor[uint64](),
	reflect.TypeFor[uint32](), reflect.TypeFor[uint16](), reflect.TypeFor[uint8](),
	reflect.TypeFor[uint](), reflect.TypeFor[float64](), reflect.TypeFor[float32](),
	reflect.TypeFor[bool](), reflect.TypeFor[string](), reflect.TypeFor[[]byte](),
	reflect.TypeFor[time.Time](), reflect.TypeFor[any](), reflect.TypeFor[sql.RawBytes](),
	reflect.TypeFor[sql.NullInt64](), reflect.TypeFor[sql.NullInt32](), reflect.TypeFor[sql.NullInt16](),
	reflect.TypeFor[sql.NullByte](), reflect.TypeFor[sql.NullFloat64](), reflect.TypeFor[sql.NullBool](),
	reflect.TypeFor[sql.NullString](), reflect.TypeFor[sql.NullTime](),
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

// encodeEntry appends the binary form of e to dst. It fails with
// errUnencodable for a value or scan type the codec does not keep exactly,
// and with errTooLarge as soon as the result would exceed limit bytes
// (limit <= 0: no limit).
func encodeEntry(dst []byte, e *entry, limit int) ([]byte, error) {
	w := encoderPool.Get().(*entryWriter)
	defer encoderPool.Put(w)
	w.buf.Reset()
	enc := w.enc
	over := func() bool { return limit > 0 && len(dst)+w.buf.Len() > limit }

	_ = enc.EncodeUint(codecVersion)
	_ = enc.EncodeArrayLen(len(e.columns))
	for _, c := range e.columns {
		code, ok := scanTypeCodes[c.scanType]
		if !ok {
			return dst, fmt.Errorf("%w: scan type %v", errUnencodable, c.scanType)
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
	_ = enc.EncodeArrayLen(len(e.rows))
	for _, row := range e.rows {
		if len(row) != len(e.columns) {
			return dst, fmt.Errorf("%w: row of %d values for %d columns", errUnencodable, len(row), len(e.columns))
		}
		for _, v := range row {
			if err := w.encodeValue(v); err != nil {
				return dst, err
			}
		}
		if over() {
			return dst, errTooLarge
		}
	}
	if over() {
		return dst, errTooLarge
	}
	return append(dst, w.buf.Bytes()...), nil
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
	case bool:
		return enc.EncodeBool(v)
	case string:
		return enc.EncodeString(v)
	case []byte:
		return enc.EncodeBytes(v)
	case time.Time:
		return w.encodeTime(v)
	default:
		return fmt.Errorf("%w: %T", errUnencodable, v)
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
	if err := w.enc.EncodeExtHeader(timeExt, len(out)); err != nil {
		return err
	}
	_, err := w.buf.Write(out)
	return err
}

var decoderPool = sync.Pool{New: func() any { return msgpack.NewDecoder(nil) }}

// decodeEntry parses data produced by encodeEntry. Any malformed input gives
// an error wrapping errCorrupt, never a panic and never a partial entry.
func decodeEntry(data []byte) (e *entry, err error) {
	dec := decoderPool.Get().(*msgpack.Decoder)
	r := bytes.NewReader(data)
	dec.Reset(r)
	defer func() {
		dec.Reset(nil)
		decoderPool.Put(dec)
		if err != nil {
			e, err = nil, fmt.Errorf("%w: %w", errCorrupt, err)
		}
	}()

	version, err := dec.DecodeUint64()
	if err != nil {
		return nil, err
	}
	if version != codecVersion {
		return nil, fmt.Errorf("codec version %d", version)
	}
	ncols, err := dec.DecodeArrayLen()
	if err != nil {
		return nil, err
	}
	if ncols < 0 || ncols > r.Len() {
		return nil, fmt.Errorf("%d columns in %d bytes", ncols, r.Len())
	}
	e = &entry{columns: make([]column, ncols), names: make([]string, ncols)}
	for i := range e.columns {
		c := &e.columns[i]
		var code, flags uint64
		if c.name, err = dec.DecodeString(); err != nil {
			return nil, err
		}
		if c.dbType, err = dec.DecodeString(); err != nil {
			return nil, err
		}
		if code, err = dec.DecodeUint64(); err != nil {
			return nil, err
		}
		if code >= uint64(len(scanTypes)) {
			return nil, fmt.Errorf("scan type code %d", code)
		}
		c.scanType = scanTypes[code]
		if flags, err = dec.DecodeUint64(); err != nil {
			return nil, err
		}
		c.nullableOK, c.nullable = flags&1 != 0, flags&2 != 0
		c.lengthOK, c.decimalOK = flags&4 != 0, flags&8 != 0
		if c.length, err = dec.DecodeInt64(); err != nil {
			return nil, err
		}
		if c.precision, err = dec.DecodeInt64(); err != nil {
			return nil, err
		}
		if c.scale, err = dec.DecodeInt64(); err != nil {
			return nil, err
		}
		e.names[i] = c.name
	}
	nrows, err := dec.DecodeArrayLen()
	if err != nil {
		return nil, err
	}
	// Every value takes at least one byte: a count beyond what is left is a lie.
	if nrows < 0 || (ncols > 0 && nrows > r.Len()/ncols) || (ncols == 0 && nrows > r.Len()+1<<20) {
		return nil, fmt.Errorf("%d rows in %d bytes", nrows, r.Len())
	}
	e.rows = make([][]driver.Value, nrows)
	values := make([]driver.Value, nrows*ncols)
	for i := range e.rows {
		row := values[i*ncols : (i+1)*ncols : (i+1)*ncols]
		for j := range row {
			if row[j], err = decodeValue(dec); err != nil {
				return nil, err
			}
		}
		e.rows[i] = row
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%d trailing bytes", r.Len())
	}
	return e, nil
}

func decodeValue(dec *msgpack.Decoder) (driver.Value, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case c == msgpcode.Nil:
		return nil, dec.DecodeNil()
	case c == msgpcode.True || c == msgpcode.False:
		return dec.DecodeBool()
	case c == msgpcode.Double:
		return dec.DecodeFloat64()
	case msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Int64):
		return dec.DecodeInt64()
	case msgpcode.IsString(c):
		return dec.DecodeString()
	case msgpcode.IsBin(c):
		b, err := dec.DecodeBytes()
		if b == nil && err == nil {
			b = []byte{}
		}
		return b, err
	case msgpcode.IsExt(c):
		return decodeTime(dec)
	default:
		return nil, fmt.Errorf("unexpected msgpack code %#x", c)
	}
}

var locations sync.Map // name -> *time.Location, or nil when not loadable

func loadLocation(name string) (*time.Location, error) {
	if v, ok := locations.Load(name); ok {
		if loc := v.(*time.Location); loc != nil {
			return loc, nil
		}
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	loc, err := time.LoadLocation(name)
	locations.Store(name, loc)
	return loc, err
}

// isNamedLocation reports whether t's location can be stored by its name:
// the name loads (an IANA zone such as "Europe/Paris", or "CET") and gives t
// the same zone. A time.FixedZone is stored as a name and an offset instead.
func isNamedLocation(name string, t time.Time) bool {
	loc, err := loadLocation(name)
	if err != nil || name == "" {
		return false
	}
	n1, o1 := t.Zone()
	n2, o2 := t.In(loc).Zone()
	return n1 == n2 && o1 == o2
}

func decodeTime(dec *msgpack.Decoder) (time.Time, error) {
	id, n, err := dec.DecodeExtHeader()
	if err != nil {
		return time.Time{}, err
	}
	if id != timeExt || n < 13 || n > 64 {
		return time.Time{}, fmt.Errorf("time extension %d of %d bytes", id, n)
	}
	var b [64]byte
	buf := b[:n]
	if err := dec.ReadFull(buf); err != nil {
		return time.Time{}, err
	}
	t := time.Unix(int64(binary.BigEndian.Uint64(buf)), int64(binary.BigEndian.Uint32(buf[8:])))
	rest := buf[13:]
	switch buf[12] {
	case locUTC:
		return t.UTC(), nil
	case locLocal:
		return t.Local(), nil
	case locFixed:
		if len(rest) < 4 {
			return time.Time{}, errors.New("short fixed zone")
		}
		return t.In(time.FixedZone(string(rest[4:]), int(int32(binary.BigEndian.Uint32(rest))))), nil
	case locNamed:
		loc, err := loadLocation(string(rest))
		if err != nil {
			return time.Time{}, err
		}
		return t.In(loc), nil
	default:
		return time.Time{}, fmt.Errorf("location kind %d", buf[12])
	}
}
