package gormflight

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// The zero value of every exported type is safe: it never panics, and what
// cannot work says so with an error.
func TestZeroValues(t *testing.T) {
	t.Run("Plugin", func(t *testing.T) {
		var p Plugin
		db := openDB(t)
		if err := db.Use(&p); !errors.Is(err, ErrNoRedis) {
			t.Errorf("db.Use(zero Plugin): %v, want ErrNoRedis", err)
		}
		if err := p.Invalidate(context.Background(), "t"); !errors.Is(err, ErrNoRedis) {
			t.Errorf("Invalidate: %v, want ErrNoRedis", err)
		}
		if s := p.Stats(); s != (Stats{}) {
			t.Errorf("Stats: %+v, want zero", s)
		}
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if p.Name() != "gormflight" {
			t.Errorf("Name: %q", p.Name())
		}
	})
	t.Run("CacheOption", func(t *testing.T) {
		in := newInstances(t, 1, nil)[0]
		var n int
		err := in.db.Clauses(CacheOption{}).Raw("SELECT 1").Scan(&n).Error
		if !errors.Is(err, ErrInvalidTTL) {
			t.Errorf("query with CacheOption{}: %v, want ErrInvalidTTL", err)
		}
		if err := in.db.Scopes(Cache(time.Minute, nil, Tables())).Raw("SELECT 2").Scan(&n).Error; err != nil || n != 2 {
			t.Errorf("Cache with a nil Option: %d, %v; want 2", n, err)
		}
	})
}

// A table name that is not one is refused where it is given, never read as
// another table's name.
func TestInvalidTableNames(t *testing.T) {
	in := newInstances(t, 1, nil)[0]
	for _, name := range []string{"my-view", "1abc", "t; DROP TABLE t", ""} {
		t.Run(name, func(t *testing.T) {
			var n int
			err := in.db.Scopes(Cache(time.Minute, Tables("ok_table", name))).Raw("SELECT 3").Scan(&n).Error
			if !errors.Is(err, ErrInvalidTableName) {
				t.Errorf("Tables(%q): %v, want ErrInvalidTableName", name, err)
			}
			if err := in.p.Invalidate(context.Background(), "ok_table", name); !errors.Is(err, ErrInvalidTableName) {
				t.Errorf("Invalidate(%q): %v, want ErrInvalidTableName", name, err)
			}
			// New refuses a name no dialect reads; one another dialect
			// reads (MySQL's 1abc) is refused when the plugin is installed
			// on PostgreSQL.
			p, err := New(Config{Redis: in.p.cfg.Redis, Prefix: testPrefix(t), AlsoWrites: map[string][]string{"ok_table": {name}}})
			if err == nil {
				t.Cleanup(func() { _ = p.Close() })
				err = openDB(t).Use(p)
			}
			if !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, ErrInvalidTableName) {
				t.Errorf("AlsoWrites holding %q: %v, want ErrInvalidConfig and ErrInvalidTableName", name, err)
			}
		})
	}
	var n int
	if err := in.db.Scopes(Cache(time.Minute, Tables(`public."Ok_Table"`))).Raw("SELECT 4").Scan(&n).Error; err != nil || n != 4 {
		t.Errorf("a qualified, quoted table name: %d, %v", n, err)
	}
}

// A TTLJitter that is not a number would make every expiry invalid, so
// that nothing is ever stored, and a RefreshBeta that is not one would
// refresh on every hit or never: New refuses them.
func TestFractionsNotANumber(t *testing.T) {
	rdb := openRedis(t, "")
	for _, j := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if p, err := New(Config{Redis: rdb, TTLJitter: j}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("TTLJitter %v: New returned %v, %v; want ErrInvalidConfig", j, p, err)
		}
		if p, err := New(Config{Redis: rdb, RefreshBeta: j}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("RefreshBeta %v: New returned %v, %v; want ErrInvalidConfig", j, p, err)
		}
	}
}
