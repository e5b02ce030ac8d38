package rowcodec

import (
	"database/sql"
	"database/sql/driver"
	"slices"
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
		// As reported: nil from a driver that reports nil (SQLite's for a
		// column it has no value of yet), interface{} from one that
		// reports nothing. GORM prepares its scan values from it.
		c.scanType = t.ScanType()
		c.nullable, c.nullableOK = t.Nullable()
		c.length, c.lengthOK = t.Length()
		c.precision, c.scale, c.decimalOK = t.DecimalSize()
		e.names[i] = c.name
	}
	n := len(types)
	ptrs := make([]any, n)
	for i := 0; rows.Next(); i++ {
		if err := e.captureRowTypes(rows, i); err != nil {
			return nil, err
		}
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

// captureRowTypes records the scan types and lengths the driver reports
// at row i, if they follow the row: those at the first row differ from
// those before it. A driver whose types change only after the first row is
// not noticed.
func (e *Entry) captureRowTypes(rows *sql.Rows, i int) error {
	if i > 0 && e.rowTypes == nil {
		return nil
	}
	types, err := rows.ColumnTypes()
	if err != nil {
		return err
	}
	at := make([]rowColumn, len(types))
	for j, t := range types {
		at[j].scanType = t.ScanType()
		at[j].length, at[j].lengthOK = t.Length()
	}
	if i == 0 && slices.EqualFunc(at, e.columns, func(r rowColumn, c column) bool {
		return r.scanType == c.scanType && r.length == c.length && r.lengthOK == c.lengthOK
	}) {
		return nil
	}
	e.rowTypes = append(e.rowTypes, at)
	return nil
}
