package rowcodec

import (
	"database/sql"
	"database/sql/driver"
	"reflect"
)

// Capture reads a live result completely into an Entry and closes rows.
// The values are the driver's own (scanning into *any skips every
// conversion), so a replay hands database/sql the same inputs.
func Capture(rows *sql.Rows) (*Entry, error) {
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, err
	}
	e := &Entry{columns: make([]column, len(types)), names: make([]string, len(types))}
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
