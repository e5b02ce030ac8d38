// Package extratest is the test rig of the adapters under extra/, modules
// of their own: GORM on SQLite in a file and an in-process Redis
// (miniredis), so that their tests need no service, and a scenario of real
// queries whose every outcome is known. Only tests import it.
package extratest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/glebarez/sqlite"
	"github.com/gormflight/gormflight"
	"github.com/gormflight/gormflight/internal/testdb"
	"github.com/gormflight/gormflight/observe"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Table is the table the scenario reads, with the rows (1, 'one') and
// (2, 'two').
const Table = "items"

// Rig is an SQLite database in a file and a miniredis, which the
// instances of a test share.
type Rig struct {
	file  string
	redis *miniredis.Miniredis
}

// New creates the database, with Table, and starts miniredis; both end
// with the test.
func New(t testing.TB) *Rig {
	t.Helper()
	testdb.RegisterSQLiteRecording()
	r := &Rig{file: filepath.Join(t.TempDir(), "test.db"), redis: miniredis.RunT(t)}
	db := r.open(t)
	for _, s := range []string{
		"CREATE TABLE " + Table + " (id integer PRIMARY KEY, v text NOT NULL)",
		"INSERT INTO " + Table + " VALUES (1, 'one'), (2, 'two')",
	} {
		if err := db.Exec(s).Error; err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return r
}

func (r *Rig) open(t testing.TB) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(sqlite.Open(testdb.SQLiteDSN(r.file)), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db
}

// Instance is one application instance: its own *gorm.DB, Redis client
// and Plugin.
type Instance struct {
	DB *gorm.DB
	P  *gormflight.Plugin
}

// Instance returns an instance whose plugin reports to obs, with hook on
// its Redis client when not nil. The plugin closes when the test ends.
func (r *Rig) Instance(t testing.TB, obs observe.Observer, hook redis.Hook) *Instance {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: r.redis.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	if hook != nil {
		rdb.AddHook(hook)
	}
	p, err := gormflight.New(gormflight.Config{Redis: rdb, Prefix: "extratest", Observer: obs,
		RedisTimeout: 3 * time.Second, MaxWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	db := r.open(t)
	if err := db.Use(p); err != nil {
		t.Fatal(err)
	}
	return &Instance{DB: db, P: p}
}

// Read reads row 1, cached, and records its execution under tag.
func (in *Instance) Read(ctx context.Context, tag string) error {
	var row struct {
		V string
		N int
	}
	err := in.DB.WithContext(ctx).Scopes(gormflight.Cache(time.Minute)).
		Raw("SELECT v, gft_record(?, 0) AS n FROM "+Table+" WHERE id = 1", tag).Scan(&row).Error
	if err == nil && (row.V != "one" || row.N != 1) {
		err = fmt.Errorf("read %+v, want {V:one N:1}", row)
	}
	return err
}

// Calls returns how many times SQLite ran a read recorded under tag.
func Calls(t testing.TB, tag string) int64 { return testdb.Calls(t, "sqlite", nil, tag) }
