package gormflight

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"

	"github.com/gormflight/gormflight/internal/dialect"
	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/rowcodec"
	"gorm.io/gorm"
)

// The same SQL returns different rows on connections whose sessions
// differ: another search_path (schema per tenant), another role, a setting
// a row-level security policy or a view reads, a temporary table that
// hides a table of the same name. Two statements share an entry only if
// their sessions match, so every key includes the session's fingerprint
// (the dialect's SessionSQL in internal/dialect; PostgreSQL's is described
// here, MySQL's and SQLite's there): the current and session user; every setting that shapes
// what a statement returns (PostgreSQL's "Client Connection Defaults" and
// "Version and Platform Compatibility", less those that only govern
// timeouts, logging, vacuum or new objects) whose value does not come from
// the server's defaults or configuration; the custom settings (app.tenant,
// ...) that policies, views and functions read with
// current_setting('name') (built-in settings they read count as above) or
// that Config.SessionSettings names, where the session sets them (so a
// policy added later changes no session that does not set its setting)
// (PostgreSQL lists no custom setting in pg_settings, so those are asked for
// by name); and, for a session with temporary relations, the session
// itself, so that its entries are its own.
//
// A statement on the pool runs on any of its connections, which all start
// as the DSN sets them: the pool's fingerprint is read once, at
// Initialize, and a fill on the pool reads the fingerprint of the
// connection it runs on and stores nothing when it differs. A statement on
// a dedicated connection (db.Connection) may follow a SET on it: its
// connection's fingerprint is read before each cached read. A statement
// that changes session state taints a connection that may go back to the
// pool changed, and while any is tainted, reads on the pool run uncached:
// the plugin cannot tell which session a pooled connection has. Each change
// is undone by its own reset: RESET ALL for settings, RESET ROLE or RESET
// SESSION AUTHORIZATION for the role (RESET ALL keeps it), DISCARD TEMP for
// temporary relations, DISCARD ALL for everything.

// maxTaintedConns bounds how many tainted dedicated connections are
// remembered. Past it the pool counts as tainted for good: an application
// that never resets what it changes gets no cached reads on the pool.
const maxTaintedConns = 1024

// sessionState is what the plugin knows of its pool's sessions.
type sessionState struct {
	*dialect.PoolSession             // the pool's database and session, from Initialize
	poolTx               atomic.Bool // a pooled connection may be inside a transaction begun in SQL
	poolTaint            atomic.Bool // a pooled connection may have changed its session

	mu      sync.Mutex
	tainted map[*sql.Conn]dialect.Aspects // dedicated connections with changed sessions
	count   atomic.Int32                  // len(tainted), read on every cached query
}

// inDoubt reports whether a pooled connection may have a session other
// than the pool's.
func (s *sessionState) inDoubt() bool {
	return s.poolTaint.Load() || s.count.Load() > 0
}

// note records what a statement on a dedicated connection did to its
// session.
func (s *sessionState) note(conn *sql.Conn, eff dialect.Effect) {
	s.mu.Lock()
	defer s.mu.Unlock()
	left := s.tainted[conn]&^eff.Clears | eff.Adds
	if left == 0 {
		delete(s.tainted, conn)
	} else {
		if s.tainted == nil {
			s.tainted = make(map[*sql.Conn]dialect.Aspects)
		}
		s.tainted[conn] = left
		if len(s.tainted) > maxTaintedConns {
			s.poolTaint.Store(true)
			clear(s.tainted)
		}
	}
	s.count.Store(int32(len(s.tainted)))
}

// fingerprint reads the session of the connection pool runs its next
// statement on.
func (p *Plugin) fingerprint(ctx context.Context, pool gorm.ConnPool) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.LoadTimeout)
	defer cancel()
	return p.session.Fingerprint(ctx, pool)
}

// private reports whether reads on conn must run uncached whatever its
// fingerprint says: it is inside a transaction begun in SQL (its reads
// see what it wrote, uncommitted), or the dialect's fingerprint cannot show
// every change (SessionUnseen) and a connection's session changed: conn's,
// one that went back to the pool changed (a later db.Connection may get it
// again, as another *sql.Conn), or one the plugin could not tell.
func (s *sessionState) private(d *dialect.Dialect, conn *sql.Conn) bool {
	s.mu.Lock()
	taint := s.tainted[conn]
	s.mu.Unlock()
	return taint&dialect.AspTx != 0 || d.SessionUnseen && (taint != 0 || s.inDoubt())
}

// inSQLTx reports whether a statement on pool may run inside a transaction
// begun in SQL (BEGIN, SET autocommit = 0): on a dedicated connection that
// began one, or on the pool once one was begun on a pooled connection. Its
// writes commit when SQL says so, so they are announced as a transaction
// the plugin cannot follow announces them.
func (s *sessionState) inSQLTx(pool gorm.ConnPool) bool {
	if c, ok := pool.(*cachedPool); ok {
		pool = c.ConnPool
	}
	switch pool := pool.(type) {
	case *sql.Conn:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.tainted[pool]&dialect.AspTx != 0
	case gorm.TxCommitter:
		return false
	}
	return s.poolTx.Load()
}

// scope returns what keys an opted-in statement on pool besides its SQL:
// the database and the session's fingerprint. It reports false if the
// statement must run uncached.
func (p *Plugin) scope(ctx context.Context, pool gorm.ConnPool) (string, bool) {
	if conn, ok := pool.(*sql.Conn); ok {
		if p.session.private(p.dialect, conn) {
			return "", false
		}
		fp, err := p.fingerprint(ctx, conn)
		return p.session.ScopeOf(fp), err == nil && !p.dialect.PrivateSession(fp)
	}
	if p.session.inDoubt() {
		return "", false
	}
	return p.session.Scope, true
}

// noteSession is the callback after raw, query and row statements that
// records changes of session state (see changesSession).
func (p *Plugin) noteSession(db *gorm.DB) {
	if db.DryRun || db.Statement.SQL.Len() == 0 || cachedRead(db) {
		return
	}
	eff := p.dialect.ChangesSession(db.Statement.SQL.String())
	if eff == (dialect.Effect{}) {
		return
	}
	pool := db.Statement.ConnPool
	if c, ok := pool.(*cachedPool); ok {
		pool = c.ConnPool
	}
	if conn, ok := pool.(*sql.Conn); ok {
		if db.Error != nil {
			// A reset whose statement failed may not have happened:
			// PostgreSQL rolls a failed string of statements back whole.
			eff.Clears = 0
		}
		p.session.note(conn, eff)
		return
	}
	if _, inTx := pool.(gorm.TxCommitter); inTx {
		// BEGIN, SAVEPOINT, RELEASE inside a transaction a driver began:
		// its own Commit ends it.
		eff.Adds, eff.Clears = eff.Adds&^dialect.AspTx, eff.Clears&^dialect.AspTx
	}
	if eff.Adds == 0 {
		return // a reset on a connection of the pool's choosing: nothing to clear
	}
	if eff.Adds&dialect.AspTx != 0 {
		p.session.poolTx.Store(true)
	}
	if !p.session.poolTaint.Swap(true) {
		p.logf(db.Statement.Context, engine.LevelError, "gormflight: %q changed the session of a pooled connection; reads on the pool run uncached from now on. Change session state inside db.Connection and end with RESET ALL, use SET LOCAL inside a transaction, or set it in the DSN", db.Statement.SQL.String())
	}
}

// loadOnPool runs a fill's query on a connection of the pool, after reading
// that connection's fingerprint: if its session is not the pool's (a change
// the plugin did not see, such as a function that calls set_config), the
// rows are the caller's answer but not the key's, and are not stored.
func (p *Plugin) loadOnPool(ctx context.Context, pool gorm.ConnPool, query string, args []any) (*rowcodec.Entry, error) {
	sqlDB := sqlDBOf(pool)
	if sqlDB == nil {
		rows, err := pool.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, err
		}
		ent, err := rowcodec.Capture(rows)
		if ent != nil {
			ent.Local = true // the session cannot be checked
		}
		return ent, err
	}
	ent, differs, err := p.session.Load(ctx, sqlDB, query, args)
	if differs {
		p.engine.Warnf(engine.LogSession, "gormflight: a pooled connection's session differs from the pool's (a session change the plugin did not see?); its result is not cached")
	}
	return ent, err
}

// sqlDBOf returns the *sql.DB behind a pool, or nil.
func sqlDBOf(pool gorm.ConnPool) *sql.DB {
	switch c := pool.(type) {
	case *sql.DB:
		return c
	case gorm.GetDBConnector:
		if db, err := c.GetDBConn(); err == nil {
			return db
		}
	}
	return nil
}
