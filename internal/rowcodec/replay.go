package rowcodec

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
// Scanners, sql.Null*, RawBytes, maps) exactly as for a live query, and an
// ORM scans it with its unchanged code.

// A Replayer serves entries as *sql.Rows and *sql.Row, through a *sql.DB of
// its own over the replay driver. It is safe for concurrent use; Close it
// when done. Make it with NewReplayer: a zero Replayer answers every
// replay with an error.
type Replayer struct{ db *sql.DB }

// NewReplayer returns a Replayer.
func NewReplayer() *Replayer {
	db := sql.OpenDB(replayConnector{})
	db.SetMaxIdleConns(64)
	return &Replayer{db: db}
}

// Rows replays e as a genuine *sql.Rows.
func (r *Replayer) Rows(ctx context.Context, e *Entry) (*sql.Rows, error) {
	if r.db == nil || e == nil {
		return nil, errNothing
	}
	return r.db.QueryContext(ctx, "", &replayed{entry: e})
}

// Row replays e as a *sql.Row, or carries err in it when err is not nil:
// database/sql gives no other way to make a *sql.Row hold an error.
func (r *Replayer) Row(ctx context.Context, e *Entry, err error) *sql.Row {
	if r.db == nil {
		return rowOf(errNothing)
	}
	if e == nil && err == nil {
		err = errNothing
	}
	return r.db.QueryRowContext(ctx, "", &replayed{entry: e, err: err})
}

// rowOf returns a *sql.Row that holds err, for a Replayer without a
// database: a *sql.Row can only be made by a *sql.DB.
func rowOf(err error) *sql.Row {
	db := sql.OpenDB(replayConnector{})
	defer db.Close()
	return db.QueryRowContext(context.Background(), "", &replayed{err: err})
}

// Close closes the Replayer's *sql.DB.
func (r *Replayer) Close() error {
	if r.db == nil {
		return nil
	}
	return r.db.Close()
}

// replayed is the single argument of a replay query: the entry to serve, or
// the error the live query produced.
type replayed struct {
	entry *Entry
	err   error
}

var (
	errNotReplay = errors.New("gormflight: replay connection used for a real query")
	errNothing   = errors.New("gormflight: nothing to replay: no entry, or a Replayer not made by NewReplayer")
)

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
	entry *Entry
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

// ColumnTypeScanType and ColumnTypeLength answer as the live driver did at
// the same row: before the first, and after it for a driver whose column
// types follow the row (past the last row, the last row's).
func (r *replayRows) ColumnTypeScanType(i int) reflect.Type {
	if at := r.rowColumn(i); at != nil {
		return at.scanType
	}
	return r.entry.columns[i].scanType
}

// rowColumn is what the driver reported for column i at the current row,
// or nil when it reported what it did before the first.
func (r *replayRows) rowColumn(i int) *rowColumn {
	if rt := r.entry.rowTypes; rt != nil && r.next > 0 {
		return &rt[min(r.next, len(rt))-1][i]
	}
	return nil
}

func (r *replayRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	c := r.entry.columns[i]
	return c.nullable, c.nullableOK
}

func (r *replayRows) ColumnTypeLength(i int) (length int64, ok bool) {
	if at := r.rowColumn(i); at != nil {
		return at.length, at.lengthOK
	}
	c := r.entry.columns[i]
	return c.length, c.lengthOK
}

func (r *replayRows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	c := r.entry.columns[i]
	return c.precision, c.scale, c.decimalOK
}

// DriverRows returns e's rows as a driver.Rows, for an adapter that answers
// at the driver's level (a database/sql driver of its own), with the column
// types the live driver reported.
func (e *Entry) DriverRows() driver.Rows { return &replayRows{entry: e} }
