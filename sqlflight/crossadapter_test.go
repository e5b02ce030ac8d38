package sqlflight_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	glebarez "github.com/glebarez/sqlite"
	"github.com/gormflight/gormflight"
	"github.com/gormflight/gormflight/internal/testdb"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// A GORM service with the gormflight plugin and a database/sql service
// with sqlflight, on one database and one Redis prefix, invalidate each
// other: a write through either returns only once the other serves it.
func TestCrossAdapter(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		table := r.table(t)
		g := r.gormInstance(t)
		s := r.instance(t)
		gormRead := func() string {
			t.Helper()
			var rows []struct {
				ID  int64
				Val string
			}
			if err := g.Scopes(gormflight.Cache(time.Minute)).Raw("SELECT id, val FROM " + table + " ORDER BY id").Scan(&rows).Error; err != nil {
				t.Fatal(err)
			}
			out := make([]string, len(rows))
			for i, row := range rows {
				out[i] = fmt.Sprintf("%d:%s", row.ID, row.Val)
			}
			return strings.Join(out, " ")
		}
		// The same SQL read through either adapter is one entry: GORM loads
		// it, sqlflight hits it.
		gormRead()
		if got := r.read(t, s.db, table); got != "1:one 2:two" || s.c.Stats().Loads != 0 || s.c.Stats().Hits == 0 {
			t.Errorf("sqlflight read %s with %+v after GORM loaded the same SQL, want a hit and no load", got, s.c.Stats())
		}
		for i, w := range []struct {
			name  string
			write func(val string) error
			read  func() string
		}{
			{"GORM writes, sqlflight reads", func(val string) error {
				return g.Exec("UPDATE "+table+" SET val = ? WHERE id = 1", val).Error
			}, func() string { return r.read(t, s.db, table) }},
			{"sqlflight writes, GORM reads", func(val string) error {
				_, err := s.db.ExecContext(context.Background(), r.q("UPDATE "+table+" SET val = ? WHERE id = 1"), val)
				return err
			}, gormRead},
		} {
			before := w.read()
			if again := w.read(); again != before {
				t.Fatalf("%s: two reads %s and %s", w.name, before, again)
			}
			val := fmt.Sprintf("v%d", i)
			if err := w.write(val); err != nil {
				t.Fatal(err)
			}
			if got, want := w.read(), "1:"+val+" 2:two"; got != want {
				t.Errorf("%s: read %s after the write returned, want %s", w.name, got, want)
			}
		}
		if s.c.Stats().Hits == 0 {
			t.Errorf("sqlflight served no read from the cache: the test proves nothing")
		}
	})
}

// gormInstance opens a GORM handle on r's database with the plugin, on
// r's Redis prefix.
func (r *rig) gormInstance(t *testing.T) *gorm.DB {
	t.Helper()
	var dial gorm.Dialector
	switch r.name {
	case "postgres":
		dial = postgres.Open(testdb.PostgresDSN())
	case "mysql":
		dial = mysql.Open(testdb.MySQLParseTimeDSN())
	default:
		dial = glebarez.Open(testdb.SQLiteDSN(testdb.SQLiteFile(r.t)))
	}
	db, err := gorm.Open(dial, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	p, err := gormflight.New(gormflight.Config{Redis: redisClient(t), Prefix: r.prefix, RedisTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := db.Use(p); err != nil {
		t.Fatal(err)
	}
	return db
}
