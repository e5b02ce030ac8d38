package gormflight

import (
	"testing"
	"time"

	"gorm.io/gorm"
)

// A db.Connection that changes its session and resets it with RESET ALL
// leaves the pool cached; one that does not switches reads on the pool to
// uncached, as does a SET run on the pool itself.
func TestSessionChangesStopPoolCaching(t *testing.T) {
	in := newInstances(t, 1, nil)[0]
	tag := uniqueTag(t)
	poolRead := func() {
		t.Helper()
		var n int
		if err := in.db.Scopes(Cache(time.Minute)).Raw("SELECT gft_record(?, 0) AS n", tag).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
	}
	cachedRead := func(what string, want bool) {
		t.Helper()
		before := calls(t, in.db, tag)
		poolRead()
		poolRead()
		n := calls(t, in.db, tag) - before
		if cached := n <= 1; cached != want {
			t.Fatalf("%s: two reads on the pool ran the query %d times; want cached=%v", what, n, want)
		}
	}
	cachedRead("before", true)
	err := in.db.Connection(func(c *gorm.DB) error {
		if err := c.Exec("SET search_path TO public").Error; err != nil {
			return err
		}
		cachedRead("while a connection has a changed session", false)
		return c.Exec("RESET ALL").Error
	})
	if err != nil {
		t.Fatal(err)
	}
	cachedRead("after RESET ALL", true)
	if err := in.db.Exec("SET search_path TO public").Error; err != nil {
		t.Fatal(err)
	}
	cachedRead("after a SET on the pool", false)
}

// sessRows reads "SELECT id, name FROM table ORDER BY id" through db's
// cache and renders the rows.
func sessRows(t *testing.T, db *gorm.DB, query string) string {
	t.Helper()
	var rows []idName
	// A session of its own: in db.Connection, GORM runs every statement of
	// the handle it passes on one Statement, whose settings would carry the
	// scope to the uncached reads compared with this one.
	if err := db.Session(&gorm.Session{}).Scopes(Cache(time.Minute)).Raw(query).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	return renderRows(rows)
}

// sessTable creates a table with rows 1 and 2 and returns its name.
func sessTable(t *testing.T, admin *gorm.DB) string {
	t.Helper()
	name := "gft_sess_" + randHex(5)
	adminExec(t, admin, "CREATE TABLE "+name+" (id bigint PRIMARY KEY, name text NOT NULL, owner text NOT NULL DEFAULT '')")
	adminExec(t, admin, "INSERT INTO "+name+" (id, name) VALUES (1, 'real-1'), (2, 'real-2')")
	dropAtEnd(t, admin, "DROP TABLE IF EXISTS "+name)
	return name
}

// sessOneConnAndOther returns two instances sharing a prefix: l, whose pool
// has one connection (so its reads run on the session its statements
// changed), and b.
func sessOneConnAndOther(t *testing.T) (l, b *instance) {
	t.Helper()
	ldb := openDB(t)
	sqlDB, err := ldb.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(1)
	prefix := testPrefix(t)
	l = installPlugin(t, ldb, testConfig(openRedis(t, ""), prefix))
	return l, newInstance(t, testConfig(openRedis(t, ""), prefix))
}

// A temporary table hides the table of its name for its session only: its
// rows are never served to another session.
func TestSessionTempTableIsItsOwn(t *testing.T) {
	admin := openDB(t)
	table := sessTable(t, admin)
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	ins := newInstances(t, 2, nil)
	a, b := ins[0], ins[1]
	want := queryRows(t, admin, q)
	err := a.db.Connection(func(c *gorm.DB) error {
		adminExec(t, c, "CREATE TEMP TABLE "+table+" (id bigint, name text)")
		adminExec(t, c, "INSERT INTO "+table+" VALUES (9, 'temp-9')")
		if got := sessRows(t, c, q); got == want {
			t.Errorf("the session with the temporary table read %s, the real table's rows", got)
		}
		if got := sessRows(t, b.db, q); got != want {
			t.Errorf("another instance read %s, want the real table's %s", got, want)
		}
		return c.Exec("DISCARD TEMP").Error
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := sessRows(t, b.db, q); got != want {
		t.Errorf("after: another instance read %s, want %s", got, want)
	}
	if a.p.session.inDoubt() {
		t.Errorf("DISCARD TEMP did not end the connection's change")
	}
}

// RESET ALL keeps the role: a connection that went back to the pool as
// another role must not fill the pool's entries with what that role sees.
func TestSessionRoleSurvivesResetAll(t *testing.T) {
	admin := openDB(t)
	table := sessTable(t, admin)
	role := "gft_sess_r" + randHex(5)
	adminExec(t, admin, "UPDATE "+table+" SET owner = '"+role+"' WHERE id = 1")
	adminExec(t, admin, "CREATE ROLE "+role)
	dropAtEnd(t, admin, "DROP OWNED BY "+role, "DROP ROLE IF EXISTS "+role)
	adminExec(t, admin, "ALTER TABLE "+table+" ENABLE ROW LEVEL SECURITY")
	adminExec(t, admin, "CREATE POLICY own ON "+table+" USING (owner = current_user)")
	adminExec(t, admin, "GRANT SELECT ON "+table+" TO "+role)
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	want := queryRows(t, admin, q) // a superuser sees both rows

	l, b := sessOneConnAndOther(t)
	err := l.db.Connection(func(c *gorm.DB) error {
		adminExec(t, c, "SET ROLE "+role)
		return c.Exec("RESET ALL").Error
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := sessRows(t, l.db, q); got == want {
		t.Fatalf("L's only connection should still be %s and see one row, read %s", role, got)
	}
	if got := sessRows(t, b.db, q); got != want {
		t.Errorf("B read %s, want every row %s: an entry filled as %s was served", got, want, role)
	}
}

// Settings a view reads are part of the key.
func TestSessionViewReadsSetting(t *testing.T) {
	admin := openDB(t)
	table := sessTable(t, admin)
	view := table + "_v"
	adminExec(t, admin, "CREATE VIEW "+view+" AS SELECT id, name FROM "+table+" WHERE name = 'real-' || current_setting('app.gft_rev', true)")
	dropAtEnd(t, admin, "DROP VIEW IF EXISTS "+view)
	q := "SELECT id, name FROM " + view + " ORDER BY id"
	in := newInstances(t, 1, nil)[0]
	for _, v := range []string{"1", "2", "1"} {
		err := in.db.Connection(func(c *gorm.DB) error {
			adminExec(t, c, "SELECT set_config('app.gft_rev', ?, false)", v)
			if got, want := sessRows(t, c, q), queryRows(t, c, q); got != want {
				t.Errorf("app.gft_rev=%s: cached %s, live %s", v, got, want)
			}
			return c.Exec("RESET ALL").Error
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// A session change the plugin cannot see (a function that calls
// set_config) leaves a pooled connection with another session: a fill on
// it is not stored, so no other instance is served its rows.
func TestSessionUnseenChangeIsNotStored(t *testing.T) {
	admin := openDB(t)
	table := sessTable(t, admin)
	schema := "gft_sess_s" + randHex(5)
	adminExec(t, admin, "CREATE SCHEMA "+schema)
	dropAtEnd(t, admin, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	adminExec(t, admin, "CREATE TABLE "+schema+"."+table+" (id bigint, name text)")
	adminExec(t, admin, "INSERT INTO "+schema+"."+table+" VALUES (7, 'other-7')")
	fn := "gft_sess_f" + randHex(5)
	adminExec(t, admin, "CREATE FUNCTION "+fn+"(s text) RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM (SELECT set_config('search_path', s, false)) x $$")
	dropAtEnd(t, admin, "DROP FUNCTION IF EXISTS "+fn+"(text)")
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	want := queryRows(t, admin, q)

	l, b := sessOneConnAndOther(t)
	var one int
	if err := l.db.Raw("SELECT "+fn+"(?)", schema).Scan(&one).Error; err != nil {
		t.Fatal(err)
	}
	if l.p.session.inDoubt() {
		t.Fatal("the plugin saw the change: the test proves nothing")
	}
	if got := sessRows(t, l.db, q); got == want {
		t.Fatalf("L's connection should read the other schema, read %s", got)
	}
	if got := sessRows(t, b.db, q); got != want {
		t.Errorf("B read %s, want %s: L's fill on its changed session was stored", got, want)
	}
	if u := l.p.Stats().Uncached; u == 0 {
		t.Errorf("L's fill was not counted as uncached")
	}
}

// A view created after Initialize that reads a custom setting changes no
// session that does not set it: fills on the pool are still stored.
func TestSessionNewSettingReaderKeepsPoolCached(t *testing.T) {
	admin := openDB(t)
	table := sessTable(t, admin)
	in := newInstances(t, 1, nil)[0]
	q := "SELECT id, name FROM " + table + " ORDER BY id"
	sessRows(t, in.db, q)
	view := table + "_nv"
	adminExec(t, admin, "CREATE VIEW "+view+" AS SELECT * FROM "+table+" WHERE name <> current_setting('app.gft_new"+randHex(5)+"', true)")
	dropAtEnd(t, admin, "DROP VIEW IF EXISTS "+view)
	if err := in.db.Exec("UPDATE " + table + " SET name = 'new-1' WHERE id = 1").Error; err != nil {
		t.Fatal(err)
	}
	want := queryRows(t, admin, q)
	for i := 0; i < 2; i++ {
		if got := sessRows(t, in.db, q); got != want {
			t.Fatalf("read %d: %s, want %s", i+1, got, want)
		}
	}
	if s := in.p.Stats(); s.Uncached != 0 || s.Hits == 0 {
		t.Fatalf("stats %+v: the refill after the new view was not stored", s)
	}
}
