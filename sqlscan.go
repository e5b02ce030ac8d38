package gormflight

import (
	"fmt"

	"github.com/gormflight/gormflight/internal/sqlscan"
)

// The SQL analyser lives in internal/sqlscan; these wrappers keep the
// package's short names and pass it the dialect.

// sqlDialect is the dialect of every statement the plugin sees: Initialize
// accepts PostgreSQL only.
const sqlDialect = sqlscan.PostgreSQL

// sqlTables returns the tables a statement reads and writes (sqlscan.Tables).
func sqlTables(query string) (read, written []string) { return sqlscan.Tables(sqlDialect, query) }

// normTable returns the generation name of a table reference (sqlscan.NormTable).
func normTable(name string) string { return sqlscan.NormTable(sqlDialect, name) }

// tableName returns the generation name of a table name given alone
// (sqlscan.TableName), or an error wrapping ErrInvalidTableName.
func tableName(name string) (string, error) {
	t, ok := sqlscan.TableName(sqlDialect, name)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrInvalidTableName, name)
	}
	return t, nil
}

// analyze returns everything the analyser knows of a statement (sqlscan.Analyze).
func analyze(query string) sqlscan.Result { return sqlscan.Analyze(sqlDialect, query) }

// classify returns the kind of a statement by its first keyword (sqlscan.Classify).
func classify(query string) sqlscan.Kind { return sqlscan.Classify(sqlDialect, query) }
