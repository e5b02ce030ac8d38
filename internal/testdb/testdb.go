// Package testdb gives the tests of every adapter the same three
// databases (PostgreSQL, MariaDB or MySQL, SQLite) and the same way to
// count at the source of truth: gft_record(tag, ms), a function the
// database itself runs for each execution (PostgreSQL and MariaDB insert a
// row into gft_calls, SQLite calls a Go function it was given), which
// sleeps ms milliseconds and returns 1. Only tests import it.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sqlite "github.com/glebarez/go-sqlite"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Names are the databases, as GORM names their dialects.
var Names = []string{"postgres", "mysql", "sqlite"}

// Required reports whether a missing service fails the test instead of
// skipping it (CI, or GORMFLIGHT_TEST_REQUIRED=1).
func Required() bool {
	return os.Getenv("GORMFLIGHT_TEST_REQUIRED") == "1" || os.Getenv("CI") != ""
}

// Unavailable fails or skips t for a missing service.
func Unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if Required() {
		t.Fatalf("%s unavailable: %v", what, err)
	}
	t.Skipf("%s unavailable (set GORMFLIGHT_TEST_REQUIRED=1 to fail instead): %v", what, err)
}

// OpenDefect skips a test that shows a defect not fixed yet, unless
// GORMFLIGHT_OPEN_DEFECTS=1: CI stays green, and the test still fails on
// demand until the defect is fixed and the call removed.
func OpenDefect(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("GORMFLIGHT_OPEN_DEFECTS") != "1" {
		t.Skipf("open defect (GORMFLIGHT_OPEN_DEFECTS=1 runs it): %s", what)
	}
}

// PostgresDSN is GORMFLIGHT_PG_DSN or the local test database.
func PostgresDSN() string {
	if v := os.Getenv("GORMFLIGHT_PG_DSN"); v != "" {
		return v
	}
	return "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable"
}

// MySQLDSN is GORMFLIGHT_MYSQL_DSN or the local MariaDB, without options.
func MySQLDSN() string {
	if v := os.Getenv("GORMFLIGHT_MYSQL_DSN"); v != "" {
		return v
	}
	return "root@tcp(127.0.0.1:3306)/test"
}

// MySQLParseTimeDSN is MySQLDSN with parseTime, as GORM's users set it.
func MySQLParseTimeDSN() string {
	dsn := MySQLDSN()
	if strings.Contains(dsn, "?") {
		return dsn + "&parseTime=true"
	}
	return dsn + "?parseTime=true"
}

// SQLiteDSN is the DSN of an SQLite file, in WAL mode with a busy timeout
// so that instances can write beside readers.
func SQLiteDSN(file string) string {
	return file + "?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)"
}

var sqliteFiles sync.Map // testing.TB -> string

// SQLiteFile returns t's SQLite database file, made on the first call: the
// instances of one test share it.
func SQLiteFile(t testing.TB) string {
	if f, ok := sqliteFiles.Load(t); ok {
		return f.(string)
	}
	f, _ := sqliteFiles.LoadOrStore(t, filepath.Join(t.TempDir(), "test.db"))
	t.Cleanup(func() { sqliteFiles.Delete(t) })
	return f.(string)
}

// Connector returns a driver.Connector for t's database of kind name.
func Connector(t testing.TB, name string) driver.Connector {
	t.Helper()
	switch name {
	case "postgres":
		cfg, err := pgx.ParseConfig(PostgresDSN())
		if err != nil {
			t.Fatal(err)
		}
		return stdlib.GetConnector(*cfg)
	case "mysql":
		cfg, err := mysql.ParseDSN(MySQLParseTimeDSN())
		if err != nil {
			t.Fatal(err)
		}
		c, err := mysql.NewConnector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	case "sqlite":
		RegisterSQLiteRecording()
		return dsnConnector{dsn: SQLiteDSN(SQLiteFile(t)), driver: sqliteDriver()}
	}
	t.Fatalf("no test database %q", name)
	return nil
}

// sqliteDriver is the driver registered as "sqlite", whose connections
// have the functions RegisterScalarFunction registered.
func sqliteDriver() driver.Driver {
	db, _ := sql.Open("sqlite", "")
	defer db.Close()
	return db.Driver()
}

// dsnConnector opens a driver's connections by DSN.
type dsnConnector struct {
	dsn    string
	driver driver.Driver
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.driver }

// Ping checks that db answers, or fails or skips t.
func Ping(t testing.TB, name string, db *sql.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		Unavailable(t, name, err)
	}
}

// ---------------------------------------------------------------------------
// The recording function

// RecordingSQL creates gft_calls and gft_record on PostgreSQL and MariaDB,
// one statement each, idempotent.
var RecordingSQL = map[string][]string{
	"postgres": {
		`CREATE TABLE IF NOT EXISTS gft_calls (tag text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`,
		`CREATE INDEX IF NOT EXISTS gft_calls_tag ON gft_calls (tag)`,
		`CREATE OR REPLACE FUNCTION gft_record(p_tag text, p_ms int) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	INSERT INTO gft_calls(tag) VALUES (p_tag);
	IF p_ms > 0 THEN PERFORM pg_sleep(p_ms / 1000.0); END IF;
	RETURN 1;
END $$`,
	},
	"mysql": {
		`CREATE TABLE IF NOT EXISTS gft_calls (tag varchar(255) NOT NULL, at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), KEY (tag))`,
		`CREATE FUNCTION IF NOT EXISTS gft_record(p_tag varchar(255), p_ms int) RETURNS int NOT DETERMINISTIC MODIFIES SQL DATA
BEGIN
	INSERT INTO gft_calls(tag) VALUES (p_tag);
	IF p_ms > 0 THEN DO SLEEP(p_ms / 1000); END IF;
	RETURN 1;
END`,
	},
}

// sqliteCalls counts gft_record's executions by tag, for every SQLite
// database of the process.
var sqliteCalls sync.Map // tag -> *atomic.Int64

var sqliteRecording sync.Once

// RegisterSQLiteRecording gives SQLite gft_record(tag, ms); call it before
// the first SQLite connection opens.
func RegisterSQLiteRecording() {
	sqliteRecording.Do(func() {
		sqlite.MustRegisterScalarFunction("gft_record", 2, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			tag, _ := args[0].(string)
			ms, _ := args[1].(int64)
			n, _ := sqliteCalls.LoadOrStore(tag, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
			if ms > 0 {
				time.Sleep(time.Duration(ms) * time.Millisecond)
			}
			return int64(1), nil
		})
	})
}

// Calls counts the executions of gft_record with tag on db, a database of
// kind name.
func Calls(t testing.TB, name string, db *sql.DB, tag string) int64 {
	t.Helper()
	if name == "sqlite" {
		if n, ok := sqliteCalls.Load(tag); ok {
			return n.(*atomic.Int64).Load()
		}
		return 0
	}
	var n int64
	if err := db.QueryRow(Placeholders(name, "SELECT count(*) FROM gft_calls WHERE tag = ?"), tag).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Placeholders rewrites ? into PostgreSQL's $1, $2, ... for name
// "postgres"; other databases take ? as written.
func Placeholders(name, query string) string {
	if name != "postgres" {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Unique returns a name no other test run uses: prefix and random hex.
func Unique(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
