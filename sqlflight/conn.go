package sqlflight

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/gormflight/gormflight/internal/cachekey"
	"github.com/gormflight/gormflight/internal/dialect"
	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/rowcodec"
)

// conn is a connection of the inner connector. database/sql uses it from
// one goroutine at a time, so its fields need no lock.
type conn struct {
	driver.Conn
	c     *Connector
	taint dialect.Aspects // what its statements changed of its session
	tx    *tx             // the transaction open on it, or nil
	// reloadPending: DDL ran in a transaction begun in SQL; the foreign
	// keys are read again after a statement that may commit it.
	reloadPending bool
}

var (
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
	_ driver.SessionResetter    = (*conn)(nil)
	_ driver.Validator          = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
)

// QueryContext answers an opted-in query from the flight engine, and runs
// everything else on the connection, invalidating what a writing query
// writes.
func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if s := settingsFrom(ctx); s != nil {
		if err := s.check(c.c.d.SQL); err != nil {
			return nil, err
		}
		if c.c.cfg.Observer != nil {
			return c.observedQuery(ctx, s, query, args)
		}
		if req, ok := c.request(s, query, args); ok && c.c.engine.Enter() {
			defer c.c.engine.Exit()
			ent, err := c.c.engine.Do(ctx, req)
			if err != nil {
				return nil, err
			}
			return ent.DriverRows(), nil
		}
	}
	query1, ok := c.queryer()
	if !ok {
		return nil, driver.ErrSkip // database/sql prepares it: stmt tracks it
	}
	finish := c.begin(ctx, query)
	rows, err := query1(ctx, query, args)
	return c.rowsOf(query, rows, err, finish)
}

// rowsOf returns a query's rows. A writing query (DELETE ... RETURNING)
// may commit only once its rows are read: it is invalidated when they are
// closed. Any other query's rows pass through as the driver made them.
func (c *conn) rowsOf(query string, rows driver.Rows, err error, finish func(error)) (driver.Rows, error) {
	if err != nil || len(c.c.d.Analysis(query).Writes) == 0 {
		finish(err)
		return rows, err
	}
	return &trackedRows{Rows: rows, finish: finish}, nil
}

// ExecContext runs a statement, invalidating what it writes.
func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	exec, ok := c.execer()
	if !ok {
		return nil, driver.ErrSkip // database/sql prepares it: stmt tracks it
	}
	var res driver.Result
	err := c.track(ctx, query, func() (err error) {
		res, err = exec(ctx, query, args)
		return err
	})
	return res, err
}

// queryer returns the inner connection's way to run a query directly: its
// QueryerContext, or its older Queryer (without named arguments).
func (c *conn) queryer() (func(context.Context, string, []driver.NamedValue) (driver.Rows, error), bool) {
	switch q := c.Conn.(type) {
	case driver.QueryerContext:
		return q.QueryContext, true
	case driver.Queryer: //nolint:staticcheck // the driver's only way
		return func(_ context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
			vals, err := plainValues(args)
			if err != nil {
				return nil, err
			}
			return q.Query(query, vals)
		}, true
	}
	return nil, false
}

// execer is queryer for statements that return no rows.
func (c *conn) execer() (func(context.Context, string, []driver.NamedValue) (driver.Result, error), bool) {
	switch e := c.Conn.(type) {
	case driver.ExecerContext:
		return e.ExecContext, true
	case driver.Execer: //nolint:staticcheck // the driver's only way
		return func(_ context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
			vals, err := plainValues(args)
			if err != nil {
				return nil, err
			}
			return e.Exec(query, vals)
		}, true
	}
	return nil, false
}

// request describes an opted-in query to the engine. It reports false for
// one that must run uncached: inside a transaction, on a connection whose
// session changed, a statement that writes, changes the session, reads the
// catalog or is no plain query, or arguments no key can hold.
func (c *conn) request(s *settings, query string, args []driver.NamedValue) (engine.Request, bool) {
	w := c.c
	d := w.d
	a := d.Analysis(query)
	if c.tx != nil || c.taint != 0 || len(a.Writes) > 0 || a.Catalog || a.DDL ||
		!a.Kind.IsQuery() || a.Session != (dialect.Effect{}) {
		w.stats.Bypassed.Add(1)
		return engine.Request{}, false
	}
	tables := a.Depends // shared: the engine and the key only read them
	if declared := s.declared.Tables[d.SQL]; len(declared) > 0 {
		tables = dialect.MergeTables(tables, declared)
	}
	// A flight may outlive its caller: it runs with a snapshot of
	// arguments that are not plain values, which the key is computed from,
	// and computes the key again around its query (Same), since a Valuer
	// may give another value each time.
	vals, plain := engine.FlightArgs(values(args))
	hash, err := cachekey.Query(d.Name, w.session.Scope, query, vals, tables)
	if err != nil {
		w.stats.Bypassed.Add(1)
		return engine.Request{}, false
	}
	var same func() bool
	if !plain {
		same = cachekey.Recheck(hash, d.Name, w.session.Scope, query, vals, tables)
	}
	return engine.Request{
		Hash: hash, Tables: tables, TTL: s.ttl, StaleFor: s.staleFor, Local: s.local,
		Refreshable: plain, Same: same,
		Load: func(ctx context.Context) (*rowcodec.Entry, error) {
			ent, differs, err := w.session.Load(ctx, w.loads, query, vals)
			if differs {
				w.engine.Warnf(engine.LogSession, "gormflight: a connection of the wrapper's pool has a session other than the pool's; its result is not cached")
			}
			return ent, err
		},
	}, true
}

// values returns the arguments as database/sql takes them again: named
// ones as sql.NamedArg.
func values(args []driver.NamedValue) []any {
	out := make([]any, len(args))
	for i, a := range args {
		if a.Name != "" {
			out[i] = sql.Named(a.Name, a.Value)
		} else {
			out[i] = a.Value
		}
	}
	return out
}

// track runs a statement, and invalidates the tables it writes: outside a
// transaction, announced before it runs and bumped after (held, when a
// transaction begun in SQL may leave it uncommitted); inside one, recorded
// for Commit, and bumped as it runs too once a statement ended the
// transaction early. It records what the statement does to the
// connection's session.
func (c *conn) track(ctx context.Context, query string, run func() error) error {
	finish := c.begin(ctx, query)
	err := run()
	finish(err)
	return err
}

// begin starts a statement for track: it announces what the statement
// writes, and returns what to call once the statement is complete.
func (c *conn) begin(ctx context.Context, query string) (finish func(err error)) {
	w := c.c
	ctx = context.WithoutCancel(ctx) // a write the caller gave up on may still commit
	tables := w.written(ctx, query)
	ddl := w.d.Analysis(query).DDL
	eff := w.d.ChangesSession(query)
	if c.tx != nil {
		c.tx.record(tables, ddl)
		if !c.tx.implicitCommit(w.d.CommitsImplicitly(query)) {
			return func(err error) { c.note(eff, err) }
		}
		// The statement ends the transaction (COMMIT run as SQL, MySQL's
		// DDL), or one before it did: its writes commit as they run. They
		// are bumped now, and again when the transaction ends.
		tables = c.tx.recorded()
	}
	var a engine.Announcement
	if len(tables) > 0 {
		held := c.tx == nil && (c.taint|eff.Adds)&dialect.AspTx != 0
		a = w.engine.Announce(ctx, tables, held)
	}
	return func(err error) {
		if len(tables) > 0 {
			if a.Held() || engine.UncertainOutcome(err) {
				a = engine.Announcement{} // it ends on its own: the commit may come later
			}
			_ = w.engine.Invalidate(ctx, tables, a)
		}
		if ddl && c.tx == nil && c.taint&dialect.AspTx == 0 {
			w.reloadSchema(ctx, true)
		} else if ddl {
			c.reloadPending = true // the DDL is visible to other connections once committed
		}
		if c.reloadPending && c.tx == nil && w.d.CommitsImplicitly(query) {
			c.reloadPending = false
			w.reloadSchema(ctx, true)
		}
		c.note(eff, err)
	}
}

// trackedRows are a writing query's rows: the write is invalidated once
// they are closed, when the statement has completed.
type trackedRows struct {
	driver.Rows
	finish func(error)
	once   sync.Once
}

func (r *trackedRows) Close() error {
	err := r.Rows.Close()
	r.once.Do(func() { r.finish(err) })
	return err
}

// The optional column and result-set methods answer as database/sql does
// for a driver that lacks them.

func (r *trackedRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *trackedRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *trackedRows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *trackedRows) ColumnTypeNullable(i int) (bool, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *trackedRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

func (r *trackedRows) HasNextResultSet() bool {
	n, ok := r.Rows.(driver.RowsNextResultSet)
	return ok && n.HasNextResultSet()
}

func (r *trackedRows) NextResultSet() error {
	if n, ok := r.Rows.(driver.RowsNextResultSet); ok {
		return n.NextResultSet()
	}
	return io.EOF
}

// note records a statement's effect on the connection's session, err its
// outcome. A reset counts only once it surely took effect: not when its
// statement failed (PostgreSQL rolls a failed string of statements back
// whole), nor inside a transaction, which may still roll it back, to a
// savepoint too. A transaction a driver began ends with its own Commit,
// not with SQL's.
func (c *conn) note(eff dialect.Effect, err error) {
	if c.tx != nil {
		eff.Adds &^= dialect.AspTx
	}
	if c.tx != nil || err != nil {
		eff.Clears = 0
	}
	c.taint = c.taint&^eff.Clears | eff.Adds
}

// BeginTx begins a transaction whose writes are invalidated when it
// commits.
func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	var t driver.Tx
	var err error
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		t, err = b.BeginTx(ctx, opts)
	} else {
		if opts.Isolation != 0 || opts.ReadOnly {
			return nil, errors.New("gormflight: the driver takes no transaction options")
		}
		t, err = c.Conn.Begin() //nolint:staticcheck // the driver's only way
	}
	if err != nil {
		return nil, err
	}
	c.tx = &tx{Tx: t, c: c}
	return c.tx, nil
}

// PrepareContext prepares a statement whose executions invalidate what it
// writes. Queries of a prepared statement run uncached.
func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	var s driver.Stmt
	var err error
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		s, err = p.PrepareContext(ctx, query)
	} else {
		s, err = c.Conn.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	return wrapStmt(&stmt{Stmt: s, c: c, query: query}), nil
}

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func (c *conn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *conn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *conn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// tx is a transaction that invalidates what it wrote once Commit returned.
type tx struct {
	driver.Tx
	c *conn

	mu       sync.Mutex
	written  []string
	ddl      bool // a statement changed the schema: reload it after Commit
	implicit bool // a statement ended it early (COMMIT as SQL, MySQL's DDL): writes commit as they run
}

// implicitCommit reports whether the transaction's writes may commit as
// they run: a statement in it ended it, now (ends) or before.
func (t *tx) implicitCommit(ends bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.implicit = t.implicit || ends
	return t.implicit
}

// recorded returns what the transaction wrote so far, and keeps it.
func (t *tx) recorded() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	tables := slices.Clone(t.written)
	slices.Sort(tables)
	return slices.Compact(tables)
}

func (t *tx) record(tables []string, ddl bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.written = append(t.written, tables...)
	t.ddl = t.ddl || ddl
}

func (t *tx) take() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	tables := t.written
	t.written = nil
	slices.Sort(tables)
	return slices.Compact(tables)
}

// Commit announces what the transaction wrote, commits, then invalidates
// it before returning: once Commit has returned, no instance serves older
// rows. A failed commit still ends its announcements.
func (t *tx) Commit() error {
	w := t.c.c
	tables := t.take()
	a := w.engine.Announce(context.Background(), tables, false)
	err := t.Tx.Commit()
	_ = w.engine.Invalidate(context.Background(), tables, a)
	t.c.tx = nil
	if t.ddl {
		w.reloadSchema(context.Background(), true)
	}
	return err
}

// Rollback drops what the transaction wrote, unless a statement ended it
// early: those writes stay, and are bumped again.
func (t *tx) Rollback() error {
	tables := t.take()
	t.c.tx = nil
	err := t.Tx.Rollback()
	if t.implicitCommit(false) {
		_ = t.c.c.engine.Invalidate(context.Background(), tables, engine.Announcement{})
	}
	if t.ddl {
		t.c.c.reloadSchema(context.Background(), true)
	}
	return err
}

// stmt is a prepared statement whose executions invalidate what it writes.
type stmt struct {
	driver.Stmt
	c     *conn
	query string
}

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	var res driver.Result
	err := s.c.track(ctx, s.query, func() (err error) {
		if e, ok := s.Stmt.(driver.StmtExecContext); ok {
			res, err = e.ExecContext(ctx, args)
			return err
		}
		vals, err := plainValues(args)
		if err == nil {
			res, err = s.Stmt.Exec(vals) //nolint:staticcheck // the driver's only way
		}
		return err
	})
	return res, err
}

// QueryContext runs the prepared query, uncached: one run with WithCache
// is reported to the Observer as a bypass.
func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	if settingsFrom(ctx) != nil && s.c.c.cfg.Observer != nil {
		start := time.Now()
		rows, err := s.run(ctx, args)
		s.c.reportBypass(ctx, engine.Request{}, s.query, start, err)
		return rows, err
	}
	return s.run(ctx, args)
}

// run runs the prepared query, invalidating what it writes.
func (s *stmt) run(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	finish := s.c.begin(ctx, s.query)
	var rows driver.Rows
	var err error
	if q, ok := s.Stmt.(driver.StmtQueryContext); ok {
		rows, err = q.QueryContext(ctx, args)
	} else {
		var vals []driver.Value
		if vals, err = plainValues(args); err == nil {
			rows, err = s.Stmt.Query(vals) //nolint:staticcheck // the driver's only way
		}
	}
	return s.c.rowsOf(s.query, rows, err, finish)
}

// checkedStmt is a stmt whose inner statement checks its own arguments.
type checkedStmt struct{ *stmt }

func (s checkedStmt) CheckNamedValue(nv *driver.NamedValue) error {
	return s.Stmt.(driver.NamedValueChecker).CheckNamedValue(nv)
}

// convertedStmt is a stmt whose inner statement converts its arguments by
// column (database/sql calls the converter as it would the driver's).
type convertedStmt struct{ *stmt }

func (s convertedStmt) ColumnConverter(idx int) driver.ValueConverter {
	return s.Stmt.(driver.ColumnConverter).ColumnConverter(idx) //nolint:staticcheck // the driver's
}

// wrapStmt returns s with the argument checks its inner statement has.
func wrapStmt(s *stmt) driver.Stmt {
	switch s.Stmt.(type) {
	case driver.NamedValueChecker:
		return checkedStmt{s}
	case driver.ColumnConverter: //nolint:staticcheck // the driver's
		return convertedStmt{s}
	}
	return s
}

// plainValues are args for a driver without context methods, which takes
// no names.
func plainValues(args []driver.NamedValue) ([]driver.Value, error) {
	out := make([]driver.Value, len(args))
	for i, a := range args {
		if a.Name != "" {
			return nil, errors.New("gormflight: the driver takes no named arguments")
		}
		out[i] = a.Value
	}
	return out, nil
}
