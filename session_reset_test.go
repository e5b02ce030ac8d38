package gormflight

import (
	"testing"
	"time"

	"gorm.io/gorm"
)

// TestFailedResetKeepsConnectionChanged: in db.Connection, SET search_path
// to tenant b's schema, then "RESET ALL; SELECT 1/0", which fails, and
// PostgreSQL rolls the whole string back, RESET ALL included. The
// connection goes back to the pool (its only one) still in b's schema, so
// reads on the pool must not be served the pool's entries (public's). The
// failed reset used to count: the pool's cached read returned public's
// rows where the database returned b's.
func TestFailedResetKeepsConnectionChanged(t *testing.T) {
	in := newInstance(t, testConfig(openRedis(t, ""), testPrefix(t)))
	f := newTenSchemas(t, in.db)
	truth := f.truth(t)
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
		if err := q.Table(f.table).Select("id", "name").Order("id").Find(&rows).Error; err != nil {
			t.Fatal(err)
		}
		return renderRows(rows)
	}
	if got := read(true); got != truth["default"] {
		t.Fatalf("the pool's cached read returned %s before the test, want %s", got, truth["default"])
	}
	var resetErr error
	err = in.db.Connection(func(tx *gorm.DB) error {
		if err := tx.Exec("SET search_path TO " + quotedIdent(f.schemas["b"])).Error; err != nil {
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
	if live != truth["b"] {
		t.Fatalf("the pool's connection read %s, want tenant b's %s: the reset was not rolled back", live, truth["b"])
	}
	if cached != live {
		t.Errorf("after a failed reset the pool's cached read returned %s, the database %s", cached, live)
	}
}
