package gormflight

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/observe"
	"gorm.io/gorm"
)

// What the plugin tells Config.Observer: an event per query of a statement
// that asked for the cache. The cached pool reports the queries it answers
// or runs uncached itself; a statement the callbacks keep off the cached
// pool (in a transaction, on a session that cannot be known) is marked,
// and reported once GORM's own callback has run it. Without an Observer
// none of this runs: QueryContext and QueryRowContext take their usual
// path.

// observedQuery is QueryContext for a plugin with an Observer.
func (c *cachedPool) observedQuery(ctx context.Context, query string, args []any) (*sql.Rows, error) {
	p := c.plugin
	start := time.Now()
	req, ok := p.request(c, query, args)
	if !ok || !p.engine.Enter() {
		rows, err := c.ConnPool.QueryContext(ctx, query, args...)
		p.reportBypass(ctx, req, query, start, err)
		return rows, err
	}
	defer p.engine.Exit()
	var info engine.Info
	ent, err := p.engine.DoInfo(ctx, req, &info)
	var rows *sql.Rows
	if err == nil {
		rows, err = p.replay.Rows(ctx, ent)
	}
	p.cfg.Observer.Observe(ctx, info.Event(req.Hash, req.Tables, start, err))
	return rows, err
}

// observedQueryRow is QueryRowContext for a plugin with an Observer.
func (c *cachedPool) observedQueryRow(ctx context.Context, query string, args []any) *sql.Row {
	p := c.plugin
	start := time.Now()
	req, ok := p.request(c, query, args)
	if !ok || !p.engine.Enter() {
		row := c.ConnPool.QueryRowContext(ctx, query, args...)
		p.reportBypass(ctx, req, query, start, row.Err())
		return row
	}
	defer p.engine.Exit()
	var info engine.Info
	ent, err := p.engine.DoInfo(ctx, req, &info)
	p.cfg.Observer.Observe(ctx, info.Event(req.Hash, req.Tables, start, err))
	return p.replay.Row(ctx, ent, err)
}

// reportBypass reports a query the cached pool ran uncached. req is the
// engine's request when the plugin made one (it was closing), or the zero
// request: the key was not made.
func (p *Plugin) reportBypass(ctx context.Context, req engine.Request, query string, start time.Time, err error) {
	tables := req.Tables
	if tables == nil {
		tables = p.dialect.Analysis(query).Touches()
	}
	took := time.Since(start)
	p.cfg.Observer.Observe(ctx, observe.Event{
		Outcome: observe.Bypass, Key: req.Hash, Tables: engine.RealTables(tables),
		Start: start, Duration: took, Load: took, Err: err,
	})
}

// bypassKey is the Statement.Settings key of a statement the callbacks
// kept off the cached pool: its value is when they did.
const bypassKey = "gormflight:bypass"

// markBypass marks a statement that asked for the cache, and that the
// callbacks keep off the cached pool, for the report after GORM ran it.
func (p *Plugin) markBypass(db *gorm.DB) {
	if p.cfg.Observer != nil {
		db.Statement.Settings.Store(bypassKey, time.Now())
	}
}

// unmarkBypass clears a mark a statement may have inherited from the one
// it was cloned from: the cached pool reports it.
func (p *Plugin) unmarkBypass(db *gorm.DB) {
	if p.cfg.Observer == nil {
		return
	}
	// Load first: a sync.Map's Delete of a missing key may allocate.
	if _, marked := db.Statement.Settings.Load(bypassKey); marked {
		db.Statement.Settings.Delete(bypassKey)
	}
}

// registerObserver registers, when there is an Observer, the callback that
// reports the statements markBypass marked: after GORM's own query and row
// callbacks, and before preloads, which copy the statement's settings.
func (p *Plugin) registerObserver(db *gorm.DB) error {
	if p.cfg.Observer == nil {
		return nil
	}
	if err := db.Callback().Query().After("gorm:query").Before("gorm:preload").Register("gormflight:observe", p.reportMarked); err != nil {
		return fmt.Errorf("gormflight: register query observe callback: %w", err)
	}
	if err := db.Callback().Row().After("gorm:row").Register("gormflight:observe", p.reportMarked); err != nil {
		return fmt.Errorf("gormflight: register row observe callback: %w", err)
	}
	return nil
}

// reportMarked reports a statement markBypass marked, once GORM ran it.
func (p *Plugin) reportMarked(db *gorm.DB) {
	v, ok := db.Statement.Settings.LoadAndDelete(bypassKey)
	if !ok {
		return
	}
	start, _ := v.(time.Time)
	took := time.Since(start)
	p.cfg.Observer.Observe(db.Statement.Context, observe.Event{
		Outcome: observe.Bypass, Tables: engine.RealTables(p.dialect.Analysis(db.Statement.SQL.String()).Touches()),
		Start: start, Duration: took, Load: took, Err: db.Error,
	})
}
