// Package rowcodec keeps one query's result as the driver produced it, so
// that it can be stored, read back and replayed through database/sql as a
// genuine *sql.Rows.
//
// Capture reads a live *sql.Rows into an Entry, Encode and Decode turn an
// Entry into bytes and back (msgpack, versioned), and a Replayer serves an
// Entry as *sql.Rows or *sql.Row. Nothing here knows GORM or Redis.
package rowcodec

import (
	"database/sql/driver"
	"fmt"
	"reflect"
	"time"
	"unsafe"
)

// An Entry is one query's result as the driver produced it: the columns with
// the metadata database/sql reports for them, and the rows of driver values
// (int64, float64, bool, string, []byte, time.Time or nil). Replaying an
// entry lets database/sql do the conversions into the caller's
// destinations, exactly as it does for a live query.
//
// An Entry is never modified once built: one entry is replayed to many
// callers at once. The zero Entry is a result with no columns and no rows.
type Entry struct {
	columns []column
	names   []string
	rows    [][]driver.Value
	// rowTypes are the scan types and lengths the driver reported at each
	// row, for a driver whose column types follow the row's values
	// (SQLite's: a value keeps its own storage class, whatever its
	// column's); nil when they are the columns' throughout.
	rowTypes [][]rowColumn

	// Local marks an entry computed in a session other than the one its
	// key names: it is returned to its callers and never stored.
	Local bool
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

// rowColumn is what a driver whose column types follow the row reports for
// one column at one row.
type rowColumn struct {
	scanType reflect.Type
	length   int64
	lengthOK bool
}

// Rows returns the number of rows in e.
func (e *Entry) Rows() int { return len(e.rows) }

// MemSize estimates the heap memory e holds: its columns, names, rows and
// the boxed values in them, each allocation rounded as AllocSize rounds it.
// It is an estimate by the types Decode produces, good enough to bound a
// cache of decoded entries by memory rather than by count.
func (e *Entry) MemSize() int {
	n := AllocSize(int(unsafe.Sizeof(Entry{})))
	n += AllocSize(len(e.columns) * int(unsafe.Sizeof(column{})))
	for _, c := range e.columns {
		n += AllocSize(len(c.name)) + AllocSize(len(c.dbType))
	}
	n += AllocSize(len(e.names) * int(unsafe.Sizeof("")))
	n += AllocSize(len(e.rows) * int(unsafe.Sizeof([]driver.Value(nil))))
	n += AllocSize(len(e.rows) * len(e.columns) * int(unsafe.Sizeof(driver.Value(nil))))
	if e.rowTypes != nil {
		n += AllocSize(len(e.rowTypes) * int(unsafe.Sizeof([]rowColumn(nil))))
		n += AllocSize(len(e.rowTypes) * len(e.columns) * int(unsafe.Sizeof(rowColumn{})))
	}
	for _, row := range e.rows {
		for _, v := range row {
			n += valueSize(v)
		}
	}
	return n
}

// valueSize is what boxing v in an interface allocated, by the types
// decodeValue returns.
func valueSize(v driver.Value) int {
	switch v := v.(type) {
	case nil, bool:
		return 0
	case int64, float64:
		return 8
	case string:
		return AllocSize(int(unsafe.Sizeof(""))) + AllocSize(len(v))
	case []byte:
		return AllocSize(int(unsafe.Sizeof([]byte(nil)))) + AllocSize(cap(v))
	case time.Time:
		if v.Location() == time.UTC {
			return AllocSize(int(unsafe.Sizeof(time.Time{})))
		}
		return AllocSize(int(unsafe.Sizeof(time.Time{}))) + 128 // and maybe a fixed zone's location
	default:
		return 64
	}
}

// AllocSize is n rounded up to an allocation size: a multiple of 16, plus
// an eighth beyond 128 bytes for the spacing of Go's size classes.
func AllocSize(n int) int {
	if n == 0 {
		return 0
	}
	if n > 128 {
		n += n / 8
	}
	return (n + 15) &^ 15
}

// NewEntry returns an entry of the given column names and rows of driver
// values, for results not read from a driver (Capture reads those). Each
// column reports the scan type of its first non-nil value (interface{} for
// a column of NULLs) and no other metadata. Every row must hold one value per name (ErrUnencodable
// otherwise). The entry keeps rows: the caller must not modify them after.
func NewEntry(names []string, rows [][]driver.Value) (*Entry, error) {
	for i, row := range rows {
		if len(row) != len(names) {
			return nil, fmt.Errorf("%w: row %d holds %d values for %d columns", ErrUnencodable, i, len(row), len(names))
		}
	}
	e := &Entry{columns: make([]column, len(names)), names: append([]string(nil), names...), rows: rows}
	for i, name := range names {
		e.columns[i].name = name
		e.columns[i].scanType = reflect.TypeFor[any]() // a column of NULLs only
		for _, row := range rows {
			if i < len(row) && row[i] != nil {
				e.columns[i].scanType = reflect.TypeOf(row[i])
				break
			}
		}
	}
	return e, nil
}

// Names returns a copy of the column names.
func (e *Entry) Names() []string { return append([]string(nil), e.names...) }

// Values returns the rows. They are shared with every user of the entry:
// read them, never modify them.
func (e *Entry) Values() [][]driver.Value { return e.rows }
