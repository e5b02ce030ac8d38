package gormflight

import (
	"context"
	"fmt"
	"strings"

	"github.com/gormflight/gormflight/internal/sqlscan"
	"gorm.io/gorm"
)

// dialect is what the plugin does differently for each kind of database:
// how its SQL is read (sqlscan), how a session's fingerprint is taken
// (session.go), where foreign keys and triggers are listed (cascade.go) and
// what names the database in cache keys.
type dialect struct {
	name string          // GORM's Dialector.Name, part of every cache key
	sql  sqlscan.Dialect // how statements are read

	// schemaSQL lists foreign keys and triggers (see cascade.go's
	// readSchema for its columns).
	schemaSQL string
	// sessionSQL returns the fingerprint query of a session and its
	// arguments, for Config.SessionSettings names.
	sessionSQL func(names []string) (string, []any, error)
	// privateSession reports whether a fingerprint belongs to a session
	// whose entries cannot be shared and that has no identity to key them
	// by (SQLite's temporary tables): its reads run uncached.
	privateSession func(fp string) bool
	// checkPool refuses, at Initialize, a pool whose session (fingerprint
	// fp) the analyser cannot read statements of; nil accepts every one.
	checkPool func(fp string) error
	// tempUnseen: the fingerprint cannot show temporary tables (MySQL), so
	// a dedicated connection that created one, as its statements show,
	// reads uncached.
	tempUnseen bool
	// database names the database at Initialize when Config.Database is
	// empty.
	database func(db *gorm.DB) (string, error)
	// quote quotes a name as the catalog stores it, for normTable.
	quote func(name string) string
}

// dialectOf returns the dialect of a GORM dialector's name, or an error
// wrapping ErrUnsupportedDialect.
func dialectOf(name string) (*dialect, error) {
	switch name {
	case "postgres":
		return &postgresDialect, nil
	case "mysql":
		return &mysqlDialect, nil
	case "sqlite":
		return &sqliteDialect, nil
	}
	return nil, fmt.Errorf("%w: %q (PostgreSQL, MySQL, MariaDB and SQLite are supported)", ErrUnsupportedDialect, name)
}

// catalogName returns the generation name of a table name as a catalog
// lists it (unquoted, in the case it is stored in).
func (d *dialect) catalogName(name string) string { return d.normTable(d.quote(name)) }

var postgresDialect = dialect{
	name:      "postgres",
	sql:       sqlscan.PostgreSQL,
	schemaSQL: pgSchemaSQL,
	sessionSQL: func(names []string) (string, []any, error) {
		return pgSessionSQL, []any{names}, nil
	},
	privateSession: func(string) bool { return false }, // a temporary schema's session is in its fingerprint
	database:       migratorDatabase,
	quote:          quoteWith(`"`),
}

var mysqlDialect = dialect{
	name:           "mysql",
	sql:            sqlscan.MySQL,
	schemaSQL:      mysqlSchemaSQL,
	sessionSQL:     mysqlSessionSQL,
	privateSession: mysqlModeUnread,
	checkPool: func(fp string) error {
		if mysqlModeUnread(fp) {
			return fmt.Errorf("%w: the session's sql_mode has ANSI_QUOTES or NO_BACKSLASH_ESCAPES, which change how MySQL reads names and strings; the plugin reads statements in the default sql_mode", ErrUnsupportedDialect)
		}
		return nil
	},
	tempUnseen: true,
	database:   migratorDatabase,
	quote:      quoteWith("`"),
}

var sqliteDialect = dialect{
	name:       "sqlite",
	sql:        sqlscan.SQLite,
	schemaSQL:  sqliteSchemaSQL,
	sessionSQL: sqliteSessionSQL,
	privateSession: func(fp string) bool {
		return strings.HasSuffix(fp, sqliteTempMark)
	},
	database: sqliteDatabase,
	quote:    quoteWith(`"`),
}

// quoteWith returns a function that quotes a name with q, doubling q
// inside it.
func quoteWith(q string) func(string) string {
	return func(name string) string { return q + strings.ReplaceAll(name, q, q+q) + q }
}

// migratorDatabase is the current database, as GORM's migrator reads it
// (PostgreSQL: current_database(); MySQL: DATABASE()).
func migratorDatabase(db *gorm.DB) (string, error) {
	if name := db.Migrator().CurrentDatabase(); name != "" {
		return name, nil
	}
	return "", fmt.Errorf("gormflight: cannot identify the database for cache keys (set Config.Database): %w", db.Error)
}

// sqliteDatabase is the main database's file, which names an SQLite
// database: two instances share entries only if they open the same file.
// An in-memory or temporary database has no file, and is no other
// process's: it needs a Config.Database of its own.
func sqliteDatabase(db *gorm.DB) (string, error) {
	var file string
	err := db.ConnPool.QueryRowContext(context.Background(), `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&file)
	if err != nil {
		return "", fmt.Errorf("gormflight: read the SQLite database's file for cache keys: %w", err)
	}
	if file == "" {
		return "", fmt.Errorf("%w: an in-memory or temporary SQLite database has no file to name it in cache keys: set Config.Database to a name no other database behind the same Redis prefix uses", ErrInvalidConfig)
	}
	return "sqlite:" + file, nil
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

// mysqlSessionSQL is the fingerprint of a MySQL or MariaDB session: the
// current user and role, the current database (USE changes it), every
// session variable that shapes what a query returns, and the user
// variables Config.SessionSettings names (as a function that reads them
// sees them). Temporary tables do not show (tempUnseen).
func mysqlSessionSQL(names []string) (string, []any, error) {
	var b strings.Builder
	b.WriteString("SELECT CONCAT_WS('\\n', CURRENT_USER(), IFNULL(CURRENT_ROLE(), ''), IFNULL(DATABASE(), '')")
	for _, v := range []string{
		"sql_mode", "time_zone", "character_set_client", "character_set_connection",
		"character_set_results", "collation_connection", "div_precision_increment",
		"group_concat_max_len", "lc_time_names", "sql_select_limit", "max_sort_length",
		"default_week_format", "sql_auto_is_null",
	} {
		fmt.Fprintf(&b, ", IFNULL(@@SESSION.%s, '')", v)
	}
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, "`\x00") {
			return "", nil, fmt.Errorf("%w: SessionSettings: %q is not a MySQL user variable name", ErrInvalidConfig, n)
		}
		fmt.Fprintf(&b, ", CONCAT('@', %s, '=', IFNULL(CAST(@`%s` AS CHAR), 'NULL'))", quoteMySQLString(n), n)
	}
	b.WriteString(")")
	return b.String(), nil, nil
}

// mysqlModeUnread reports whether a MySQL fingerprint has an sql_mode in
// which statements read otherwise than the analyser reads them: "x" as a
// name (ANSI_QUOTES, which ANSI and ORACLE imply) or \ as a plain
// character in strings (NO_BACKSLASH_ESCAPES). Its reads run uncached.
func mysqlModeUnread(fp string) bool {
	return strings.Contains(fp, "ANSI_QUOTES") || strings.Contains(fp, "NO_BACKSLASH_ESCAPES")
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
// unordered results, and whether it has temporary objects. SQLite has no
// session settings to name.
func sqliteSessionSQL(names []string) (string, []any, error) {
	if len(names) > 0 {
		return "", nil, fmt.Errorf("%w: SessionSettings: SQLite has no session settings", ErrInvalidConfig)
	}
	return `SELECT (SELECT group_concat(name || '=' || file, char(10)) FROM pragma_database_list) || char(10) ||
	(SELECT reverse_unordered_selects FROM pragma_reverse_unordered_selects) ||
	CASE WHEN EXISTS (SELECT 1 FROM sqlite_temp_master) THEN '` + sqliteTempMark + `' ELSE '' END`, nil, nil
}
