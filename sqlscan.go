package gormflight

import "github.com/gormflight/gormflight/internal/sqlscan"

// The SQL analyser lives in internal/sqlscan; these wrappers keep the
// package's short names.

// sqlTables returns the tables a statement reads and writes (sqlscan.Tables).
func sqlTables(query string) (read, written []string) { return sqlscan.Tables(query) }

// normTable returns the generation name of a table reference (sqlscan.NormTable).
func normTable(name string) string { return sqlscan.NormTable(name) }

// analyze returns everything the analyser knows of a statement (sqlscan.Analyze).
func analyze(query string) sqlscan.Result { return sqlscan.Analyze(query) }
