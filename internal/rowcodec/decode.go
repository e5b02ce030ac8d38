package rowcodec

import (
	"bytes"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

var decoderPool = sync.Pool{New: func() any { return msgpack.NewDecoder(nil) }}

// Decode parses data produced by Encode. Any malformed input gives an error
// wrapping ErrCorrupt, never a panic and never a partial entry.
func Decode(data []byte) (e *Entry, err error) {
	dec := decoderPool.Get().(*msgpack.Decoder)
	r := bytes.NewReader(data)
	dec.Reset(r)
	defer func() {
		dec.Reset(nil)
		decoderPool.Put(dec)
		if err != nil {
			e, err = nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
	}()

	version, err := dec.DecodeUint64()
	if err != nil {
		return nil, err
	}
	if version != Version {
		return nil, fmt.Errorf("codec version %d", version)
	}
	e = new(Entry)
	if err := decodeColumns(dec, r, e); err != nil {
		return nil, err
	}
	if err := decodeRows(dec, r, e); err != nil {
		return nil, err
	}
	if err := decodeRowTypes(dec, e); err != nil {
		return nil, err
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%d trailing bytes", r.Len())
	}
	return e, nil
}

// decodeColumns reads the column array into e; r is what dec reads, for
// the bytes left.
func decodeColumns(dec *msgpack.Decoder, r *bytes.Reader, e *Entry) error {
	ncols, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if ncols < 0 || ncols > r.Len() {
		return fmt.Errorf("%d columns in %d bytes", ncols, r.Len())
	}
	e.columns, e.names = make([]column, ncols), make([]string, ncols)
	for i := range e.columns {
		if err := decodeColumn(dec, &e.columns[i]); err != nil {
			return err
		}
		e.names[i] = e.columns[i].name
	}
	return nil
}

func decodeColumn(dec *msgpack.Decoder, c *column) (err error) {
	var code, flags uint64
	if c.name, err = dec.DecodeString(); err != nil {
		return err
	}
	if c.dbType, err = dec.DecodeString(); err != nil {
		return err
	}
	if code, err = dec.DecodeUint64(); err != nil {
		return err
	}
	if code >= uint64(len(scanTypes)) {
		return fmt.Errorf("scan type code %d", code)
	}
	c.scanType = scanTypes[code]
	if flags, err = dec.DecodeUint64(); err != nil {
		return err
	}
	c.nullableOK, c.nullable = flags&1 != 0, flags&2 != 0
	c.lengthOK, c.decimalOK = flags&4 != 0, flags&8 != 0
	if c.length, err = dec.DecodeInt64(); err != nil {
		return err
	}
	if c.precision, err = dec.DecodeInt64(); err != nil {
		return err
	}
	c.scale, err = dec.DecodeInt64()
	return err
}

// decodeRows reads the row array into e, whose columns are decoded. All
// values live in one backing array: one allocation instead of one per row.
func decodeRows(dec *msgpack.Decoder, r *bytes.Reader, e *Entry) error {
	ncols := len(e.columns)
	nrows, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	// Every value takes at least one byte: a count beyond what is left is a
	// lie. Rows of no columns take none, so their count has a cap of its own.
	if nrows < 0 || (ncols > 0 && nrows > r.Len()/ncols) || (ncols == 0 && nrows > maxBareRows) {
		return fmt.Errorf("%d rows in %d bytes", nrows, r.Len())
	}
	e.rows = make([][]driver.Value, nrows)
	values := make([]driver.Value, nrows*ncols)
	for i := range e.rows {
		row := values[i*ncols : (i+1)*ncols : (i+1)*ncols]
		for j := range row {
			if row[j], err = decodeValue(dec); err != nil {
				return err
			}
		}
		e.rows[i] = row
	}
	return nil
}

// decodeRowTypes reads the per-row column types, if any: one list per row.
func decodeRowTypes(dec *msgpack.Decoder, e *Entry) error {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n <= 0 {
		return nil
	}
	if n != len(e.rows) {
		return fmt.Errorf("scan types of %d rows for %d rows", n, len(e.rows))
	}
	e.rowTypes = make([][]rowColumn, n)
	cols := make([]rowColumn, n*len(e.columns))
	for i := range e.rowTypes {
		e.rowTypes[i] = cols[i*len(e.columns) : (i+1)*len(e.columns) : (i+1)*len(e.columns)]
		for j := range e.rowTypes[i] {
			if err := decodeRowColumn(dec, &e.rowTypes[i][j]); err != nil {
				return err
			}
		}
	}
	return nil
}

func decodeRowColumn(dec *msgpack.Decoder, c *rowColumn) error {
	code, err := dec.DecodeUint64()
	if err != nil {
		return err
	}
	if code >= uint64(len(scanTypes)) {
		return fmt.Errorf("scan type code %d", code)
	}
	c.scanType = scanTypes[code]
	if c.length, err = dec.DecodeInt64(); err != nil {
		return err
	}
	c.lengthOK, err = dec.DecodeBool()
	return err
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
	case c == msgpcode.Float:
		return dec.DecodeFloat32()
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
		return decodeExt(dec)
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

// decodeExt decodes a value of one of the codec's extension types.
func decodeExt(dec *msgpack.Decoder) (driver.Value, error) {
	id, n, err := dec.DecodeExtHeader()
	if err != nil {
		return nil, err
	}
	if id == NilBytesExt && n == 0 {
		return []byte(nil), nil
	}
	if id == Uint64Ext {
		var b [8]byte
		if n != len(b) {
			return nil, fmt.Errorf("uint64 extension of %d bytes", n)
		}
		if err := dec.ReadFull(b[:]); err != nil {
			return nil, err
		}
		return binary.BigEndian.Uint64(b[:]), nil
	}
	return decodeTime(dec, id, n)
}

func decodeTime(dec *msgpack.Decoder, id int8, n int) (time.Time, error) {
	if id != TimeExt || n < 13 || n > 64 {
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
