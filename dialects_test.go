package gormflight

import (
	"fmt"
	"sync"
	"testing"

	"github.com/glebarez/sqlite"
	"github.com/gormflight/gormflight/internal/testdb"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// The suites that must hold on every database the plugin serves run once
// per testDB: PostgreSQL, MariaDB (or MySQL) and SQLite. Each gives the
// same recording function, gft_record(tag, ms), which the database itself
// runs: PostgreSQL and MariaDB insert a row into gft_calls per execution,
// SQLite calls a Go function it was given, which counts.

// testDB is one database the dialect suites run on.
type testDB struct {
	name string // GORM's dialect name, and the subtest's
	// open opens a handle of its own, as one application instance has, on
	// the test's database (for SQLite, a file of the test's own), with the
	// recording function ready.
	open func(t testing.TB) *gorm.DB
	// calls counts the executions of gft_record with tag.
	calls func(t testing.TB, db *gorm.DB, tag string) int64
	// setup runs DDL statements once per database, under lock where
	// processes share the database.
	setup func(t testing.TB, db *gorm.DB, lock schemaLock, statements ...string)
	// text casts a parameter to the database's text type.
	text string
}

// testDBs returns the databases the dialect suites run on.
func testDBs() []*testDB { return []*testDB{&postgresTestDB, &mysqlTestDB, &sqliteTestDB} }

// forEachDB runs fn as a subtest per database.
func forEachDB(t *testing.T, fn func(t *testing.T, d *testDB)) {
	for _, d := range testDBs() {
		t.Run(d.name, func(t *testing.T) { fn(t, d) })
	}
}

// instances returns n instances on d's database sharing a fresh prefix on
// the shared Redis.
func (d *testDB) instances(t testing.TB, n int, mod func(*Config)) []*instance {
	t.Helper()
	prefix := testPrefix(t)
	out := make([]*instance, n)
	for i := range out {
		cfg := testConfig(openRedis(t, ""), prefix)
		if mod != nil {
			mod(&cfg)
		}
		out[i] = installPlugin(t, d.open(t), cfg)
	}
	return out
}

// ---------------------------------------------------------------------------
// PostgreSQL

var postgresTestDB = testDB{
	name:  "postgres",
	open:  openDB,
	calls: calls,
	setup: func(t testing.TB, db *gorm.DB, lock schemaLock, statements ...string) {
		t.Helper()
		once := pgSetups.get(lock)
		if err := once.do(db, func(tx *gorm.DB) error {
			for _, s := range statements {
				if err := tx.Exec(s).Error; err != nil {
					return fmt.Errorf("%s: %w", s, err)
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("PostgreSQL schema: %v", err)
		}
	},
	text: "CAST(? AS text)",
}

// pgSetups are the schemaOnce of each lock the dialect suites set up.
var pgSetups = schemaOnces{m: map[schemaLock]*schemaOnce{}}

type schemaOnces struct {
	mu sync.Mutex
	m  map[schemaLock]*schemaOnce
}

func (s *schemaOnces) get(lock schemaLock) *schemaOnce {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[lock] == nil {
		s.m[lock] = &schemaOnce{lock: lock}
	}
	return s.m[lock]
}

// ---------------------------------------------------------------------------
// MariaDB and MySQL

// testMySQLDSN is the MariaDB (or MySQL) the tests use, without options.
func testMySQLDSN() string { return testdb.MySQLDSN() }

// mysqlDSN is testMySQLDSN with parseTime, as GORM's users set it.
func mysqlDSN() string { return testdb.MySQLParseTimeDSN() }

var mysqlRecording sync.Once

var mysqlTestDB = testDB{
	name: "mysql",
	open: func(t testing.TB) *gorm.DB {
		t.Helper()
		db, err := gorm.Open(mysql.Open(mysqlDSN()), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			unavailable(t, "MariaDB", err)
		}
		closeWhenDone(t, db)
		var setupErr error
		mysqlRecording.Do(func() {
			setupErr = mysqlLocked(db, func(db *gorm.DB) error {
				for _, s := range testdb.RecordingSQL["mysql"] {
					if err := db.Exec(s).Error; err != nil {
						return fmt.Errorf("%s: %w", s, err)
					}
				}
				return nil
			})
		})
		if setupErr != nil {
			unavailable(t, "MariaDB schema", setupErr)
		}
		return db
	},
	calls: calls,
	setup: func(t testing.TB, db *gorm.DB, _ schemaLock, statements ...string) {
		t.Helper()
		err := mysqlLocked(db, func(db *gorm.DB) error {
			for _, s := range statements {
				if err := db.Exec(s).Error; err != nil {
					return fmt.Errorf("%s: %w", s, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("MariaDB schema: %v", err)
		}
	},
	text: "CAST(? AS CHAR)",
}

// mysqlLocked runs fn on one connection holding a named lock, so that
// schema setups of concurrent test processes do not race (DDL commits as
// it runs: there is no transaction to hold it).
func mysqlLocked(db *gorm.DB, fn func(db *gorm.DB) error) error {
	return db.Session(&gorm.Session{NewDB: true}).Connection(func(conn *gorm.DB) error {
		var got int
		if err := conn.Raw("SELECT GET_LOCK('gft_schema', 60)").Scan(&got).Error; err != nil {
			return err
		}
		if got != 1 {
			return fmt.Errorf("GET_LOCK('gft_schema') returned %d", got)
		}
		defer conn.Exec("SELECT RELEASE_LOCK('gft_schema')")
		return fn(conn)
	})
}

// ---------------------------------------------------------------------------
// SQLite

// sqliteFile returns the database file of t: the instances of one test
// share it.
func sqliteFile(t testing.TB) string { return testdb.SQLiteFile(t) }

// registerSQLiteRecording gives SQLite gft_record (testdb).
func registerSQLiteRecording() { testdb.RegisterSQLiteRecording() }

var sqliteTestDB = testDB{
	name: "sqlite",
	open: func(t testing.TB) *gorm.DB {
		t.Helper()
		registerSQLiteRecording()
		// WAL lets readers run beside a writer; writers queue on the
		// busy timeout rather than fail.
		dsn := testdb.SQLiteDSN(sqliteFile(t))
		db, err := gorm.Open(sqlite.Open(dsn), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			t.Fatalf("open SQLite %s: %v", dsn, err)
		}
		return closeWhenDone(t, db)
	},
	calls: func(t testing.TB, _ *gorm.DB, tag string) int64 { return testdb.Calls(t, "sqlite", nil, tag) },
	setup: func(t testing.TB, db *gorm.DB, _ schemaLock, statements ...string) {
		t.Helper()
		for _, s := range statements {
			if err := db.Session(&gorm.Session{NewDB: true}).Exec(s).Error; err != nil {
				t.Fatalf("SQLite schema: %s: %v", s, err)
			}
		}
	},
	text: "CAST(? AS TEXT)",
}

// qualified returns table qualified with the schema (MySQL: the database)
// db's statements use by default.
func (d *testDB) qualified(t testing.TB, db *gorm.DB, table string) string {
	t.Helper()
	switch d.name {
	case "postgres":
		return "public." + table
	case "sqlite":
		return "main." + table
	}
	var name string
	if err := db.Session(&gorm.Session{NewDB: true}).Raw("SELECT DATABASE()").Scan(&name).Error; err != nil {
		t.Fatal(err)
	}
	return name + "." + table
}
