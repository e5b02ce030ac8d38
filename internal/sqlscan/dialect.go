package sqlscan

// Dialect is the SQL dialect a statement is written in. Every entry point
// of the package takes one, so that dialects can be added without changing
// callers.
//
// The zero Dialect is no dialect. It is safe to pass and reads nothing
// from the text: Analyze reports the statement as one that may read and
// write every table and must not be cached, Tables reads and writes
// AllTables, NormTable returns AllTables, Classify returns Other and Lex
// returns no tokens. A caller that forgets to choose a dialect therefore
// caches nothing and invalidates everything, and never serves stale rows.
type Dialect uint8

// The dialects the analyser reads.
const (
	_ Dialect = iota
	// PostgreSQL is PostgreSQL's grammar (version 17), strings lexed with
	// standard_conforming_strings = on.
	PostgreSQL
	// SQLite is SQLite's grammar (version 3): identifiers quoted with "",
	// [] or `` and compared without regard to ASCII case, comments that do
	// not nest, parameters ?, ?NNN, :name, @name and $name, INSERT OR
	// REPLACE and REPLACE, and its catalog (sqlite_schema, PRAGMA).
	SQLite
	// MySQL is MySQL's and MariaDB's grammar with the default sql_mode:
	// strings in '' or "" with backslash escapes (not NO_BACKSLASH_ESCAPES),
	// identifiers in `` (not ANSI_QUOTES), # and "-- " comments, /*! */
	// comments whose content runs. Table names fold to lower case, as
	// lower_case_table_names = 1 makes them: with 0, two tables whose
	// names differ only in case share a generation, which costs misses.
	MySQL
)

// DialectOf returns the Dialect of a database driver by its name, as
// GORM's Dialector.Name reports it ("postgres", "sqlite", "mysql", which
// MariaDB's dialector reports too). ok is false for a driver
// the analyser cannot read.
func DialectOf(driverName string) (d Dialect, ok bool) {
	switch driverName {
	case "postgres":
		return PostgreSQL, true
	case "sqlite":
		return SQLite, true
	case "mysql":
		return MySQL, true
	}
	return 0, false
}

// known reports whether the analyser reads d.
func (d Dialect) known() bool { return d == PostgreSQL || d == SQLite || d == MySQL }

// String returns the dialect's name, or "unknown" for the zero Dialect.
func (d Dialect) String() string {
	switch d {
	case PostgreSQL:
		return "PostgreSQL"
	case SQLite:
		return "SQLite"
	case MySQL:
		return "MySQL"
	}
	return "unknown"
}
