package gormflight

import (
	"testing"
	"time"

	"gorm.io/gorm"
)

// TestFailedResetKeepsConnectionChanged: in db.Connection, SET search_path
// to tenant B's schema, then "RESET ALL; SELECT 1/0", which fails, and
// PostgreSQL rolls the whole string back, RESET ALL included. The
// connection goes back to the pool (its only one) still in B's schema, so
// reads on the pool must not be served the pool's entries, tenant A's. The
// failed reset used to count: the pool's cached read returned A's rows
// where the database returned B's.
func TestFailedResetKeepsConnectionChanged(t *testing.T) {
	in := newInstance(t, testConfig(openRedis(t, ""), testPrefix(t)))
	s := randHex(5)
	tbl, schema := "gftreset_items_"+s, "gftreset_b_"+s
	for _, st := range []string{
		"CREATE SCHEMA " + schema,
		"CREATE TABLE public." + tbl + " (id bigint PRIMARY KEY, name text)",
		"CREATE TABLE " + schema + "." + tbl + " (id bigint PRIMARY KEY, name text)",
		"INSERT INTO public." + tbl + " VALUES (1, 'tenant-a'), (2, 'tenant-a2')",
		"INSERT INTO " + schema + "." + tbl + " VALUES (1, 'tenant-b')",
	} {
		adminExec(t, in.db, st)
	}
	dropAtEnd(t, in.db, "DROP SCHEMA "+schema+" CASCADE", "DROP TABLE public."+tbl)
	sqlDB, err := in.db.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(1)
	read := func(cached bool) string {
		t.Helper()
		q := in.db
		if cached {
			q = q.Scopes(Cache(time.Hour))
		}
		var rows []idName
		if err := q.Table(tbl).Order("id").Find(&rows).Error; err != nil {
			t.Fatal(err)
		}
		return renderRows(rows)
	}
	if got := read(true); got != "[1:tenant-a 2:tenant-a2]" {
		t.Fatalf("the pool's cached read returned %s before the test", got)
	}
	var resetErr error
	err = in.db.Connection(func(tx *gorm.DB) error {
		if err := tx.Exec("SET search_path TO " + schema).Error; err != nil {
			return err
		}
		resetErr = tx.Exec("RESET ALL; SELECT 1/0").Error
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if resetErr == nil {
		t.Fatal("RESET ALL; SELECT 1/0 succeeded; the test needs it to fail")
	}
	live, cached := read(false), read(true)
	if live != "[1:tenant-b]" {
		t.Fatalf("the pool's connection read %s, want tenant B's [1:tenant-b]: the reset was not rolled back", live)
	}
	if cached != live {
		t.Errorf("after a failed reset the pool's cached read returned %s, the database %s", cached, live)
	}
}
