package gormflight

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"
)

// Defects a second adversarial review found in transactions begun in SQL,
// MySQL's implicit commits, MySQL's SET and the SessionUnseen rules: each
// test failed before its fix.

var errReview2Abort = errors.New("review2: abort")

// txRig is a test's table of real rows, the query that reads them, and
// instances A (on db) and B sharing a prefix.
func txRig(t *testing.T, d *testDB, db *gorm.DB) (live *gorm.DB, table, q string, a, b *instance) {
	t.Helper()
	live = d.open(t)
	table = sessDialectTable(t, d, live)
	a, b = rv2Pair(t, d, db)
	return live, table, "SELECT id, name FROM " + table + " ORDER BY id", a, b
}

// expectLive checks that B's cached read of q gives what the database
// holds, when (a moment of the test) has come.
func expectLive(t *testing.T, live *gorm.DB, b *instance, q, when string) {
	t.Helper()
	if got, want := sessRows(t, b.db, q), queryRows(t, live, q); got != want {
		t.Errorf("%s: B read %s, want the database's %s", when, got, want)
	}
}

// rv2Pair returns instance A (on db) and instance B (a handle of its own)
// sharing one prefix.
func rv2Pair(t *testing.T, d *testDB, db *gorm.DB) (a, b *instance) {
	t.Helper()
	prefix := testPrefix(t)
	a = installPlugin(t, db, testConfig(openRedis(t, ""), prefix))
	b = installPlugin(t, d.open(t), testConfig(openRedis(t, ""), prefix))
	return a, b
}

// ---------------------------------------------------------------------------
// 1. MySQL: SET autocommit = 0 stays in force after COMMIT: the next
// statement begins a new transaction implicitly. The plugin clears AspTx at
// COMMIT, so the connection's uncommitted writes are bumped as if
// committed, its reads of its own uncommitted rows are stored under the
// pool's key and served to every instance, and survive the ROLLBACK.

func TestSessionTxMySQLAutocommitOffSurvivesCommit(t *testing.T) {
	d := &mysqlTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live)
	other := sessDialectTable(t, d, live) // the first transaction writes another table
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	a, b := rv2Pair(t, d, d.open(t))
	sessRows(t, b.db, q)
	var dirty string
	err := a.db.Connection(func(c *gorm.DB) error {
		adminExec(t, c, "SET autocommit = 0")
		adminExec(t, c, "UPDATE "+other+" SET name = 'first' WHERE id = 1")
		adminExec(t, c, "COMMIT") // autocommit is still 0: a new transaction begins
		adminExec(t, c, "UPDATE "+table+" SET name = 'dirty' WHERE id = 2")
		dirty = sessRows(t, c, q) // its own uncommitted row
		committed := queryRows(t, live, q)
		if got := sessRows(t, b.db, q); got != committed {
			t.Errorf("while the implicit transaction is open B read %s, want the committed %s (A's read of %s was stored under the pool's key)", got, committed, dirty)
		}
		adminExec(t, c, "ROLLBACK")
		adminExec(t, c, "SET autocommit = 1")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	expectLive(t, live, b, q, "after ROLLBACK : a row no transaction committed")
}

// ---------------------------------------------------------------------------
// 2. COMMIT AND CHAIN (and ROLLBACK AND CHAIN) end a transaction and begin
// the next at once, on PostgreSQL and MySQL; the plugin reads them as a
// plain COMMIT.

func TestSessionTxCommitAndChain(t *testing.T) {
	for _, d := range []*testDB{&postgresTestDB, &mysqlTestDB} {
		ends := []string{"COMMIT AND CHAIN", "ROLLBACK AND CHAIN"}
		if d.name == "mysql" {
			// autocommit is already 1 inside START TRANSACTION: setting it
			// again ends nothing (checked on MariaDB 10.11).
			ends = append(ends, "SET autocommit = 1")
		} else {
			ends = append(ends, "END AND CHAIN")
		}
		for _, end := range ends {
			t.Run(d.name+"/"+strings.ReplaceAll(end, " ", "_"), func(t *testing.T) {
				live := d.open(t)
				table := sessDialectTable(t, d, live)
				other := sessDialectTable(t, d, live) // the first transaction writes another table
				q := "SELECT id, name FROM " + table + " ORDER BY id"
				a, b := rv2Pair(t, d, d.open(t))
				sessRows(t, b.db, q)
				err := a.db.Connection(func(c *gorm.DB) error {
					adminExec(t, c, "BEGIN")
					adminExec(t, c, "UPDATE "+other+" SET name = 'first' WHERE id = 1")
					adminExec(t, c, end) // a new transaction is open
					adminExec(t, c, "UPDATE "+table+" SET name = 'dirty' WHERE id = 2")
					sessRows(t, c, q)
					committed := queryRows(t, live, q)
					if got := sessRows(t, b.db, q); got != committed {
						t.Errorf("inside the chained transaction B read %s, want the committed %s", got, committed)
					}
					return c.Exec("ROLLBACK").Error
				})
				if err != nil {
					t.Fatal(err)
				}
				expectLive(t, live, b, q, "after ROLLBACK")
			})
		}
	}
}

// ---------------------------------------------------------------------------
// 3. MySQL: SET forms mysqlSetEffect misreads as something other than
// "autocommit = 0": the connection's writes are announced as committing
// when they run, and the rows from before them outlive the COMMIT.

func TestSessionTxMySQLAutocommitOffSpellings(t *testing.T) {
	d := &mysqlTestDB
	for _, set := range []string{
		"SET @@session.autocommit = 0",
		"SET foreign_key_checks = (1), autocommit = 0",
		"SET unique_checks = 1 + 0, autocommit = 0",
	} {
		t.Run(strings.NewReplacer(" ", "_", "@", "", "=", "", ",", "").Replace(set), func(t *testing.T) {
			live, table, q, a, b := txRig(t, d, d.open(t))
			err := a.db.Connection(func(c *gorm.DB) error {
				adminExec(t, c, set)
				adminExec(t, c, "UPDATE "+table+" SET name = 'new' WHERE id = 1")
				sessRows(t, b.db, q) // B fills with the committed rows
				adminExec(t, c, "COMMIT")
				adminExec(t, c, "SET autocommit = 1")
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := queryRows(t, live, q)
			if got := sessRows(t, b.db, q); got != want {
				t.Errorf("%s; UPDATE; COMMIT returned, then B read %s, want %s", set, got, want)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 4. BEGIN and a write in one Exec (PostgreSQL's simple protocol, SQLite):
// the write is announced before the statement as one that commits as it
// runs (the BEGIN is noted only after), and bumped before it commits.

func TestSessionTxBeginAndWriteInOneExec(t *testing.T) {
	for _, d := range []*testDB{&postgresTestDB, &sqliteTestDB} {
		t.Run(d.name, func(t *testing.T) {
			live, table, q, a, b := txRig(t, d, d.open(t))
			err := a.db.Connection(func(c *gorm.DB) error {
				adminExec(t, c, "BEGIN; UPDATE "+table+" SET name = 'new' WHERE id = 1")
				sessRows(t, b.db, q) // B fills with the committed rows
				return c.Exec("COMMIT").Error
			})
			if err != nil {
				t.Fatal(err)
			}
			expectLive(t, live, b, q, "after COMMIT returned")
		})
	}
}

// ---------------------------------------------------------------------------
// 5. SQLite: RELEASE ends the transaction only when it releases the
// outermost savepoint of a transaction SAVEPOINT began; END in a trigger's
// body ends nothing. The plugin clears AspTx on both.

func TestSessionTxSQLiteStatementsThatEndNoTransaction(t *testing.T) {
	d := &sqliteTestDB
	for name, stmts := range map[string][]string{
		"release_inner": {"BEGIN", "SAVEPOINT a", "RELEASE a"},
		"nested_saves":  {"SAVEPOINT a", "SAVEPOINT b", "RELEASE b"},
		"create_trigger": {"BEGIN", "CREATE TRIGGER gft_rv2_tr_" + randHex(3) +
			" AFTER DELETE ON gft_calls_none BEGIN SELECT 1; END"},
	} {
		t.Run(name, func(t *testing.T) {
			live := d.open(t)
			table := sessDialectTable(t, d, live)
			adminExec(t, live, "CREATE TABLE IF NOT EXISTS gft_calls_none (id int)")
			q := "SELECT id, name FROM " + table + " ORDER BY id"
			a, b := rv2Pair(t, d, d.open(t))
			err := a.db.Connection(func(c *gorm.DB) error {
				for _, s := range stmts {
					adminExec(t, c, s)
				}
				adminExec(t, c, "UPDATE "+table+" SET name = 'new' WHERE id = 1")
				sessRows(t, b.db, q) // B fills with the committed rows
				return c.Exec("COMMIT").Error
			})
			if err != nil {
				t.Fatal(err)
			}
			want := queryRows(t, live, q)
			if got := sessRows(t, b.db, q); got != want {
				t.Errorf("%v; UPDATE; COMMIT returned, then B read %s, want %s", stmts, got, want)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 6. MySQL: writes after an implicit commit inside db.Transaction commit as
// they run (the transaction GORM began is over), yet the plugin records them
// for a Commit; the Rollback that follows undoes nothing in the database and
// drops their invalidation.

func TestSessionTxMySQLWriteAfterImplicitCommitThenRollback(t *testing.T) {
	d := &mysqlTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live)
	junk := "gft_rv2_junk_" + randHex(4)
	t.Cleanup(func() { _ = live.Exec("DROP TABLE IF EXISTS " + junk).Error })
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	a, b := rv2Pair(t, d, d.open(t))
	sessRows(t, b.db, q) // cached: the real rows
	err := a.db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("CREATE TABLE " + junk + " (id int)").Error; err != nil {
			return err
		}
		if err := tx.Exec("UPDATE " + table + " SET name = 'new' WHERE id = 1").Error; err != nil {
			return err
		}
		return errReview2Abort
	})
	if !errors.Is(err, errReview2Abort) {
		t.Fatal(err)
	}
	want := queryRows(t, live, q)
	if !strings.Contains(want, "new") {
		t.Fatalf("the database rolled the UPDATE back: %s", want)
	}
	if got := sessRows(t, b.db, q); got != want {
		t.Errorf("after db.Transaction returned B read %s, want the database's %s (the UPDATE after CREATE TABLE committed as it ran)", got, want)
	}
}

// ---------------------------------------------------------------------------
// 7. MySQL: statements CommitsImplicitly takes for implicit commits that are
// not (UNLOCK TABLES with no table locked, MariaDB's ANALYZE SELECT, LOAD
// DATA): the transaction's earlier writes are bumped before they commit and
// dropped from its Commit, so an entry filled in between outlives it.

func TestSessionTxMySQLFalseImplicitCommit(t *testing.T) {
	d := &mysqlTestDB
	for _, stmt := range []string{"UNLOCK TABLES", "ANALYZE SELECT 1"} {
		t.Run(strings.ReplaceAll(stmt, " ", "_"), func(t *testing.T) {
			live, table, q, a, b := txRig(t, d, d.open(t))
			err := a.db.Transaction(func(tx *gorm.DB) error {
				if err := tx.Exec("UPDATE " + table + " SET name = 'new' WHERE id = 1").Error; err != nil {
					return err
				}
				if err := tx.Exec(stmt).Error; err != nil {
					return err
				}
				sessRows(t, b.db, q) // B fills with the committed rows
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			expectLive(t, live, b, q, "after Commit returned")
		})
	}
}

// ---------------------------------------------------------------------------
// 8. MySQL: the taint of a db.Connection is kept by its *sql.Conn, but the
// session lives in the physical connection, which the next db.Connection
// gets back under a new *sql.Conn that looks clean: its fingerprint cannot
// show the temporary table, so it stores the temporary table's rows under
// the pool's key, served to every other instance.

func TestSessionTxMySQLTempTableOnReusedConnection(t *testing.T) {
	d := &mysqlTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live)
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	want := queryRows(t, live, q)
	a, b := rv2Pair(t, d, rvOpenOneConn(t, d))
	err := a.db.Connection(func(c *gorm.DB) error {
		adminExec(t, c, "CREATE TEMPORARY TABLE "+table+" (id bigint, name varchar(64))")
		adminExec(t, c, "INSERT INTO "+table+" VALUES (9, 'temp-9')")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = a.db.Connection(func(c *gorm.DB) error {
		sessRows(t, c, q) // the same physical connection: [9:temp-9]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := sessRows(t, b.db, q); got != want {
		t.Errorf("B read %s, want the real table's %s: rows of another session's temporary table", got, want)
	}
}

// ---------------------------------------------------------------------------
// 9. MySQL XA transactions: XA START begins a transaction the plugin does
// not see: its reads of its own uncommitted rows are stored under the
// pool's key, and outlive XA ROLLBACK.

func TestSessionTxMySQLXATransaction(t *testing.T) {
	d := &mysqlTestDB
	live, table, q, a, b := txRig(t, d, d.open(t))
	xid := "'gft-rv2-" + randHex(4) + "'"
	err := a.db.Connection(func(c *gorm.DB) error {
		adminExec(t, c, "XA START "+xid)
		adminExec(t, c, "UPDATE "+table+" SET name = 'xa' WHERE id = 1")
		sessRows(t, c, q)
		committed := queryRows(t, live, q)
		if got := sessRows(t, b.db, q); got != committed {
			t.Errorf("inside the XA transaction B read %s, want the committed %s", got, committed)
		}
		adminExec(t, c, "XA END "+xid)
		adminExec(t, c, "XA ROLLBACK "+xid)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	expectLive(t, live, b, q, "after XA ROLLBACK")
}

// ---------------------------------------------------------------------------
// 10. A COMMIT statement inside db.Transaction commits on every database;
// the writes before it are recorded for the transaction's Commit, and the
// Rollback that follows drops them.

func TestSessionTxCommitStatementInsideTransaction(t *testing.T) {
	forEachDB(t, func(t *testing.T, d *testDB) {
		live, table, q, a, b := txRig(t, d, d.open(t))
		sessRows(t, b.db, q)
		err := a.db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec("UPDATE " + table + " SET name = 'new' WHERE id = 1").Error; err != nil {
				return err
			}
			if err := tx.Exec("COMMIT").Error; err != nil {
				return err
			}
			return errReview2Abort
		})
		if !errors.Is(err, errReview2Abort) {
			t.Fatal(err)
		}
		want := queryRows(t, live, q)
		if got := sessRows(t, b.db, q); got != want {
			t.Errorf("after db.Transaction returned B read %s, want the database's %s", got, want)
		}
	})
}

// ---------------------------------------------------------------------------
// 11. Usability: ordinary GORM use on each database leaves the pool cached.

type rv2Owner struct {
	ID    int64
	Name  string
	Items []rv2Item `gorm:"foreignKey:OwnerID"`
}

type rv2Item struct {
	ID      int64
	OwnerID int64
	Label   string
}

func TestSessionTxOrdinaryGORMKeepsCaching(t *testing.T) {
	forEachDB(t, func(t *testing.T, d *testDB) {
		suffix := randHex(4)
		owners, items := "gft_rv2_owners_"+suffix, "gft_rv2_items_"+suffix
		live := d.open(t)
		if d.name != "sqlite" {
			t.Cleanup(func() {
				_ = live.Exec("DROP TABLE IF EXISTS " + items).Error
				_ = live.Exec("DROP TABLE IF EXISTS " + owners).Error
			})
		}
		prefix := testPrefix(t)
		a := installPlugin(t, rvOpenOneConn(t, d), testConfig(openRedis(t, ""), prefix))
		db := a.db
		step := func(what string, fn func() error) {
			t.Helper()
			start := time.Now()
			if err := fn(); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			t.Logf("%s took %v", what, time.Since(start))
			start = time.Now()
			defer func() { t.Logf("reads after %s took %v", what, time.Since(start)) }()
			before := a.p.Stats()
			var o []rv2Owner
			for range 3 {
				if err := db.Table(owners).Scopes(Cache(time.Minute)).Order("id").Find(&o).Error; err != nil {
					t.Fatal(err)
				}
			}
			s := a.p.Stats()
			if hits := s.Hits - before.Hits; hits < 2 {
				t.Errorf("after %s: three cached reads gave %d hits, %d bypassed; want 2 hits", what, hits, s.Bypassed-before.Bypassed)
			}
		}
		step("AutoMigrate", func() error {
			return errors.Join(db.Table(owners).AutoMigrate(&rv2Owner{}), db.Table(items).AutoMigrate(&rv2Item{}))
		})
		step("Migrator", func() error {
			m := db.Table(items).Migrator()
			if !m.HasTable(items) {
				return errors.New("no table")
			}
			_, err := m.ColumnTypes(items)
			if err == nil && !m.HasColumn(&rv2Item{}, "Label") {
				err = errors.New("no column")
			}
			if err == nil {
				_, err = m.GetIndexes(items)
			}
			return err
		})
		step("nested Transaction", func() error {
			return db.Transaction(func(tx *gorm.DB) error {
				if err := tx.Table(owners).Create(&rv2Owner{ID: 1, Name: "o"}).Error; err != nil {
					return err
				}
				_ = tx.Transaction(func(tx2 *gorm.DB) error {
					_ = tx2.Table(items).Create(&rv2Item{ID: 1, OwnerID: 1, Label: "x"}).Error
					return errReview2Abort // ROLLBACK TO SAVEPOINT
				})
				return tx.Transaction(func(tx2 *gorm.DB) error {
					return tx2.Table(items).Create(&rv2Item{ID: 2, OwnerID: 1, Label: "y"}).Error
				})
			})
		})
		step("Preload and Joins", func() error {
			var o []rv2Owner
			var n int64
			return errors.Join(
				db.Table(owners).Scopes(Cache(time.Minute)).Order("id").Find(&o).Error,
				db.Table(items).Scopes(Cache(time.Minute)).Joins("JOIN "+owners+" ON "+owners+".id = "+items+".owner_id").Count(&n).Error,
			)
		})
		step("Connection", func() error {
			return db.Connection(func(c *gorm.DB) error {
				var o []rv2Owner
				return c.Table(owners).Scopes(Cache(time.Minute)).Find(&o).Error
			})
		})
		step("AlterColumn and RenameColumn", func() error {
			m := db.Table(items).Migrator()
			return errors.Join(m.AlterColumn(&rv2Item{}, "Label"), m.RenameColumn(&rv2Item{}, "label", "label2"), m.RenameColumn(&rv2Item{}, "label2", "label"))
		})
		step("DropColumn and DropTable", func() error {
			type rv2Extra struct {
				ID    int64
				Extra string
			}
			extra := "gft_rv2_extra_" + suffix
			if err := db.Table(extra).AutoMigrate(&rv2Extra{}); err != nil {
				return err
			}
			return errors.Join(db.Table(extra).Migrator().DropColumn(&rv2Extra{}, "Extra"), db.Migrator().DropTable(extra))
		})
	})
}

// ---------------------------------------------------------------------------
// 12. MySQL: CREATE TRIGGER (or PROCEDURE, FUNCTION) with a compound body
// run through GORM on the pool: the statements of its body (SET NEW.x =
// ..., IF) are read as statements the connection runs, and the pool reads
// uncached for the rest of the process.

func TestSessionTxMySQLCreateTriggerTaintsPool(t *testing.T) {
	d := &mysqlTestDB
	live := d.open(t)
	table := sessDialectTable(t, d, live)
	a := d.instances(t, 1, nil)[0]
	trigger := "gft_rv2_tr_" + randHex(4)
	t.Cleanup(func() { _ = live.Exec("DROP TRIGGER IF EXISTS " + trigger).Error })
	if err := a.db.Exec("CREATE TRIGGER " + trigger + " BEFORE INSERT ON " + table +
		" FOR EACH ROW BEGIN SET NEW.name = TRIM(NEW.name); IF NEW.name = '' THEN SET NEW.name = 'unnamed'; END IF; END").Error; err != nil {
		t.Fatal(err)
	}
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	before := a.p.Stats()
	for range 3 {
		sessRows(t, a.db, q)
	}
	s := a.p.Stats()
	if hits := s.Hits - before.Hits; hits != 2 {
		t.Errorf("three cached reads after CREATE TRIGGER: %d hits, %d bypassed; want 2 hits (the trigger's body changed no session)", hits, s.Bypassed-before.Bypassed)
	}
}

// ---------------------------------------------------------------------------
// 13. SQLite with one connection (a common SQLite setting): reading a
// pragma through Raw(...).Scan, as GORM's SQLite migrator does in
// AlterColumn and DropColumn (RunWithoutForeignKey), is no DDL: it reloads
// no schema (which, on the pool whose only connection the statement's rows
// hold, waited out its 5 s timeout).

func TestSessionTxSQLitePragmaReadReloadsNoSchema(t *testing.T) {
	d := &sqliteTestDB
	db := rvOpenOneConn(t, d)
	in := installPlugin(t, db, testConfig(openRedis(t, ""), testPrefix(t)))
	before := in.p.schema.graph.Load()
	var enabled int
	if err := db.Raw("PRAGMA foreign_keys").Scan(&enabled).Error; err != nil {
		t.Fatal(err)
	}
	if in.p.schema.graph.Load() != before {
		t.Errorf(`Raw("PRAGMA foreign_keys").Scan reloaded the schema: a pragma read is not DDL`)
	}
}
