package sqlflight

import (
	"context"
	"database/sql/driver"
	"errors"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/observe"
)

// observedQuery is QueryContext for an opted-in query when the Connector
// has an Observer: it answers the query as QueryContext does, and reports
// it. A query the connection must prepare first (its driver runs no query
// directly) is reported by the prepared statement that runs it.
func (c *conn) observedQuery(ctx context.Context, s *settings, query string, args []driver.NamedValue) (driver.Rows, error) {
	w := c.c
	start := time.Now()
	req, ok := c.request(s, query, args)
	if ok && w.engine.Enter() {
		defer w.engine.Exit()
		var info engine.Info
		ent, err := w.engine.DoInfo(ctx, req, &info)
		w.cfg.Observer.Observe(ctx, info.Event(req.Hash, req.Tables, start, err))
		if err != nil {
			return nil, err
		}
		return ent.DriverRows(), nil
	}
	query1, qok := c.queryer()
	if !qok {
		return nil, driver.ErrSkip // database/sql prepares it: stmt tracks it
	}
	finish := c.begin(ctx, query)
	rows, err := query1(ctx, query, args)
	if !errors.Is(err, driver.ErrSkip) { // else database/sql prepares it: stmt reports it
		c.reportBypass(ctx, req, query, start, err)
	}
	return c.rowsOf(query, rows, err, finish)
}

// reportBypass reports an opted-in query run uncached. req is the engine's
// request when the connection made one (the wrapper was closing), or the
// zero request: the key was not made.
func (c *conn) reportBypass(ctx context.Context, req engine.Request, query string, start time.Time, err error) {
	tables := req.Tables
	if tables == nil {
		tables = c.c.d.Analysis(query).Touches()
	}
	took := time.Since(start)
	c.c.cfg.Observer.Observe(ctx, observe.Event{
		Outcome: observe.Bypass, Key: req.Hash, Tables: engine.RealTables(tables),
		Start: start, Duration: took, Load: took, Err: err,
	})
}
