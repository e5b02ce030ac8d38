package gormflight

import (
	"context"
	"errors"
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
