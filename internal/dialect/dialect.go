// Package dialect is what the adapters (the GORM plugin, the database/sql
// middleware) do differently for each kind of database, and what they share
// around it: how its SQL is read (internal/sqlscan, with a memo of
// analyses), how a session's fingerprint is taken and which statements
// change a session (session.go), where foreign keys and triggers are listed
// and the graph of tables a write reaches through them (schema.go), and
// what names the database in cache keys.
package dialect

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/sqlscan"
)

// Errors an adapter returns as its own.
var (
	// ErrUnsupported: a database whose SQL no dialect reads.
	ErrUnsupported = errors.New("gormflight: unsupported database dialect")
	// ErrInvalidTableName: a name that is not a table reference.
	ErrInvalidTableName = errors.New("gormflight: not a table name")
)

// Dialect is one kind of database. The values are Postgres, MySQL and
// SQLite; they are never modified.
type Dialect struct {
	Name string          // GORM's Dialector.Name ("postgres", "mysql", "sqlite"), part of every cache key
	SQL  sqlscan.Dialect // how statements are read

	// SchemaSQL lists foreign keys and triggers (see ReadSchema for its
	// columns).
	SchemaSQL string
	// SessionSQL returns the fingerprint query of a session and its
	// arguments, for the names of the settings a user declares; it may ask
	// q what the server is (MySQL or MariaDB).
	SessionSQL func(ctx context.Context, q Querier, names []string) (string, []any, error)
	// PrivateSession reports whether a fingerprint belongs to a session
	// whose entries cannot be shared and that has no identity to key them
	// by (SQLite's temporary tables; MySQL's sql_mode, character set or
	// isolation that the analyser or the cache cannot serve): its reads run
	// uncached.
	PrivateSession func(fp string) bool
	// CheckPool refuses a pool whose session (fingerprint fp) the analyser
	// cannot read statements of, or whose reads the cache must not keep;
	// nil accepts every one.
	CheckPool func(fp string) error
	// SessionUnseen: the fingerprint cannot show every change a statement
	// makes to a session (MySQL's temporary tables and the variables it
	// does not list; SQLite's pragmas that cannot be read back). A
	// connection whose statements changed its session reads uncached, and
	// so does every connection once a change was made where the adapter
	// cannot tell on which connection.
	SessionUnseen bool
	// ImplicitCommit: DDL and transaction statements commit the open
	// transaction (MySQL): what the transaction wrote before them is
	// committed then, whatever ends it.
	ImplicitCommit bool
	// DatabaseSQL returns the database's name for cache keys (one text
	// column, NULL or empty when there is none).
	DatabaseSQL string
	// Quote quotes a name as the catalog stores it, for CatalogName.
	Quote func(name string) string
}

// Querier runs a query: a *sql.DB, *sql.Conn, *sql.Tx or GORM's ConnPool.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Of returns the dialect of a database by its GORM dialector's name, or
// an error wrapping ErrUnsupported.
func Of(name string) (*Dialect, error) {
	switch name {
	case "postgres":
		return &Postgres, nil
	case "mysql":
		return &MySQL, nil
	case "sqlite":
		return &SQLite, nil
	}
	return nil, fmt.Errorf("%w: %q (PostgreSQL, MySQL, MariaDB and SQLite are supported)", ErrUnsupported, name)
}

// CatalogName returns the generation name of a table name as a catalog
// lists it (unquoted, in the case it is stored in).
func (d *Dialect) CatalogName(name string) string { return d.NormTable(d.Quote(name)) }

// Database returns the name of the database q runs on, for cache keys:
// PostgreSQL's current_database(), MySQL's DATABASE(), the file of
// SQLite's main database (an in-memory database has none, and is no other
// process's: it needs a name of the caller's choosing, which is asked for
// with an error wrapping engine.ErrInvalidConfig).
func (d *Dialect) Database(ctx context.Context, q Querier) (string, error) {
	rows, err := q.QueryContext(ctx, d.DatabaseSQL)
	if err != nil {
		return "", fmt.Errorf("gormflight: read the database's name for cache keys: %w", err)
	}
	defer rows.Close()
	var name sql.NullString
	if rows.Next() {
		err = rows.Scan(&name)
	}
	if err = errors.Join(err, rows.Err()); err != nil {
		return "", fmt.Errorf("gormflight: read the database's name for cache keys: %w", err)
	}
	if name.String == "" {
		return "", fmt.Errorf("%w: the database has no name for cache keys (an in-memory SQLite database, or a MySQL connection with no database): set Config.Database to a name no other database behind the same Redis prefix uses", engine.ErrInvalidConfig)
	}
	if d.SQL == sqlscan.SQLite {
		return "sqlite:" + name.String, nil
	}
	return name.String, nil
}

// Dialects are the analyser's dialects of every Dialect, for what is read
// before the database is known (declared table names).
var Dialects = []sqlscan.Dialect{sqlscan.PostgreSQL, sqlscan.MySQL, sqlscan.SQLite}

// Postgres is PostgreSQL.
var Postgres = Dialect{
	Name:      "postgres",
	SQL:       sqlscan.PostgreSQL,
	SchemaSQL: pgSchemaSQL,
	SessionSQL: func(_ context.Context, _ Querier, names []string) (string, []any, error) {
		return pgSessionSQL, []any{names}, nil
	},
	PrivateSession: func(string) bool { return false }, // a temporary schema's session is in its fingerprint
	DatabaseSQL:    "SELECT current_database()",
	Quote:          quoteWith(`"`),
}

// MySQL is MySQL and MariaDB.
var MySQL = Dialect{
	Name:           "mysql",
	SQL:            sqlscan.MySQL,
	SchemaSQL:      mysqlSchemaSQL,
	SessionSQL:     mysqlSessionSQL,
	PrivateSession: func(fp string) bool { return mysqlUnservable(fp) != "" },
	CheckPool: func(fp string) error {
		if why := mysqlUnservable(fp); why != "" {
			return fmt.Errorf("%w: %s", ErrUnsupported, why)
		}
		return nil
	},
	SessionUnseen:  true,
	ImplicitCommit: true,
	DatabaseSQL:    "SELECT DATABASE()",
	Quote:          quoteWith("`"),
}

// SQLite is SQLite.
var SQLite = Dialect{
	Name:       "sqlite",
	SQL:        sqlscan.SQLite,
	SchemaSQL:  sqliteSchemaSQL,
	SessionSQL: sqliteSessionSQL,
	PrivateSession: func(fp string) bool {
		return strings.HasSuffix(fp, sqliteTempMark)
	},
	SessionUnseen: true,
	DatabaseSQL:   "SELECT file FROM pragma_database_list WHERE name = 'main'",
	Quote:         quoteWith(`"`),
}

// quoteWith returns a function that quotes a name with q, doubling q
// inside it.
func quoteWith(q string) func(string) string {
	return func(name string) string { return q + strings.ReplaceAll(name, q, q+q) + q }
}

// ---------------------------------------------------------------------------
// Catalog queries: foreign keys and triggers (cascade.go)

// pgSchemaSQL lists, in one round trip, every foreign key (parent, child,
// whether an action changes the child) and every table with a trigger a
// user created. Names are pg_class.relname: the unqualified name as stored.
const pgSchemaSQL = `SELECT 'f', p.relname::text, c.relname::text,
	k.confupdtype IN ('c', 'n', 'd') OR k.confdeltype IN ('c', 'n', 'd')
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class p ON p.oid = k.confrelid
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
WHERE k.contype = 'f'
UNION ALL
SELECT DISTINCT 't', c.relname::text, '', false
FROM pg_catalog.pg_trigger t
JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'`

// mysqlSchemaSQL is pgSchemaSQL for MySQL and MariaDB, in every database
// of the server (names are compared without their database).
const mysqlSchemaSQL = `SELECT 'f', REFERENCED_TABLE_NAME, TABLE_NAME,
	UPDATE_RULE IN ('CASCADE', 'SET NULL', 'SET DEFAULT') OR DELETE_RULE IN ('CASCADE', 'SET NULL', 'SET DEFAULT')
FROM information_schema.REFERENTIAL_CONSTRAINTS
UNION ALL
SELECT DISTINCT 't', EVENT_OBJECT_TABLE, '', FALSE
FROM information_schema.TRIGGERS
WHERE EVENT_OBJECT_SCHEMA NOT IN ('mysql', 'sys', 'information_schema', 'performance_schema')`

// sqliteSchemaSQL is pgSchemaSQL for SQLite: the foreign keys of the main
// database's tables, and the triggers of the main and temp databases.
// Actions count whether or not PRAGMA foreign_keys enforces them.
const sqliteSchemaSQL = `SELECT 'f', fk."table", m.name,
	fk.on_update IN ('CASCADE', 'SET NULL', 'SET DEFAULT') OR fk.on_delete IN ('CASCADE', 'SET NULL', 'SET DEFAULT')
FROM sqlite_master AS m JOIN pragma_foreign_key_list(m.name) AS fk
WHERE m.type = 'table'
UNION ALL
SELECT DISTINCT 't', tbl_name, '', 0 FROM sqlite_master WHERE type = 'trigger'
UNION ALL
SELECT DISTINCT 't', tbl_name, '', 0 FROM sqlite_temp_master WHERE type = 'trigger'`

// ---------------------------------------------------------------------------
// Session fingerprints (session.go)

// mysqlSessionSQL is the fingerprint of a MySQL or MariaDB session, its
// fields separated by NUL: first those mysqlUnservable reads (sql_mode,
// the client's character set, the isolation level), then the current user
// and role, the current database (USE changes it), every other session
// variable that shapes what a query returns, and the user variables
// SessionSettings names (as a function that reads them sees them).
// Temporary tables do not show (SessionUnseen).
func mysqlSessionSQL(ctx context.Context, q Querier, names []string) (string, []any, error) {
	isolation, extra, err := mysqlFlavour(ctx, q)
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT CONCAT_WS(CHAR(0), IFNULL(@@SESSION.sql_mode, ''), IFNULL(@@SESSION.character_set_client, ''), IFNULL(@@SESSION.%s, ''), CURRENT_USER(), IFNULL(CURRENT_ROLE(), ''), IFNULL(DATABASE(), '')", isolation)
	for _, v := range append([]string{
		"time_zone", "character_set_connection",
		"character_set_results", "collation_connection", "div_precision_increment",
		"group_concat_max_len", "lc_time_names", "sql_select_limit", "max_sort_length",
		"default_week_format", "sql_auto_is_null",
	}, extra...) {
		fmt.Fprintf(&b, ", IFNULL(@@SESSION.%s, '')", v)
	}
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, "`\x00") {
			return "", nil, fmt.Errorf("%w: SessionSettings: %q is not a MySQL user variable name", engine.ErrInvalidConfig, n)
		}
		fmt.Fprintf(&b, ", CONCAT('@', %s, '=', IFNULL(CAST(@`%s` AS CHAR), 'NULL'))", quoteMySQLString(n), n)
	}
	b.WriteString(")")
	return b.String(), nil, nil
}

// mysqlFlavour asks the server which it is: the name of its isolation
// variable (MariaDB before 11.1 has only tx_isolation, MySQL 8 only
// transaction_isolation), and MariaDB's variables that change what a read
// returns (system_versioning_asof: a system-versioned table as of the past;
// old_mode).
func mysqlFlavour(ctx context.Context, q Querier) (isolation string, extra []string, err error) {
	rows, err := q.QueryContext(ctx, "SELECT VERSION()")
	if err != nil {
		return "", nil, fmt.Errorf("gormflight: read the server's version: %w", err)
	}
	defer rows.Close()
	var version string
	if rows.Next() {
		err = rows.Scan(&version)
	}
	if err = errors.Join(err, rows.Err()); err != nil {
		return "", nil, fmt.Errorf("gormflight: read the server's version: %w", err)
	}
	if strings.Contains(strings.ToLower(version), "mariadb") {
		return "tx_isolation", []string{"system_versioning_asof", "old_mode"}, nil
	}
	return "transaction_isolation", nil, nil
}

// mysqlUnservable says why a MySQL fingerprint's session cannot be served
// from the cache, or "": an sql_mode in which statements read otherwise
// than the analyser reads them ("x" as a name: ANSI_QUOTES, which ANSI and
// ORACLE imply; \ as a plain character in strings: NO_BACKSLASH_ESCAPES);
// a client character set whose multi-byte characters hold the byte of a
// backslash, which the analyser would read as an escape; or READ
// UNCOMMITTED, whose reads of rows another transaction has not committed
// would outlive its rollback in the cache.
func mysqlUnservable(fp string) string {
	f := strings.SplitN(fp, "\x00", 4)
	if len(f) < 4 {
		return "its session could not be read"
	}
	mode, charset, isolation := f[0], strings.ToLower(f[1]), strings.ToUpper(f[2])
	switch {
	case strings.Contains(mode, "ANSI_QUOTES") || strings.Contains(mode, "NO_BACKSLASH_ESCAPES"):
		return "the session's sql_mode has ANSI_QUOTES or NO_BACKSLASH_ESCAPES, which change how MySQL reads names and strings; the plugin reads statements in the default sql_mode"
	case charset == "sjis" || charset == "cp932" || charset == "big5" || charset == "gbk" || charset == "gb18030":
		return "the client character set " + charset + " has characters that hold the byte of a backslash, which the plugin would read as an escape"
	case strings.Contains(isolation, "UNCOMMITTED"):
		return "the session reads uncommitted rows (READ UNCOMMITTED), which the cache would keep past their rollback"
	}
	return ""
}

// quoteMySQLString quotes s as a MySQL string literal.
func quoteMySQLString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// sqliteTempMark ends the fingerprint of an SQLite session that has
// temporary tables, views or triggers.
const sqliteTempMark = "\ntemp"

// sqliteSessionSQL is the fingerprint of an SQLite connection: the
// databases attached to it and their files, the pragma that reorders
// unordered results, whether LIKE tells case (case_sensitive_like, which
// cannot be read back, shows in what 'a' LIKE 'A' returns), and whether it
// has temporary objects. SQLite has no
// session settings to name.
func sqliteSessionSQL(_ context.Context, _ Querier, names []string) (string, []any, error) {
	if len(names) > 0 {
		return "", nil, fmt.Errorf("%w: SessionSettings: SQLite has no session settings", engine.ErrInvalidConfig)
	}
	return `SELECT (SELECT group_concat(name || '=' || file, char(10)) FROM pragma_database_list) || char(10) ||
	(SELECT reverse_unordered_selects FROM pragma_reverse_unordered_selects) || ('a' LIKE 'A') ||
	CASE WHEN EXISTS (SELECT 1 FROM sqlite_temp_master) THEN '` + sqliteTempMark + `' ELSE '' END`, nil, nil
}
