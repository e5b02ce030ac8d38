package gormflight

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"reflect"
	"slices"
)

// The replay driver turns an entry back into a genuine *sql.Rows or *sql.Row,
// so database/sql applies its own conversions to every destination (structs,
// Scanners, sql.Null*, RawBytes, maps) exactly as for a live query, and GORM
// scans it with its unchanged code. Each Plugin owns one *sql.DB over it.

// replayed is the single argument of a replay query: the entry to serve, or
// the error the live query produced.
type replayed struct {
	entry *entry
	err   error
}

var errNotReplay = errors.New("gormflight: replay connection used for a real query")

func newReplayDB() *sql.DB {
	db := sql.OpenDB(replayConnector{})
	db.SetMaxIdleConns(64)
	return db
}

type replayConnector struct{}

func (replayConnector) Connect(context.Context) (driver.Conn, error) { return replayConn{}, nil }
func (replayConnector) Driver() driver.Driver                        { return replayDriver{} }

type replayDriver struct{}

func (replayDriver) Open(string) (driver.Conn, error) { return replayConn{}, nil }

type replayConn struct{}

func (replayConn) Prepare(string) (driver.Stmt, error) { return nil, errNotReplay }
func (replayConn) Close() error                        { return nil }
func (replayConn) Begin() (driver.Tx, error)           { return nil, errNotReplay }

// CheckNamedValue lets the *replayed argument through database/sql's
// argument conversion untouched.
func (replayConn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (replayConn) QueryContext(_ context.Context, _ string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) != 1 {
		return nil, errNotReplay
	}
	r, ok := args[0].Value.(*replayed)
	if !ok {
		return nil, errNotReplay
	}
	if r.err != nil {
		return nil, r.err
	}
	return &replayRows{entry: r.entry}, nil
}

// replayRows implements driver.Rows and every optional column-type
// interface, answering with what the live driver reported.
type replayRows struct {
	entry *entry
	next  int
}

// Columns returns a copy: database/sql hands the driver's slice to the
// caller, and GORM's MapColumns renames columns in it in place, while the
// entry is shared by every caller of a flight and through the memo.
func (r *replayRows) Columns() []string { return slices.Clone(r.entry.names) }
func (r *replayRows) Close() error      { return nil }

func (r *replayRows) Next(dest []driver.Value) error {
	if r.next >= len(r.entry.rows) {
		return io.EOF
	}
	row := r.entry.rows[r.next]
	r.next++
	for i, v := range row {
		// One entry may be replayed to many callers at once: a caller that
		// scans into sql.RawBytes and writes to it must not reach the others.
		if b, ok := v.([]byte); ok {
			v = bytes.Clone(b) // keeps an empty value empty, not nil
		}
		dest[i] = v
	}
	return nil
}

func (r *replayRows) ColumnTypeDatabaseTypeName(i int) string { return r.entry.columns[i].dbType }
func (r *replayRows) ColumnTypeScanType(i int) reflect.Type {
	if t := r.entry.columns[i].scanType; t != nil {
		return t
	}
	return reflect.TypeFor[any]()
}

func (r *replayRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	c := r.entry.columns[i]
	return c.nullable, c.nullableOK
}

func (r *replayRows) ColumnTypeLength(i int) (length int64, ok bool) {
	c := r.entry.columns[i]
	return c.length, c.lengthOK
}

func (r *replayRows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	c := r.entry.columns[i]
	return c.precision, c.scale, c.decimalOK
}

// captureRows reads a live result completely into an entry and closes rows.
// The values are the driver's own (scanning into *any skips every
// conversion), so a replay hands database/sql the same inputs.
func captureRows(rows *sql.Rows) (*entry, error) {
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, err
	}
	e := &entry{columns: make([]column, len(types)), names: make([]string, len(types))}
	for i, t := range types {
		c := &e.columns[i]
		c.name = t.Name()
		c.dbType = t.DatabaseTypeName()
		c.scanType = t.ScanType()
		if c.scanType == reflect.TypeFor[any]() {
			c.scanType = nil
		}
		c.nullable, c.nullableOK = t.Nullable()
		c.length, c.lengthOK = t.Length()
		c.precision, c.scale, c.decimalOK = t.DecimalSize()
		e.names[i] = c.name
	}
	n := len(types)
	ptrs := make([]any, n)
	for rows.Next() {
		row := make([]driver.Value, n)
		for i := range row {
			ptrs[i] = (*any)(&row[i]) // only *any passes driver values through untouched
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		e.rows = append(e.rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return e, rows.Close()
}
