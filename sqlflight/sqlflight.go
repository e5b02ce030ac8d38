// Package sqlflight is gormflight for database/sql: the same cluster-wide
// flight, keys, generations and write protocol, for code on a *sql.DB
// (sqlx, sqlc, bun, ent, plain database/sql) rather than on GORM. It wraps
// the driver's connector:
//
//	db := sql.OpenDB(sqlflight.Wrap(connector, sqlflight.Config{Redis: rdb, Dialect: "postgres"}))
//
// and a query opts in through its context:
//
//	ctx := sqlflight.WithCache(ctx, time.Minute)
//	rows, err := db.QueryContext(ctx, "SELECT id, name FROM users WHERE team = $1", team)
//
// Everything without WithCache runs as without the wrapper, and every write
// through it (ExecContext, and QueryContext of a statement that writes)
// invalidates its tables on every instance before it returns; inside a
// transaction, when Commit returns. A GORM service with the gormflight
// plugin and a service on sqlflight that share a Redis prefix and a
// database invalidate each other's entries.
//
// The guarantees are gormflight's: a read that starts after a write
// returned never gets rows from before it, on any instance; errors are
// never cached; if Redis fails, queries run on the database. A cached
// query is loaded on a connection of the wrapper's own (a second pool of
// the same connector), in the session the connector's connections start
// in; a query on a connection whose statements changed its session (SET,
// USE, a temporary table, a transaction begun in SQL) runs uncached on
// that connection, and so does every query inside a transaction.
package sqlflight

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gormflight/gormflight/internal/dialect"
	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/sqlscan"
	"github.com/gormflight/gormflight/observe"
	"github.com/redis/go-redis/v9"
)

// Config configures a Connector. Redis and Dialect are required; the zero
// value of every other field means its default, as gormflight.Config
// documents the fields of the same names.
type Config struct {
	// Redis stores entries, locks and generations. Required.
	Redis redis.UniversalClient
	// Dialect is the database's: "postgres", "mysql" (MariaDB too) or
	// "sqlite", as GORM names them. Required: a driver.Connector does not
	// say which database it reaches.
	Dialect string
	// Prefix namespaces every Redis key and channel: the GORM plugin of
	// another service shares entries and invalidations with this one when
	// it uses the same prefix on the same database. Default "gormflight".
	Prefix string
	// Database names the database in keys. Default: what the database
	// reports (gormflight.Config.Database).
	Database string

	LockExpiry, MaxWait, LoadTimeout, RedisTimeout, BreakerCooldown  time.Duration
	FailOnWaitTimeout, FailClosed                                    bool
	MaxEntrySize, MemoSize, LocalSize, BreakerFailures, MaxRefreshes int
	TTLJitter, RefreshBeta                                           float64
	// WaitReplicas makes writes wait for Redis replicas, and operations
	// outlast a failover for up to FailoverWait, as
	// gormflight.Config.WaitReplicas and FailoverWait.
	WaitReplicas int
	FailoverWait time.Duration
	// KeyCopies spreads each table's keys over Redis Cluster, as
	// gormflight.Config.KeyCopies.
	KeyCopies int

	// AlsoWrites declares writes no catalog shows (triggers), as
	// gormflight.Config.AlsoWrites.
	AlsoWrites map[string][]string
	// SessionSettings names settings that change what queries return, as
	// gormflight.Config.SessionSettings.
	SessionSettings []string
	// Logf receives the wrapper's warnings and errors (a failed
	// invalidation, an opening breaker). Default: none.
	Logf func(format string, args ...any)
	// Observer receives an observe.Event for every query run with
	// WithCache, once its result is known, on the query's goroutine, as
	// gormflight.Config.Observer. A query of a prepared statement, which
	// runs uncached, is reported as observe.Bypass. Default nil: nothing
	// is observed, at no cost.
	Observer observe.Observer
}

// Stats is a snapshot of a Connector's counters; observe.Stats documents
// them.
type Stats = observe.Stats

// Errors, shared with package gormflight: match them with errors.Is.
var (
	ErrNoRedis            = engine.ErrNoRedis
	ErrInvalidConfig      = engine.ErrInvalidConfig
	ErrInvalidTTL         = engine.ErrInvalidTTL
	ErrInvalidTableName   = dialect.ErrInvalidTableName
	ErrUnsupportedDialect = dialect.ErrUnsupported
	ErrWaitTimeout        = engine.ErrWaitTimeout
	ErrRedisUnavailable   = engine.ErrRedisUnavailable
)

// schemaMaxAge is how old the foreign-key graph may grow before a write
// reloads it (DDL run elsewhere), as in package gormflight.
const schemaMaxAge = time.Minute

// Connector is a driver.Connector whose connections cache opted-in queries
// and invalidate what their writes change. Open it with sql.OpenDB; it is
// safe for concurrent use. Closing the *sql.DB closes it.
type Connector struct {
	inner   driver.Connector
	cfg     Config
	err     error // a Config New refused: every Connect returns it
	d       *dialect.Dialect
	engine  *engine.Engine
	stats   engine.Counters
	loads   *sql.DB // the inner connector's own pool: fills and catalog reads
	closing sync.Once

	mu       sync.Mutex // guards setup until it succeeds
	ready    atomic.Bool
	session  *dialect.PoolSession
	declared map[string][]string
	graph    atomic.Pointer[dialect.Graph]
	schemaMu sync.Mutex // one reload of the graph at a time
}

// Wrap returns c with caching and invalidation, for sql.OpenDB. A Config
// New refuses makes every connection fail with New's error.
func Wrap(c driver.Connector, cfg Config) *Connector {
	w, err := New(c, cfg)
	if err != nil {
		return &Connector{inner: c, err: err}
	}
	return w
}

// New is Wrap that returns the Config's error at once. It starts the
// engine's goroutines, which closing the *sql.DB (or Close) stops; the
// database is first read when the first connection opens.
func New(c driver.Connector, cfg Config) (*Connector, error) {
	if cfg.Redis == nil {
		return nil, ErrNoRedis
	}
	d, err := dialect.Of(cfg.Dialect)
	if err != nil {
		return nil, err
	}
	w := &Connector{inner: c, cfg: cfg, d: d}
	if w.declared, err = dialect.NormAlsoWrites(d.TableName, cfg.AlsoWrites); err != nil {
		return nil, err
	}
	ec := engine.Config{
		Redis: cfg.Redis, Prefix: cfg.Prefix, LockExpiry: cfg.LockExpiry, MaxWait: cfg.MaxWait,
		FailOnWaitTimeout: cfg.FailOnWaitTimeout, LoadTimeout: cfg.LoadTimeout, RedisTimeout: cfg.RedisTimeout,
		FailClosed: cfg.FailClosed, MaxEntrySize: cfg.MaxEntrySize, TTLJitter: cfg.TTLJitter,
		MemoSize: cfg.MemoSize, LocalSize: cfg.LocalSize, BreakerFailures: cfg.BreakerFailures,
		BreakerCooldown: cfg.BreakerCooldown, RefreshBeta: cfg.RefreshBeta, MaxRefreshes: cfg.MaxRefreshes,
		WaitReplicas: cfg.WaitReplicas, FailoverWait: cfg.FailoverWait, KeyCopies: cfg.KeyCopies, Log: w.logf, Stats: &w.stats,
	}
	if err := ec.SetDefaults(); err != nil {
		return nil, err
	}
	w.cfg.LoadTimeout = ec.LoadTimeout
	if w.engine, err = engine.New(ec); err != nil {
		return nil, err
	}
	w.loads = sql.OpenDB(c)
	return w, nil
}

func (c *Connector) logf(_ context.Context, _ engine.Level, format string, args ...any) {
	if c.cfg.Logf != nil {
		c.cfg.Logf(format, args...)
	}
}

// Connect opens a connection of the inner connector, wrapped. The first
// reads the database's name, the pool's session and its foreign keys.
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	if c.err != nil {
		return nil, c.err
	}
	if err := c.setup(ctx); err != nil {
		return nil, err
	}
	dc, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: dc, c: c}, nil
}

// Driver returns the inner connector's driver.
func (c *Connector) Driver() driver.Driver { return c.inner.Driver() }

// setup reads, once it succeeds, what keys and invalidations depend on.
func (c *Connector) setup(ctx context.Context) error {
	if c.ready.Load() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready.Load() {
		return nil
	}
	if c.d.SQL == sqlscan.SQLite {
		// Fills run on the wrapper's own pool, which an in-memory
		// database (each connection's own, or its process's) would not
		// share: they would read another, empty database.
		if _, err := c.d.Database(ctx, c.loads); err != nil {
			return fmt.Errorf("%w: sqlflight needs an SQLite database in a file: %w", ErrUnsupportedDialect, err)
		}
	}
	s, err := c.d.Open(ctx, c.loads, c.cfg.Database, c.cfg.SessionSettings)
	if err != nil {
		return err
	}
	g, err := c.d.ReadSchema(ctx, c.loads, c.declared)
	if err != nil {
		return fmt.Errorf("gormflight: read foreign keys and triggers: %w", err)
	}
	c.session = s
	c.graph.Store(g)
	c.ready.Store(true)
	return nil
}

// Close stops the engine and closes the wrapper's own pool, which closes
// the inner connector (if it is an io.Closer). database/sql calls it when
// the *sql.DB closes.
func (c *Connector) Close() error {
	var err error
	c.closing.Do(func() {
		if c.engine == nil { // a Config Wrap refused: only the inner connector to close
			if cl, ok := c.inner.(interface{ Close() error }); ok {
				err = cl.Close()
			}
			return
		}
		_, err = c.engine.Close()
		err = errors.Join(err, c.loads.Close()) // which closes the inner connector
	})
	return err
}

// Stats returns a snapshot of the counters.
func (c *Connector) Stats() Stats { return c.stats.Snapshot() }

// Invalidate marks tables as written, so that no instance serves entries
// computed before the call: after writes made outside the wrapper.
// Names are read in the dialect's SQL, as gormflight.Plugin.Invalidate
// reads them.
func (c *Connector) Invalidate(ctx context.Context, tables ...string) error {
	if c.err != nil {
		return c.err
	}
	if err := c.setup(ctx); err != nil { // the foreign keys its cascades follow
		return err
	}
	norm := make([]string, 0, len(tables))
	for _, t := range tables {
		n, err := c.d.TableName(t)
		if err != nil {
			return err
		}
		norm = append(norm, n)
	}
	slices.Sort(norm)
	return c.engine.Invalidate(ctx, c.graph.Load().Expand(slices.Compact(norm), false), engine.Announcement{})
}

// written returns the tables query writes, with those its foreign keys
// and declared writes reach; a DDL statement first reloads the graph.
func (c *Connector) written(ctx context.Context, query string) []string {
	a := c.d.Analysis(query)
	if len(a.Writes) == 0 {
		return nil
	}
	if time.Since(c.graph.Load().Loaded) >= schemaMaxAge {
		c.reloadSchema(ctx, false)
	}
	return c.graph.Load().Expand(a.Writes, c.d.TruncatesCascade(query))
}

// reloadSchema reads the foreign keys again on the wrapper's pool; a
// failure keeps the graph it has (logged). After DDL (force) it waits for
// a reload in progress, which may have read before the DDL; otherwise it
// leaves the reload to that one.
func (c *Connector) reloadSchema(ctx context.Context, force bool) {
	if force {
		c.schemaMu.Lock()
	} else if !c.schemaMu.TryLock() {
		return
	}
	defer c.schemaMu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dialect.SchemaLoadTimeout)
	defer cancel()
	g, err := c.d.ReadSchema(ctx, c.loads, c.declared)
	if err != nil {
		c.logf(ctx, engine.LevelError, "gormflight: could not reload foreign keys and triggers: %v", err)
		return
	}
	c.graph.Store(g)
}

// Unwrap returns the inner driver's connection behind one of the
// wrapper's, as sql.Conn.Raw hands it (a pgx *stdlib.Conn for CopyFrom or
// LISTEN), or driverConn itself when it is not the wrapper's. Statements
// run on it go around the wrapper: call Invalidate after writes made there.
func Unwrap(driverConn any) any {
	if c, ok := driverConn.(*conn); ok {
		return c.Conn
	}
	return driverConn
}
