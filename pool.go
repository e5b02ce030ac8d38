package gormflight

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gormflight/gormflight/internal/cachekey"
	"github.com/gormflight/gormflight/internal/dialect"
	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/rowcodec"
	"gorm.io/gorm"
)

// cachedPool is the connection pool an opted-in statement reads through. It
// answers QueryContext and QueryRowContext from the flight engine with
// genuine *sql.Rows and *sql.Row replayed from the entry; everything else
// goes to the statement's own pool.
type cachedPool struct {
	gorm.ConnPool
	plugin   *Plugin
	settings *cacheSettings
	scope    string // the database and session the statement runs in (session.go)
	onPool   bool   // the statement runs on any connection of the pool
	// read is the last statement string the pool found a plain read: no
	// writes, no DDL, no change to its session (see cachedRead).
	read string
}

// cachedRead reports whether db's statement is one its cached pool found a
// plain read: the callbacks after it, which look for writes and changes
// of session, then have nothing to do.
func cachedRead(db *gorm.DB) bool {
	c, ok := db.Statement.ConnPool.(*cachedPool)
	return ok && c.read != "" && db.Statement.SQL.String() == c.read
}

func (c *cachedPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	p := c.plugin
	if p.cfg.Observer != nil {
		return c.observedQuery(ctx, query, args)
	}
	req, ok := p.request(c, query, args)
	if !ok || !p.engine.Enter() {
		return c.ConnPool.QueryContext(ctx, query, args...)
	}
	defer p.engine.Exit()
	ent, err := p.engine.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	return p.replay.Rows(ctx, ent)
}

func (c *cachedPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	p := c.plugin
	if p.cfg.Observer != nil {
		return c.observedQueryRow(ctx, query, args)
	}
	req, ok := p.request(c, query, args)
	if !ok || !p.engine.Enter() {
		return c.ConnPool.QueryRowContext(ctx, query, args...)
	}
	defer p.engine.Exit()
	ent, err := p.engine.Do(ctx, req)
	return p.replay.Row(ctx, ent, err)
}

// BeginTx keeps transactions working on a statement whose pool was swapped.
func (c *cachedPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	switch b := c.ConnPool.(type) {
	case gorm.TxBeginner:
		return b.BeginTx(ctx, opts)
	case gorm.ConnPoolBeginner:
		return b.BeginTx(ctx, opts)
	}
	return nil, gorm.ErrInvalidTransaction
}

// GetDBConn lets db.DB() reach the *sql.DB behind a swapped pool.
func (c *cachedPool) GetDBConn() (*sql.DB, error) {
	if g, ok := c.ConnPool.(gorm.GetDBConnector); ok {
		return g.GetDBConn()
	}
	if db, ok := c.ConnPool.(*sql.DB); ok {
		return db, nil
	}
	return nil, errors.New("gormflight: statement pool has no *sql.DB")
}

// request describes a query to the engine. It reports false for a query
// that must run uncached: one that writes or is not a plain query (CALL,
// DO, ...), or whose arguments cannot be hashed into a key.
func (p *Plugin) request(c *cachedPool, query string, args []any) (engine.Request, bool) {
	d := p.dialect
	sql := d.Analysis(query)
	// Catalog reads are never cached: DDL changes them, and entries would
	// otherwise need every DDL statement to name what it changed there.
	if len(sql.Writes) > 0 || sql.Catalog || sql.DDL || !sql.Kind.IsQuery() || sql.Session != (dialect.Effect{}) {
		p.stats.Bypassed.Add(1)
		return engine.Request{}, false
	}
	c.read = query
	// Every entry also depends on sqlscan.AllTables, which DDL whose
	// effects cannot be named (DROP SCHEMA ... CASCADE, CREATE FUNCTION)
	// bumps.
	tables := sql.Depends // shared: the engine and the key only read them
	if declared := c.settings.declaredTables(d.SQL); len(declared) > 0 {
		tables = dialect.MergeTables(tables, declared)
	}
	// A refresh ahead of expiry runs the query after its caller returned:
	// not for a statement bound to the caller's connection (db.Connection),
	// nor with arguments the caller could change meanwhile. A flight may
	// outlive its caller too: it runs with a snapshot of such arguments,
	// which the key is computed from, and computes the key again around
	// its query (Same), since a Valuer may give another value each time.
	inner, onPool := c.ConnPool, c.onPool
	args, plain := engine.FlightArgs(args)
	hash, err := cachekey.Query(d.Name, c.scope, query, args, tables)
	if err != nil {
		p.stats.Bypassed.Add(1)
		return engine.Request{}, false
	}
	var same func() bool
	if !plain {
		same = cachekey.Recheck(hash, d.Name, c.scope, query, args, tables)
	}
	return engine.Request{
		Hash:        hash,
		Tables:      tables,
		TTL:         c.settings.ttl,
		StaleFor:    c.settings.staleFor,
		Local:       p.localFor(c.settings),
		Refreshable: plain && onPool,
		Same:        same,
		Load: func(ctx context.Context) (*rowcodec.Entry, error) {
			if onPool {
				return p.loadOnPool(ctx, inner, query, args)
			}
			rows, err := inner.QueryContext(ctx, query, args...)
			if err != nil {
				return nil, err
			}
			return rowcodec.Capture(rows)
		},
	}, true
}

// localFor returns the near cache's staleness bound for a statement with
// settings s: its own (Local), or the Config's default.
func (p *Plugin) localFor(s *cacheSettings) time.Duration {
	if s.local != nil {
		return *s.local
	}
	return p.cfg.Local
}
