package sqlflight

import (
	"context"
	"fmt"
	"time"

	"github.com/gormflight/gormflight/internal/dialect"
	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/sqlscan"
)

// settings are one query's caching instructions, carried by its context.
type settings struct {
	ttl      time.Duration
	staleFor time.Duration
	local    time.Duration
	declared dialect.Declared // with Tables
}

// Option adjusts one cached query. Pass options to WithCache.
type Option func(*settings)

type settingsKey struct{}

// WithCache returns ctx with the queries run on it opted into caching for
// ttl: a miss runs once across every instance sharing the Redis prefix, the
// others wait for its result. A ttl outside [MinTTL, MaxTTL] makes the
// queries fail with ErrInvalidTTL. Queries inside a transaction and
// statements that write run uncached.
func WithCache(ctx context.Context, ttl time.Duration, opts ...Option) context.Context {
	s := &settings{ttl: ttl}
	for _, o := range opts {
		if o != nil {
			o(s)
		}
	}
	return context.WithValue(ctx, settingsKey{}, s)
}

func settingsFrom(ctx context.Context) *settings {
	s, _ := ctx.Value(settingsKey{}).(*settings)
	return s
}

// The range of TTLs WithCache accepts, as gormflight.Cache's.
const (
	MinTTL = engine.MinTTL
	MaxTTL = engine.MaxTTL
)

// check reports what makes the settings unusable on a database of
// dialect d.
func (s *settings) check(d sqlscan.Dialect) error {
	switch {
	case s.ttl < MinTTL || s.ttl > MaxTTL:
		return fmt.Errorf("%w: got %v, want %v to %v", ErrInvalidTTL, s.ttl, MinTTL, MaxTTL)
	case s.staleFor < 0 || s.staleFor > MaxTTL:
		return fmt.Errorf("%w: StaleFor got %v, want 0 to %v", ErrInvalidTTL, s.staleFor, MaxTTL)
	case s.local < 0:
		return fmt.Errorf("%w: Local got %v, want 0 or more", ErrInvalidTTL, s.local)
	}
	return s.declared.Errs[d]
}

// Tables declares tables the query reads that no SQL parser can see
// (behind a view or a function), as gormflight.Tables. A name that is not a
// table name in the database's SQL makes the query fail with
// ErrInvalidTableName.
func Tables(names ...string) Option {
	return func(s *settings) { s.declared.Add(names...) }
}

// StaleFor keeps the query's entry for d past its TTL, served while it is
// refreshed in the background, as gormflight.StaleFor.
func StaleFor(d time.Duration) Option { return func(s *settings) { s.staleFor = d } }

// Local serves the query from this instance's near cache for as long as
// the read behind it is at most maxStale old, as gormflight.Local.
func Local(maxStale time.Duration) Option { return func(s *settings) { s.local = maxStale } }
