package gormflight

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Defects an adversarial review found in the MariaDB and SQLite support,
// each a test that failed before its fix.

// readsOwnAfter runs set on a db.Connection of in and checks that the
// connection's cached read of q gives what it reads live there.
func readsOwnAfter(t *testing.T, in *instance, set, q, who string) {
	t.Helper()
	err := in.db.Connection(func(c *gorm.DB) error {
		adminExec(t, c, set)
		own := queryRows(t, c, q)
		if got := sessRows(t, c, q); got != own {
			t.Errorf("%s read %s, want its own %s", who, got, own)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rvOpenOneConn opens d's database with a pool of one connection, so that
// every statement on the pool runs on the same session.
func rvOpenOneConn(t *testing.T, d *testDB) *gorm.DB {
	t.Helper()
	db := d.open(t)
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(1)
	return db
}

// ---------------------------------------------------------------------------
// SQLite: "x IN table-name" reads the table: a write to it invalidates.

func TestDialectSQLiteInTableOperandIsRead(t *testing.T) {
	d := &sqliteTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live) // rows 1:real-1, 2:real-2
	sel := "gft_rv_sel_" + randHex(4)
	cascadeExec(t, live, "CREATE TABLE "+sel+" (id bigint);\nINSERT INTO "+sel+" VALUES (1)")
	ins := d.instances(t, 2, nil)
	q := "SELECT id, name FROM " + table + " WHERE id IN " + sel + " ORDER BY id"
	if got := sessRows(t, ins[0].db, q); got != "[1:real-1]" {
		t.Fatalf("first read %s, want [1:real-1]", got)
	}
	// A write through the plugin (instance B) to the table behind IN.
	if err := ins[1].db.Exec("INSERT INTO " + sel + " VALUES (2)").Error; err != nil {
		t.Fatal(err)
	}
	want := queryRows(t, live, q)
	if got := sessRows(t, ins[0].db, q); got != want {
		t.Errorf("after B's INSERT INTO %s returned, A read %s, want %s (stale: %s behind IN is not a read)", sel, got, want, sel)
	}
}

// ---------------------------------------------------------------------------
// SQLite: PRAGMA case_sensitive_like changes what LIKE returns on one
// connection: a db.Connection that set it reads uncached, its rows never
// served to the pool's reads.

func TestDialectSQLiteCaseSensitiveLike(t *testing.T) {
	d := &sqliteTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live)
	q := "SELECT id, name FROM " + table + " WHERE name LIKE 'REAL%' ORDER BY id"
	want := queryRows(t, live, q) // [1:real-1 2:real-2]
	ins := d.instances(t, 2, nil)
	a, b := ins[0], ins[1]
	readsOwnAfter(t, a, "PRAGMA case_sensitive_like = 1", q, "A's connection with case_sensitive_like") // [] there
	if got := sessRows(t, b.db, q); got != want {
		t.Errorf("B (default pragmas) read %s, want %s: it was served the rows of A's case-sensitive session", got, want)
	}
}

// ---------------------------------------------------------------------------
// MariaDB: a db.Connection that sets a session variable reads uncached,
// whether or not the fingerprint lists the variable, and never fills the
// pool's keys.

// READ UNCOMMITTED: a dirty row read on one connection is never stored,
// so it cannot outlive the rollback of the transaction that wrote it.
func TestDialectMySQLReadUncommitted(t *testing.T) {
	d := &mysqlTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live)
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	want := queryRows(t, live, q)
	ins := d.instances(t, 2, nil)
	a, b := ins[0], ins[1]
	// B's transaction writes a row it will roll back.
	tx := b.db.Begin()
	if err := tx.Exec("UPDATE " + table + " SET name = 'dirty' WHERE id = 1").Error; err != nil {
		t.Fatal(err)
	}
	err := a.db.Connection(func(c *gorm.DB) error {
		adminExec(t, c, "SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED")
		sessRows(t, c, q) // sees the dirty row, as this session may
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	if got := sessRows(t, b.db, q); got != want {
		t.Errorf("after the rollback B read %s, want %s: a row no transaction committed, cached by a READ UNCOMMITTED session", got, want)
	}
}

// system_versioning_asof: a session reading a system-versioned table as
// of the past never stores the old rows under the pool's key.
func TestDialectMySQLSystemVersioningAsOf(t *testing.T) {
	d := &mysqlTestDB
	live := d.open(t)
	table := "gft_rv_ver_" + randHex(4)
	adminExec(t, live, "CREATE TABLE "+table+" (id bigint PRIMARY KEY, name varchar(64) NOT NULL) WITH SYSTEM VERSIONING")
	t.Cleanup(func() { _ = live.Exec("DROP TABLE IF EXISTS " + table).Error })
	adminExec(t, live, "INSERT INTO "+table+" VALUES (1, 'old-1'), (2, 'old-2')")
	var past string
	if err := live.Raw("SELECT CAST(NOW(6) AS CHAR)").Scan(&past).Error; err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	ins := d.instances(t, 2, nil)
	a, b := ins[0], ins[1]
	if err := b.db.Exec("UPDATE " + table + " SET name = 'new'").Error; err != nil {
		t.Fatal(err)
	}
	want := queryRows(t, live, q) // [1:new 2:new]
	readsOwnAfter(t, a, "SET SESSION system_versioning_asof = '"+past+"'", q, "A's session as of "+past)
	if got := sessRows(t, b.db, q); got != want {
		t.Errorf("after B's UPDATE returned, B read %s, want %s: the rows of A's session as of the past", got, want)
	}
}

// ---------------------------------------------------------------------------
// MariaDB: a temporary table made inside a transaction in db.Connection
// (where the plugin cannot tell the connection) keeps every dedicated
// connection's reads uncached, not only for the CREATE's held announcement
// (LoadTimeout, which the test shortens to 1s).

func TestDialectMySQLTempTableInConnectionTransaction(t *testing.T) {
	d := &mysqlTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live)
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	want := queryRows(t, live, q)
	ins := d.instances(t, 2, func(cfg *Config) { cfg.LoadTimeout = time.Second })
	a, b := ins[0], ins[1]
	err := a.db.Connection(func(c *gorm.DB) error {
		err := c.Transaction(func(tx *gorm.DB) error {
			return tx.Exec("CREATE TEMPORARY TABLE " + table + " (id bigint, name varchar(64))").Error
		})
		if err != nil {
			return err
		}
		adminExec(t, c, "INSERT INTO "+table+" VALUES (9, 'temp-9')")
		time.Sleep(1500 * time.Millisecond) // the held announcement expires
		if got := sessRows(t, c, q); got != "[9:temp-9]" {
			t.Errorf("A's connection read %s, want its temporary table's [9:temp-9]", got)
		}
		if got := sessRows(t, b.db, q); got != want {
			t.Errorf("B read %s, want the real table's %s: A's temporary rows were stored under the pool's key", got, want)
		}
		return c.Exec("DROP TEMPORARY TABLE " + table).Error
	})
	if err != nil {
		t.Fatal(err)
	}
}

// MariaDB: a statement that makes a temporary table on a pooled
// connection but does not start with CREATE (a compound statement, SET
// STATEMENT ... FOR) changes the session too: the pool's reads run
// uncached, and the temporary rows are stored for no instance.
func TestDialectMySQLTempTableNotAtStatementStart(t *testing.T) {
	for _, c := range []struct{ name, stmt string }{
		{"compound statement", "BEGIN NOT ATOMIC CREATE TEMPORARY TABLE {t} (id bigint, name varchar(64)); INSERT INTO {t} VALUES (9, 'temp-9'); END"},
		{"SET STATEMENT FOR", "SET STATEMENT max_statement_time = 100 FOR CREATE TEMPORARY TABLE {t} (id bigint, name varchar(64)) SELECT 9 AS id, 'temp-9' AS name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := &mysqlTestDB
			live := d.open(t)
			table := sessDialectTable(t, d, live)
			q := "SELECT id, name FROM " + table + " ORDER BY id"
			want := queryRows(t, live, q)
			prefix := testPrefix(t)
			a := installPlugin(t, rvOpenOneConn(t, d), testConfig(openRedis(t, ""), prefix))
			b := installPlugin(t, d.open(t), testConfig(openRedis(t, ""), prefix))
			if err := a.db.Exec(strings.ReplaceAll(c.stmt, "{t}", table)).Error; err != nil {
				t.Fatal(err)
			}
			sessRows(t, a.db, q) // a fill on the pool's only connection
			if got := sessRows(t, b.db, q); got != want {
				t.Errorf("B read %s, want the real table's %s: a temporary table's rows were stored under the pool's key", got, want)
			}
			adminExec(t, a.db, "DROP TEMPORARY TABLE IF EXISTS "+table)
		})
	}
}

// MariaDB: SET STATEMENT ... FOR UPDATE writes the UPDATE's table (not a
// locking clause, FOR UPDATE).
func TestDialectMySQLSetStatementForUpdate(t *testing.T) {
	d := &mysqlTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live)
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	ins := d.instances(t, 2, nil)
	a, b := ins[0], ins[1]
	sessRows(t, b.db, q)
	if err := a.db.Exec("SET STATEMENT max_statement_time = 100 FOR UPDATE " + table + " SET name = 'new' WHERE id = 1").Error; err != nil {
		t.Fatal(err)
	}
	expectLive(t, live, b, q, "after A's UPDATE returned,")
}

// MariaDB with a client character set whose multi-byte characters hold
// the byte of a backslash (sjis, cp932, big5, gbk, gb18030): the analyser
// would read 0x5c as an escape, MariaDB as part of a character, so a string
// would end elsewhere and a table after it go unseen. Such a pool is
// refused, and a connection that switches to one reads uncached.
func TestDialectMySQLMultibyteCharset(t *testing.T) {
	d := &mysqlTestDB
	d.open(t) // skips without MariaDB
	db, err := gorm.Open(mysql.Open(mysqlDSN()+"&charset=sjis"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	closeWhenDone(t, db)
	p, err := New(testConfig(openRedis(t, ""), testPrefix(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := db.Use(p); !errors.Is(err, ErrUnsupportedDialect) {
		t.Errorf("db.Use with charset sjis: %v, want ErrUnsupportedDialect", err)
	}
	expectUncachedAfter(t, d, "SET NAMES sjis")
}

// SQLite: a pool opened with case_sensitive_like in the DSN shares no keys
// with a pool without it: its fingerprint shows what 'a' LIKE 'A' returns.
func TestDialectSQLiteDSNPragma(t *testing.T) {
	d := &sqliteTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live)
	q := "SELECT id, name FROM " + table + " WHERE name LIKE 'REAL%' ORDER BY id"
	prefix := testPrefix(t)
	b := installPlugin(t, d.open(t), testConfig(openRedis(t, ""), prefix))
	csl, err := gorm.Open(sqlite.Open(sqliteFile(t)+"?_pragma=busy_timeout(30000)&_pragma=case_sensitive_like(1)"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	closeWhenDone(t, csl)
	own := queryRows(t, csl, q) // []
	a := installPlugin(t, csl, testConfig(openRedis(t, ""), prefix))
	sessRows(t, b.db, q) // B caches [1:real-1 2:real-2]
	if got := sessRows(t, a.db, q); got != own {
		t.Errorf("A (case_sensitive_like on) read %s, want its own %s", got, own)
	}
}

// ---------------------------------------------------------------------------
// MariaDB: DDL commits the open transaction implicitly: the writes before
// it are invalidated then, and a Rollback after it does not undo that.

func TestDialectMySQLImplicitCommitThenRollback(t *testing.T) {
	d := &mysqlTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live)
	junk := "gft_rv_junk_" + randHex(4)
	t.Cleanup(func() { _ = live.Exec("DROP TABLE IF EXISTS " + junk).Error })
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	ins := d.instances(t, 2, nil)
	a, b := ins[0], ins[1]
	sessRows(t, b.db, q) // cached: the real rows
	tx := a.db.Begin()
	if err := tx.Exec("UPDATE " + table + " SET name = 'new' WHERE id = 1").Error; err != nil {
		t.Fatal(err)
	}
	if err := tx.Exec("CREATE TABLE " + junk + " (id int)").Error; err != nil { // commits the UPDATE
		t.Fatal(err)
	}
	if err := tx.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	want := queryRows(t, live, q)
	if got := sessRows(t, b.db, q); got != want {
		t.Errorf("after the transaction ended, B read %s, want the database's %s (the UPDATE was committed by CREATE TABLE)", got, want)
	}
}

// ---------------------------------------------------------------------------
// MariaDB: SET autocommit = 0 on a dedicated connection: its writes are
// announced as a transaction the plugin cannot follow (held until
// LoadTimeout), so no instance stores or serves the rows from before them
// until the COMMIT that makes them visible.

func TestDialectMySQLAutocommitOff(t *testing.T) {
	d := &mysqlTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live)
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	ins := d.instances(t, 2, nil)
	a, b := ins[0], ins[1]
	err := a.db.Connection(func(c *gorm.DB) error {
		adminExec(t, c, "SET autocommit = 0")
		adminExec(t, c, "UPDATE "+table+" SET name = 'new' WHERE id = 1")
		sessRows(t, b.db, q) // B fills with the committed rows
		adminExec(t, c, "COMMIT")
		adminExec(t, c, "SET autocommit = 1")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	expectLive(t, live, b, q, "after COMMIT returned,")
}

// ---------------------------------------------------------------------------
// MariaDB: GORM's Migrator().DropTable runs "SET FOREIGN_KEY_CHECKS = 0;"
// and "= 1;" inside db.Connection: a variable that changes no result, so
// the pool stays cached.

func TestDialectMySQLMigratorDropTableKeepsCaching(t *testing.T) {
	d := &mysqlTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live)
	scratch := "gft_rv_drop_" + randHex(4)
	adminExec(t, live, "CREATE TABLE "+scratch+" (id int)")
	t.Cleanup(func() { _ = live.Exec("DROP TABLE IF EXISTS " + scratch).Error })
	a := d.instances(t, 1, nil)[0]
	if err := a.db.Migrator().DropTable(scratch); err != nil {
		t.Fatal(err)
	}
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	before := a.p.Stats()
	for range 3 {
		sessRows(t, a.db, q)
	}
	s := a.p.Stats()
	if hits := s.Hits - before.Hits; hits != 2 {
		t.Errorf("three cached reads after Migrator().DropTable: %d hits, %d bypassed; want 2 hits", hits, s.Bypassed-before.Bypassed)
	}
}
