package gormflight

import (
	"errors"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/gormflight/gormflight/internal/sqlscan"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Sessions on MariaDB and SQLite: what a connection's statements change
// (USE, temporary tables, ATTACH, sql_mode) keys its reads, or keeps them
// uncached, and never reaches another session's reads.

// Tables and AlsoWrites read names in the dialect of the statement's
// database: a name another dialect reads is no error until then.
func TestDeclaredNamesByDialect(t *testing.T) {
	s := new(cacheSettings)
	Tables("`Orders`", `"Items"`, "[Lines]", "main.Users")(s)
	for _, c := range []struct {
		d    sqlscan.Dialect
		want []string
		errs bool
	}{
		{sqlscan.PostgreSQL, []string{"Items", "users"}, true}, // `Orders` and [Lines] are not names
		{sqlscan.MySQL, []string{"orders", "users"}, true},     // "Items" is a string, [Lines] nothing
		{sqlscan.SQLite, []string{"items", "lines", "orders", "users"}, false},
	} {
		got := slices.Sorted(slices.Values(s.declaredTables(c.d)))
		if !slices.Equal(got, c.want) {
			t.Errorf("%v: declared %v, want %v", c.d, got, c.want)
		}
		if err := s.declared.Errs[c.d]; (err != nil) != c.errs || err != nil && !errors.Is(err, ErrInvalidTableName) {
			t.Errorf("%v: error %v, want one: %v", c.d, err, c.errs)
		}
	}
}

// sessDialectTable creates table (id, name) with rows real-1 and real-2 on
// live's database.
func sessDialectTable(t *testing.T, d *testDB, live *gorm.DB) string {
	t.Helper()
	name := "gft_sess_" + randHex(5)
	cascadeExec(t, live, "CREATE TABLE "+name+" (id bigint PRIMARY KEY, name varchar(64) NOT NULL);\nINSERT INTO "+name+" VALUES (1, 'real-1'), (2, 'real-2')")
	if d.name != "sqlite" { // SQLite's file is the test's own
		t.Cleanup(func() { _ = live.Exec("DROP TABLE IF EXISTS " + name).Error })
	}
	return name
}

// A temporary table hides the table of its name for its connection only:
// read there after the real rows were cached, it gives its own rows, which
// no other session is served. MySQL's fingerprint cannot show it, so the
// statement that made it keeps the connection uncached; SQLite's shows it.
func TestSessionTempTableDialects(t *testing.T) {
	for _, d := range []*testDB{&mysqlTestDB, &sqliteTestDB} {
		t.Run(d.name, func(t *testing.T) {
			live := d.open(t)
			table := sessDialectTable(t, d, live)
			q := "SELECT id, name FROM " + table + " ORDER BY id"
			ins := d.instances(t, 3, nil)
			a, b, third := ins[0], ins[1], ins[2]
			want := queryRows(t, live, q)
			if got := sessRows(t, a.db, q); got != want { // cached on the pool
				t.Fatalf("A read %s, want %s", got, want)
			}
			temp, drop := "CREATE TEMPORARY TABLE "+table+" (id bigint, name varchar(64))", "DROP TEMPORARY TABLE "+table
			if d.name == "sqlite" {
				drop = "DROP TABLE temp." + table
			}
			// B's connection makes a temporary table with other rows first
			// (its CREATE invalidates the table), then A's does.
			err := b.db.Connection(func(cb *gorm.DB) error {
				adminExec(t, cb, temp)
				adminExec(t, cb, "INSERT INTO "+table+" VALUES (8, 'temp-8')")
				err := a.db.Connection(func(c *gorm.DB) error {
					adminExec(t, c, temp)
					adminExec(t, c, "INSERT INTO "+table+" VALUES (9, 'temp-9')")
					if got := sessRows(t, c, q); got != "[9:temp-9]" {
						t.Errorf("A's session with a temporary table read %s, want its own [9:temp-9]", got)
					}
					if got := sessRows(t, cb, q); got != "[8:temp-8]" {
						t.Errorf("B's session with a temporary table read %s, want its own [8:temp-8]", got)
					}
					if got := sessRows(t, third.db, q); got != want {
						t.Errorf("a third instance read %s, want the real table's %s", got, want)
					}
					return c.Exec(drop).Error
				})
				return errors.Join(err, cb.Exec(drop).Error)
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := sessRows(t, b.db, q); got != want {
				t.Errorf("after: another instance read %s, want %s", got, want)
			}
			if !a.p.session.inDoubt() {
				t.Errorf("nothing undoes a temporary table's session in %s, yet A's pool is cached again", d.name)
			}
		})
	}
}

// USE changes the database unqualified names read: a connection that ran
// it reads the other database's rows, cached under its own fingerprint,
// and never gets or gives the pool's.
func TestSessionUseDatabase(t *testing.T) {
	d := &mysqlTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live)
	other := "gft_use_" + randHex(5)
	adminExec(t, live, "CREATE DATABASE "+other)
	t.Cleanup(func() { _ = live.Exec("DROP DATABASE IF EXISTS " + other).Error })
	adminExec(t, live, "CREATE TABLE "+other+"."+table+" (id bigint PRIMARY KEY, name varchar(64) NOT NULL)")
	adminExec(t, live, "INSERT INTO "+other+"."+table+" VALUES (7, 'other-7')")
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	want := queryRows(t, live, q)
	ins := d.instances(t, 2, nil)
	a, b := ins[0], ins[1]
	if got := sessRows(t, a.db, q); got != want {
		t.Fatalf("A read %s, want %s", got, want)
	}
	err := a.db.Connection(func(c *gorm.DB) error {
		adminExec(t, c, "USE "+other)
		wantOther := queryRows(t, c, q)
		for i := range 2 { // the second a hit of the connection's own entry
			if got := sessRows(t, c, q); got != wantOther {
				t.Errorf("read %d after USE: %s, want the other database's %s", i, got, wantOther)
			}
		}
		if got := sessRows(t, b.db, q); got != want {
			t.Errorf("another instance read %s, want %s", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !a.p.session.inDoubt() {
		t.Errorf("the connection went back to the pool in the other database, yet A's pool is cached")
	}
}

// Two connections with different files attached under one name read
// different rows through the same SQL: each its own.
func TestSessionAttachedDatabase(t *testing.T) {
	d := &sqliteTestDB
	dir := t.TempDir()
	files := []string{filepath.Join(dir, "x.db"), filepath.Join(dir, "y.db")}
	for i, f := range files {
		db, err := gorm.Open(sqlite.Open(f), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			t.Fatal(err)
		}
		closeWhenDone(t, db)
		cascadeExec(t, db, "CREATE TABLE t (id bigint, name text);\nINSERT INTO t VALUES (1, '"+string(rune('x'+i))+"')")
	}
	ins := d.instances(t, 2, nil)
	q := "SELECT id, name FROM aux.t"
	attach := func(c *gorm.DB, file string) {
		adminExec(t, c, "ATTACH DATABASE '"+strings.ReplaceAll(file, "'", "''")+"' AS aux")
	}
	// B attaches y.db first: an ATTACH counts as a write to every table
	// (it bumps them all), and A's entry must outlive it.
	var got [2]string
	err := ins[1].db.Connection(func(b *gorm.DB) error {
		attach(b, files[1])
		err := ins[0].db.Connection(func(a *gorm.DB) error {
			attach(a, files[0])
			got[0] = sessRows(t, a, q)
			return nil
		})
		got[1] = sessRows(t, b, q)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != "[1:x]" || got[1] != "[1:y]" {
		t.Errorf("reads of aux.t with x.db and y.db attached: %v, want [1:x] and [1:y]", got)
	}
}

// An in-memory SQLite database has no file to name it in keys: Initialize
// asks for Config.Database, and with one caches.
func TestSQLiteInMemoryNeedsDatabase(t *testing.T) {
	registerSQLiteRecording()
	open := func() *gorm.DB {
		db, err := gorm.Open(sqlite.Open(":memory:"), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			t.Fatal(err)
		}
		return closeWhenDone(t, db)
	}
	p, err := New(testConfig(openRedis(t, ""), testPrefix(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := open().Use(p); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("db.Use on an in-memory database: %v, want ErrInvalidConfig", err)
	}
	cfg := testConfig(openRedis(t, ""), testPrefix(t))
	cfg.Database = "memory-" + randHex(4)
	in := installPlugin(t, open(), cfg)
	var n int
	for range 2 {
		if err := in.db.Scopes(Cache(time.Minute)).Raw("SELECT 41 + 1").Scan(&n).Error; err != nil || n != 42 {
			t.Fatalf("read: %d, %v", n, err)
		}
	}
	if s := in.p.Stats(); s.Hits != 1 || s.Loads != 1 {
		t.Errorf("two reads: %d hits, %d loads; want 1 and 1", s.Hits, s.Loads)
	}
}

// ANSI_QUOTES and NO_BACKSLASH_ESCAPES change how MySQL reads statements:
// a pool with either is refused, and a connection that sets one reads
// uncached.
func TestMySQLModesTheAnalyserCannotRead(t *testing.T) {
	d := &mysqlTestDB
	d.open(t) // skips without MariaDB
	p, err := New(testConfig(openRedis(t, ""), testPrefix(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	for _, mode := range []string{"ANSI_QUOTES", "NO_BACKSLASH_ESCAPES", "ANSI"} {
		db, err := gorm.Open(mysql.Open(mysqlDSN()+"&sql_mode="+url.QueryEscape("'"+mode+"'")), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			t.Fatal(err)
		}
		closeWhenDone(t, db)
		if err := db.Use(p); !errors.Is(err, ErrUnsupportedDialect) {
			t.Errorf("db.Use with sql_mode %s: %v, want ErrUnsupportedDialect", mode, err)
		}
	}
	expectUncachedAfter(t, d, "SET SESSION sql_mode = 'ANSI_QUOTES'")
}

// expectUncachedAfter checks that two cached reads on a db.Connection that
// ran set both run on the database.
func expectUncachedAfter(t *testing.T, d *testDB, set string) {
	t.Helper()
	in := d.instances(t, 1, nil)[0]
	tag := uniqueTag(t)
	err := in.db.Connection(func(c *gorm.DB) error {
		adminExec(t, c, set)
		for range 2 {
			var n int
			if err := c.Session(&gorm.Session{}).Scopes(Cache(time.Minute)).Raw("SELECT gft_record(?, 0) AS n", tag).Scan(&n).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := d.calls(t, in.db, tag); n != 2 {
		t.Errorf("two reads on a connection after %q ran %d times, want 2 (uncached)", set, n)
	}
}

// BEGIN run as a statement on a db.Connection begins a transaction no
// driver's Commit ends: the connection's reads, which see its uncommitted
// writes, run uncached, and its writes are announced until they can have
// committed, so that no instance keeps the rows from before them past the
// COMMIT.
func TestSessionSQLTransaction(t *testing.T) {
	forEachDB(t, func(t *testing.T, d *testDB) {
		live := d.open(t)
		table := sessDialectTable(t, d, live)
		q := "SELECT id, name FROM " + table + " ORDER BY id"
		ins := d.instances(t, 2, nil)
		a, b := ins[0], ins[1]
		before := queryRows(t, live, q)
		sessRows(t, b.db, q) // cached
		err := a.db.Connection(func(c *gorm.DB) error {
			adminExec(t, c, "BEGIN")
			adminExec(t, c, "UPDATE "+table+" SET name = 'new' WHERE id = 1")
			own := queryRows(t, c, q)
			if got := sessRows(t, c, q); got != own {
				t.Errorf("the transaction read %s, want its own %s", got, own)
			}
			if got := sessRows(t, b.db, q); got != before {
				t.Errorf("B read %s while the transaction was open, want the committed %s", got, before)
			}
			return c.Exec("COMMIT").Error
		})
		if err != nil {
			t.Fatal(err)
		}
		want := queryRows(t, live, q)
		for i, in := range ins {
			if got := sessRows(t, in.db, q); got != want {
				t.Errorf("instance %d read %s after COMMIT returned, want %s", i, got, want)
			}
		}
	})
}
