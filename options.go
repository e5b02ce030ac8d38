package gormflight

import (
	"fmt"
	"time"

	"github.com/gormflight/gormflight/internal/dialect"
	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/sqlscan"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// settingKey is the Statement.Settings key under which Cache leaves the
// statement's cache settings.
const settingKey = "gormflight:cache"

// cacheSettings are one statement's caching instructions.
type cacheSettings struct {
	ttl      time.Duration
	staleFor time.Duration    // StaleFor
	local    *time.Duration   // Local; nil: Config.Local
	declared dialect.Declared // with Tables
}

// declaredTables returns the tables declared with Tables, normalised in
// dialect d.
func (s *cacheSettings) declaredTables(d sqlscan.Dialect) []string { return s.declared.Tables[d] }

// Option adjusts one cached query. Pass options to Cache.
type Option func(*cacheSettings)

// Tables declares tables the query reads that no SQL parser can see: tables
// read by SQL functions or behind views. Writes to any of them invalidate
// the query's entry, like writes to the tables in its SQL text. Names are
// read as in the SQL of the statement's database (PostgreSQL: unquoted
// names fold to lower case; MySQL and SQLite: every name does; a schema
// qualifier is ignored); one that is not a table name there adds
// ErrInvalidTableName to the statement's errors.
func Tables(names ...string) Option {
	return func(s *cacheSettings) { s.declared.Add(names...) }
}

// StaleFor keeps the query's entry for d past its TTL, for users who accept
// a longer bound on writes the plugin cannot see: a hit in that time whose
// tables were not written since (their generations still match) is served
// at once and refreshes the entry in the background, for the whole
// cluster. An entry a write made stale is never served. Only a query a
// refresh can run again is served past its TTL: one on the pool whose
// arguments are plain values (not a pointer, a Valuer or a named type);
// any other loads at its TTL, as without StaleFor. A d outside
// [0, MaxTTL] adds ErrInvalidTTL to the statement's errors.
func StaleFor(d time.Duration) Option {
	return func(s *cacheSettings) { s.staleFor = d }
}

// Local serves the query from this instance's near cache, with no round
// trip, for as long as the read behind the cached rows is at most maxStale
// old. It trades the linearizable reads of every other query for speed:
//
//   - a local hit may miss writes made through other instances for at
//     most maxStale, and usually for one pub/sub hop only, since every
//     bump pushes an invalidation to every instance;
//   - writes through this instance end the local entries of their tables
//     before the write returns, so an instance always reads its own writes;
//   - an instance that loses its subscription to invalidations serves no
//     local hit until it has subscribed again.
//
// Local(0) keeps the query out of the near cache even when Config.Local
// sets a default. A negative maxStale adds ErrInvalidTTL to the
// statement's errors. Without a near cache (Config.LocalSize negative) the
// option does nothing.
func Local(maxStale time.Duration) Option {
	return func(s *cacheSettings) { s.local = &maxStale }
}

// Cache returns a GORM scope that opts a query into caching for ttl:
//
//	db.Scopes(gormflight.Cache(time.Minute)).Where("age > ?", 30).Find(&users)
//
// A miss runs once across every instance sharing the Redis prefix; the
// others wait for its result. A ttl outside [MinTTL, MaxTTL] adds
// ErrInvalidTTL to the statement's errors. Queries inside a transaction, and statements that
// write, run uncached.
func Cache(ttl time.Duration, opts ...Option) func(*gorm.DB) *gorm.DB {
	c := CacheClause(ttl, opts...)
	return func(db *gorm.DB) *gorm.DB {
		return db.Clauses(c) // a fresh statement instance, then ModifyStatement
	}
}

// CacheClause is Cache as a clause, for GORM's generics API, whose Scopes
// take statements:
//
//	users, err := gorm.G[User](db, gormflight.CacheClause(time.Minute)).Where("age > ?", 30).Find(ctx)
//
// It also works with db.Clauses. It adds nothing to the SQL.
func CacheClause(ttl time.Duration, opts ...Option) CacheOption {
	s := &cacheSettings{ttl: ttl}
	for _, o := range opts {
		if o != nil {
			o(s)
		}
	}
	return CacheOption{settings: s}
}

// CacheOption is the clause CacheClause returns. It implements
// clause.Expression and gorm.StatementModifier. The zero CacheOption has no
// TTL: it adds ErrInvalidTTL to the statement, as CacheClause(0) does.
type CacheOption struct {
	settings *cacheSettings
}

var (
	_ clause.Expression      = CacheOption{}
	_ gorm.StatementModifier = CacheOption{}
)

// The range of TTLs Cache accepts. Redis stores expiries in whole
// milliseconds and refuses 0; the upper bound leaves room for TTLJitter
// without overflowing a time.Duration.
const (
	MinTTL = engine.MinTTL
	MaxTTL = engine.MaxTTL
)

// ModifyStatement opts the statement in, or adds ErrInvalidTTL to it.
func (c CacheOption) ModifyStatement(stmt *gorm.Statement) {
	if c.settings == nil {
		c.settings = new(cacheSettings)
	}
	if ttl := c.settings.ttl; ttl < MinTTL || ttl > MaxTTL {
		_ = stmt.AddError(fmt.Errorf("%w: got %v, want %v to %v", ErrInvalidTTL, ttl, MinTTL, MaxTTL))
		stmt.Settings.Delete(settingKey)
		return
	}
	if d := c.settings.staleFor; d < 0 || d > MaxTTL {
		_ = stmt.AddError(fmt.Errorf("%w: StaleFor got %v, want 0 to %v", ErrInvalidTTL, d, MaxTTL))
		stmt.Settings.Delete(settingKey)
		return
	}
	if d := c.settings.local; d != nil && *d < 0 {
		_ = stmt.AddError(fmt.Errorf("%w: Local got %v, want 0 or more", ErrInvalidTTL, *d))
		stmt.Settings.Delete(settingKey)
		return
	}
	if err := c.settings.declared.Errs[statementDialect(stmt)]; err != nil {
		_ = stmt.AddError(err)
		stmt.Settings.Delete(settingKey)
		return
	}
	stmt.Settings.Store(settingKey, c.settings)
}

// statementDialect returns the analyser's dialect of stmt's database, or
// PostgreSQL's for one the plugin does not serve (Initialize refuses it).
func statementDialect(stmt *gorm.Statement) sqlscan.Dialect {
	if stmt.DB != nil && stmt.DB.Dialector != nil {
		if d, ok := sqlscan.DialectOf(stmt.DB.Dialector.Name()); ok {
			return d
		}
	}
	return sqlscan.PostgreSQL
}

// Build writes nothing: the clause only marks the statement.
func (CacheOption) Build(clause.Builder) {}
