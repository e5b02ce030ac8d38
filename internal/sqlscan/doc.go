// Package sqlscan finds the tables a SQL statement reads and writes, for
// generation-based cache invalidation, tells which statements must never
// be cached (catalog reads) or change the schema (DDL), and classifies a
// statement by its first keyword. It knows nothing of GORM or of any
// driver; every entry point takes the Dialect of the statement:
// PostgreSQL, SQLite or MySQL (MariaDB too).
//
// The analysis is a hand-written lexer (following PostgreSQL's scan.l for
// strings, comments, quoted identifiers and dollar quotes) followed by a single
// walk over the token stream that looks at every token position, so table
// references are found wherever they appear: in sub-queries, CTE bodies,
// data-modifying CTEs and every statement of a multi-statement string.
//
// Errors are asymmetric: reporting a table that is not really used only costs
// cache misses, while missing a table serves stale data. Wherever the walk is
// unsure it therefore reports a name rather than dropping it. The only places
// where names are deliberately left out are the ones PostgreSQL itself
// resolves to something that is not a table: aliases, column lists,
// set-returning functions in FROM, and references to CTEs that are in scope.
// DDL whose effect on names cannot be listed (DROP SCHEMA, CREATE OR REPLACE
// FUNCTION, DROP ... CASCADE, ...) sets Result.Schema and writes AllTables.
// The same asymmetry decides what a Dialect the package does not know (the
// zero Dialect) gets: answers that may cost misses, never stale rows.
//
// What the text cannot show is not reported: writes done by functions,
// procedures (CALL), DO blocks, EXECUTE of prepared statements, triggers,
// rules, ON DELETE/UPDATE CASCADE foreign keys, TRUNCATE ... CASCADE on
// referencing tables and inserts into a child
// table seen through its inheritance parent; a view is reported under its
// own name, not its base tables. Strings are lexed as with
// standard_conforming_strings = on (the default since PostgreSQL 9.1).
// An oracle test module (oracle/) checks all this against PostgreSQL's own
// parser.
//
// SQLite is read by its own tokenizer (tokenizeSQLite: [], “ and ""
// identifiers, comments that do not nest, its parameters) and the same
// walk, with its differences: names fold to lower case quoted or not, a
// string names a table where a name is expected, INSERT OR ... INTO,
// REPLACE INTO and UPDATE OR ..., ATTACH and DETACH change what every name
// means (Schema), PRAGMA and sqlite_* names are the catalog. A second
// oracle module (sqliteoracle/) checks it against SQLite: the tables a
// statement's compiled program opens, and what it really changes on a
// scratch database.
//
// MySQL is read by tokenizeMySQL (backticks, strings in ” and "" with
// backslash escapes, #, "-- " and /* */ comments, /*! */ comments whose
// content runs, identifiers that start with a digit, variables) and the
// same walk: names fold to lower case, INSERT and REPLACE with or without
// INTO and with their modifiers, ON DUPLICATE KEY UPDATE, multi-table
// UPDATE and DELETE (every table they name up to SET or WHERE is
// written), LOAD DATA ... INTO TABLE, RENAME TABLE, ALTER TABLE ... RENAME
// [AS] and EXCHANGE PARTITION; the system databases, SHOW, DESCRIBE,
// variables and the session's functions are the catalog. A third oracle
// module (mysqloracle/) runs every statement on MariaDB and checks what
// it really changed, and compares the tables with those vitess's MySQL
// parser finds.
package sqlscan
