package gormflight

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/plugin/dbresolver"
)

// How the plugin installs itself: what db.Use leaves of the *gorm.DB
// (its pool's type, GORM's prepared-statement manager), next to
// gorm.io/plugin/dbresolver, and on the databases it does not understand.

// With PrepareStmt, db.ConnPool stays GORM's prepared-statement manager
// after db.Use: code that reaches it by type assertion (Close and Reset,
// PostgreSQL's migrator after a column change) keeps working, and the
// transactions begun on the handle are still invalidated when they commit.
func TestInstallKeepsPreparedStmtDB(t *testing.T) {
	ins := consInstances(t, 1, nil)
	b := ins[0]
	a := consPreparedInstance(t, testConfig(openRedis(t, ""), b.p.cfg.Prefix))
	pdb, ok := a.db.ConnPool.(*gorm.PreparedStmtDB)
	if !ok {
		t.Fatalf("db.ConnPool is %T after db.Use, want *gorm.PreparedStmtDB", a.db.ConnPool)
	}
	if _, ok := a.db.Session(&gorm.Session{PrepareStmt: true}).ConnPool.(*gorm.PreparedStmtDB); !ok {
		t.Error("a PrepareStmt session's ConnPool is not a *gorm.PreparedStmtDB")
	}
	if _, err := a.db.DB(); err != nil {
		t.Errorf("db.DB(): %v", err)
	}
	id := consNewItem(t, a.db, consNextID(t, a.db), 1)
	prepared := func() int {
		var it consItem
		if err := a.db.First(&it, id).Error; err != nil { // uncached: prepared on the pool
			t.Fatal(err)
		}
		pdb.Mux.RLock()
		defer pdb.Mux.RUnlock()
		return len(pdb.Stmts.Keys())
	}
	for _, drop := range []struct {
		name string
		do   func()
	}{{"Close", pdb.Close}, {"Reset", pdb.Reset}} {
		if n := prepared(); n == 0 {
			t.Fatalf("%s: no statement was prepared through the handle", drop.name)
		}
		drop.do()
		pdb.Mux.RLock()
		n := len(pdb.Stmts.Keys())
		pdb.Mux.RUnlock()
		if n != 0 {
			t.Errorf("%s left %d prepared statements", drop.name, n)
		}
	}

	for i, commit := range []func(write func(*gorm.DB) error) error{
		func(write func(*gorm.DB) error) error {
			tx := a.db.Begin()
			if err := write(tx); err != nil {
				tx.Rollback()
				return err
			}
			return tx.Commit().Error
		},
		func(write func(*gorm.DB) error) error { // the write in a savepoint
			return a.db.Transaction(func(tx *gorm.DB) error { return tx.Transaction(write) })
		},
		func(write func(*gorm.DB) error) error {
			return a.db.Session(&gorm.Session{PrepareStmt: true}).Transaction(write)
		},
	} {
		before, after := fmt.Sprintf("val=%d", i+1), fmt.Sprintf("val=%d", i+2)
		consExpect(t, "B prime", b, consFirst(id), before)
		inv := a.p.Stats().Invalidations
		err := commit(func(tx *gorm.DB) error {
			if err := tx.Model(&consItem{ID: id}).Update("val", i+2).Error; err != nil {
				return err
			}
			consExpect(t, "B before the commit", b, consFirst(id), before)
			if got := a.p.Stats().Invalidations; got != inv {
				t.Errorf("generations bumped before the commit (%d -> %d)", inv, got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		consExpect(t, "B after the commit", b, consFirst(id), after)
		consExpect(t, "A after the commit", a, consFirst(id), after)
	}
}

// installDB opens a handle whose connections name themselves app in
// PostgreSQL, so a query can tell which pool ran it.
func installDB(t *testing.T, app string, prepare bool) *gorm.DB {
	t.Helper()
	db := openDB(t) // creates the recording function
	consSchema(t, db)
	installSchema(t, db)
	return openDSNWith(t, dsnWith("application_name="+app), &gorm.Config{Logger: logger.Discard, PrepareStmt: prepare})
}

// installResolver returns dbresolver sending writes to a source and reads to
// a replica, both on the test database under their own application names.
func installResolver(t *testing.T) *dbresolver.DBResolver {
	t.Helper()
	return resolverOn(t, dsnWith("application_name=gft_source"), dsnWith("application_name=gft_replica"))
}

// resolverOn returns dbresolver sending writes to the database at source
// and reads to the one at replica. The connections it opens close when the
// test ends.
func resolverOn(t testing.TB, source, replica string) *dbresolver.DBResolver {
	t.Helper()
	r := dbresolver.Register(dbresolver.Config{
		Sources:  []gorm.Dialector{postgres.Open(source)},
		Replicas: []gorm.Dialector{postgres.Open(replica)},
	})
	closeResolverAtEnd(t, r)
	return r
}

// closeResolverAtEnd closes the connections r opened when the test ends.
func closeResolverAtEnd(t testing.TB, r *dbresolver.DBResolver) {
	t.Cleanup(func() {
		_ = r.Call(func(pool gorm.ConnPool) error {
			if c, ok := pool.(interface{ Close() error }); ok {
				_ = c.Close()
			}
			return nil
		})
	})
}

var installSchemaSetup = schemaOnce{lock: schemaLockInstall}

// installRead is a cached read that PostgreSQL records under tag, with the
// application name of the connection that ran it. The cached SQL calls no
// session function itself: those statements are never cached.
func installRead(t *testing.T, db *gorm.DB, tag string) {
	t.Helper()
	var n int
	if err := db.Scopes(Cache(time.Minute)).Raw("SELECT gft_install_run(?) AS n", tag).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
}

// installSchema creates installRead's function and the table it records in.
func installSchema(t *testing.T, db *gorm.DB) {
	t.Helper()
	err := installSchemaSetup.do(db, func(tx *gorm.DB) error {
		return tx.Exec(`
CREATE TABLE IF NOT EXISTS gft_install_runs (tag text NOT NULL, app text NOT NULL);
CREATE OR REPLACE FUNCTION gft_install_run(p_tag text) RETURNS int LANGUAGE sql VOLATILE AS $$
	INSERT INTO gft_install_runs VALUES (p_tag, current_setting('application_name')) RETURNING 1
$$;`).Error
	})
	if err != nil {
		t.Fatalf("install schema: %v", err)
	}
}

// installRuns returns how many times each application ran installRead's
// query for tag.
func installRuns(t *testing.T, db *gorm.DB, tag string) map[string]int {
	t.Helper()
	var rows []struct {
		App string
		N   int
	}
	err := db.Session(&gorm.Session{NewDB: true}).
		Raw("SELECT app, count(*) AS n FROM gft_install_runs WHERE tag = ? GROUP BY app", tag).Scan(&rows).Error
	if err != nil {
		t.Fatal(err)
	}
	runs := make(map[string]int, len(rows))
	for _, r := range rows {
		runs[r.App] = r.N
	}
	return runs
}

// gorm.io/plugin/dbresolver installs before or after the plugin. Installed
// after it, dbresolver opens its sources and replicas with a copy of the
// handle's configuration, whose Plugins already list the plugin. Either way
// cached queries fill from a source, never from a replica that may lag
// behind the write that just bumped the generation, and writes routed by
// dbresolver invalidate.
func TestInstallWithDBResolver(t *testing.T) {
	for _, tc := range []struct {
		name        string
		pluginFirst bool
		prepare     bool
	}{
		{"plugin first", true, false},
		{"dbresolver first", false, false},
		{"plugin first, PrepareStmt", true, true},
		{"dbresolver first, PrepareStmt", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := testPrefix(t)
			db := installDB(t, "gft_main", tc.prepare)
			p, err := New(testConfig(openRedis(t, ""), prefix))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Close() })
			uses := []gorm.Plugin{p, installResolver(t)}
			if !tc.pluginFirst {
				uses[0], uses[1] = uses[1], uses[0]
			}
			for _, u := range uses {
				if err := db.Use(u); err != nil {
					t.Fatalf("db.Use(%s): %v", u.Name(), err)
				}
			}
			a := &instance{db: db, p: p}
			b := newInstance(t, testConfig(openRedis(t, ""), prefix))

			tag := uniqueTag(t)
			installRead(t, db, tag)
			installRead(t, db, tag) // a hit
			if runs := installRuns(t, b.db, tag); !maps.Equal(runs, map[string]int{"gft_source": 1}) {
				t.Errorf("PostgreSQL ran the cached query %v times by application, want once on the source", runs)
			}
			tag = uniqueTag(t)
			installRead(t, db.Clauses(dbresolver.Read), tag)
			if runs := installRuns(t, b.db, tag); !maps.Equal(runs, map[string]int{"gft_source": 1}) {
				t.Errorf("a cached read asking dbresolver for a replica ran %v times by application, want once on the source", runs)
			}

			id := consNewItem(t, db, consNextID(t, b.db), 1)
			consReadAfterWrite(t, a, b, consFirst(id), func(db *gorm.DB) error {
				return db.Model(&consItem{ID: id}).Update("val", 2).Error
			}, "val=1", "val=2")
			installFollowed(t, a)
			consReadAfterWrite(t, a, b, consFirst(id), func(db *gorm.DB) error {
				return db.Transaction(func(tx *gorm.DB) error {
					return tx.Model(&consItem{ID: id}).Update("val", 3).Error
				})
			}, "val=2", "val=3")
			installFollowed(t, a)

			for _, again := range []*gorm.DB{db, db.Session(&gorm.Session{})} {
				if err := p.Initialize(again); !errors.Is(err, ErrAlreadyInitialized) {
					t.Errorf("a second Initialize on the handle it serves: %v, want ErrAlreadyInitialized", err)
				}
			}
		})
	}
}

// installFollowed fails the test if a write to gft_cons_item left its
// announcement standing, as a transaction the plugin cannot follow to its
// commit does (for LoadTimeout).
func installFollowed(t *testing.T, in *instance) {
	t.Helper()
	n, err := in.p.cfg.Redis.Exists(context.Background(), in.p.engine.WritersKey("gft_cons_item")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("the write's announcement still stands: its transaction was not followed to its commit")
	}
}

// With no sources of its own, dbresolver writes through the handle's pool;
// the connection settings it applies to that pool still reach the *sql.DB.
func TestInstallDBResolverDefaultSource(t *testing.T) {
	in := installPlugin(t, installDB(t, "gft_main", false), testConfig(openRedis(t, ""), testPrefix(t)))
	r := dbresolver.Register(dbresolver.Config{
		Replicas: []gorm.Dialector{postgres.Open(dsnWith("application_name=gft_replica"))},
	})
	if err := in.db.Use(r); err != nil {
		t.Fatal(err)
	}
	r.SetMaxOpenConns(7)
	closeResolverAtEnd(t, r)
	sqlDB, err := in.db.DB()
	if err != nil {
		t.Fatal(err)
	}
	if got := sqlDB.Stats().MaxOpenConnections; got != 7 {
		t.Errorf("MaxOpenConnections %d after dbresolver's SetMaxOpenConns(7)", got)
	}
	tag := uniqueTag(t)
	installRead(t, in.db, tag)
	if runs := installRuns(t, in.db, tag); !maps.Equal(runs, map[string]int{"gft_main": 1}) {
		t.Errorf("the fill ran %v times by application, want once on the handle's own pool (dbresolver's source)", runs)
	}
}

// A second, unrelated handle is refused: one Plugin serves one *gorm.DB.
func TestInstallSecondHandleRefused(t *testing.T) {
	in := newInstance(t, testConfig(openRedis(t, ""), testPrefix(t)))
	if err := openDB(t).Use(in.p); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("db.Use on a second handle: %v, want ErrAlreadyInitialized", err)
	}
}

// namedDialector is PostgreSQL's dialector under another name: what the
// plugin is told it runs on.
type namedDialector struct {
	gorm.Dialector
	name string
}

func (d namedDialector) Name() string { return d.name }

// The plugin refuses the dialects whose SQL it cannot read, rather than
// caching reads that no write invalidates, and stays installable
// afterwards.
func TestInstallRefusesUnsupportedDialect(t *testing.T) {
	openDB(t) // skips without PostgreSQL
	p, err := New(testConfig(openRedis(t, ""), testPrefix(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	for _, name := range []string{"sqlserver", "clickhouse", "postgresql", ""} {
		t.Run(name, func(t *testing.T) {
			db, err := gorm.Open(namedDialector{postgres.Open(testDSN()), name}, &gorm.Config{Logger: logger.Discard})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if sqlDB, err := db.DB(); err == nil {
					_ = sqlDB.Close()
				}
			})
			installRefused(t, db, p)
		})
	}
	if err := openDB(t).Use(p); err != nil {
		t.Errorf("db.Use on PostgreSQL after the refusals: %v", err)
	}
}

// installRefused checks that db.Use(p) fails with ErrUnsupportedDialect and
// leaves db as it was.
func installRefused(t *testing.T, db *gorm.DB, p *Plugin) {
	t.Helper()
	pool := db.ConnPool
	err := db.Use(p)
	if !errors.Is(err, ErrUnsupportedDialect) {
		t.Fatalf("db.Use on %s: %v, want ErrUnsupportedDialect", db.Dialector.Name(), err)
	}
	if db.ConnPool != pool {
		t.Errorf("the refused db.Use replaced db.ConnPool")
	}
	if db.Callback().Query().Get("gormflight:query") != nil {
		t.Errorf("the refused db.Use registered callbacks")
	}
}
