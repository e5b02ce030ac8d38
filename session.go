package gormflight

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gormflight/gormflight/internal/sqlscan"
	"gorm.io/gorm"
)

// The same SQL returns different rows on connections whose sessions
// differ: another search_path (schema per tenant), another role, a setting
// a row-level security policy reads. Two statements share an entry only if
// their sessions match, so every key includes the session's fingerprint
// (sessionSQL): the current and session user, every setting that shapes
// what a statement returns (PostgreSQL's "Client Connection Defaults" and
// "Version and Platform Compatibility": search_path, TimeZone, DateStyle,
// row_security, standard_conforming_strings, ..., but no timeouts) whose
// value does not come from the server's defaults or configuration, and the
// custom settings (app.tenant, ...) that row-level security policies read
// or Config.SessionSettings names — PostgreSQL lists no custom setting in
// pg_settings, so those are asked for by name.
//
// A statement on the pool runs on any of its connections, which all start
// as the DSN sets them: the pool's fingerprint is read once, at
// Initialize. A statement on a dedicated connection (db.Connection) may
// follow a SET on it: its connection's fingerprint is read before each
// cached read. A statement that changes session state (SET, RESET,
// set_config, DISCARD) taints a connection that may go back to the pool
// changed, and from then on reads on the pool run uncached: the plugin can
// no longer tell which session a pooled connection has. A connection in
// db.Connection that ends its changes with RESET ALL or DISCARD ALL is
// clean again.

// sessionSQL returns the session's fingerprint. $1 is Config.SessionSettings.
const sessionSQL = `SELECT current_user || E'\n' || session_user || E'\n' ||
	coalesce((SELECT string_agg(name || '=' || setting, E'\n' ORDER BY name)
		FROM pg_catalog.pg_settings
		WHERE source NOT IN ('default', 'override', 'configuration file')
			AND (category LIKE 'Client Connection Defaults%' OR category LIKE 'Version and Platform Compatibility%')
			AND name NOT LIKE '%timeout'), '') || E'\n' ||
	coalesce((SELECT string_agg(n || '=' || coalesce(current_setting(n, true), ''), E'\n' ORDER BY n)
		FROM (SELECT (regexp_matches(coalesce(pg_catalog.pg_get_expr(polqual, polrelid), '') || ' ' ||
				coalesce(pg_catalog.pg_get_expr(polwithcheck, polrelid), ''),
				'current_setting\(''([^'']+)''', 'g'))[1] AS n
			FROM pg_catalog.pg_policy
			UNION SELECT unnest($1::text[])) AS s), '')`

// maxTaintedConns bounds how many tainted dedicated connections are
// remembered. Past it the pool counts as tainted for good: an application
// that never resets what it changes gets no cached reads on the pool.
const maxTaintedConns = 1024

// sessionState is what the plugin knows of its pool's sessions.
type sessionState struct {
	pool      string      // the pool's scope: database and fingerprint, from Initialize
	names     []string    // Config.SessionSettings
	poolTaint atomic.Bool // a pooled connection may have changed its session

	mu      sync.Mutex
	tainted map[*sql.Conn]struct{} // dedicated connections with changed sessions
	count   atomic.Int32           // len(tainted), read on every cached query
}

// inDoubt reports whether a pooled connection may have a session other
// than the pool's.
func (s *sessionState) inDoubt() bool {
	return s.poolTaint.Load() || s.count.Load() > 0
}

func (s *sessionState) taint(conn *sql.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tainted == nil {
		s.tainted = make(map[*sql.Conn]struct{})
	}
	s.tainted[conn] = struct{}{}
	if len(s.tainted) > maxTaintedConns {
		s.poolTaint.Store(true)
		clear(s.tainted)
	}
	s.count.Store(int32(len(s.tainted)))
}

func (s *sessionState) clean(conn *sql.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tainted, conn)
	s.count.Store(int32(len(s.tainted)))
}

// fingerprint reads the session of the connection pool runs its next
// statement on.
func (p *Plugin) fingerprint(ctx context.Context, pool gorm.ConnPool) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.LoadTimeout)
	defer cancel()
	var fp string
	err := pool.QueryRowContext(ctx, sessionSQL, p.session.names).Scan(&fp)
	return fp, err
}

// scope returns what keys an opted-in statement on pool besides its SQL:
// the database and the session's fingerprint. It reports false if the
// statement must run uncached.
func (p *Plugin) scope(ctx context.Context, pool gorm.ConnPool) (string, bool) {
	if conn, ok := pool.(*sql.Conn); ok {
		fp, err := p.fingerprint(ctx, conn)
		return p.database + "\x00" + fp, err == nil
	}
	if p.session.inDoubt() {
		return "", false
	}
	return p.session.pool, true
}

// noteSession is the callback after raw, query and row statements that
// records changes of session state (see changesSession).
func (p *Plugin) noteSession(db *gorm.DB) {
	if db.DryRun || db.Statement.SQL.Len() == 0 {
		return
	}
	change := changesSession(db.Statement.SQL.String())
	if change == sessionKept {
		return
	}
	pool := db.Statement.ConnPool
	if c, ok := pool.(*cachedPool); ok {
		pool = c.ConnPool
	}
	if conn, ok := pool.(*sql.Conn); ok {
		if change == sessionReset {
			p.session.clean(conn)
		} else {
			p.session.taint(conn)
		}
		return
	}
	if change == sessionReset {
		return // on a connection of the pool's choosing: nothing to clear
	}
	if !p.session.poolTaint.Swap(true) {
		p.logf(db.Statement.Context, levelError, "gormflight: %q changed the session of a pooled connection; reads on the pool run uncached from now on. Change session state inside db.Connection and end with RESET ALL, use SET LOCAL inside a transaction, or set it in the DSN", db.Statement.SQL.String())
	}
}

// What a statement does to its session's state.
type sessionChange int

const (
	sessionKept    sessionChange = iota // nothing a later statement sees
	sessionChanged                      // SET, RESET of one setting, set_config, SET ROLE, ...
	sessionReset                        // RESET ALL or DISCARD ALL, and nothing else changed
)

// changesSession reports what query does to its session's state. SET LOCAL
// (and SET TRANSACTION, SET CONSTRAINTS) end with the transaction and keep
// it; a set_config call changes it whatever its arguments (is_local may be
// a parameter). It may over-report: that only costs cached reads.
func changesSession(query string) sessionChange {
	toks := sqlscan.Lex(query)
	word := func(i int) string {
		if i < len(toks) && toks[i].Kind == sqlscan.TokWord {
			return strings.ToLower(query[toks[i].Pos:toks[i].End])
		}
		return ""
	}
	out, first := sessionKept, true
	for i := range toks {
		if toks[i].Kind == sqlscan.TokSemi {
			first = true
			continue
		}
		w := word(i)
		switch {
		case w == "set_config" && i+1 < len(toks) && toks[i+1].Kind == sqlscan.TokLParen:
			return sessionChanged
		case first && w == "set":
			switch word(i + 1) {
			case "local", "transaction", "constraints":
			default:
				return sessionChanged
			}
		case first && w == "reset":
			if word(i+1) != "all" {
				return sessionChanged
			}
			out = sessionReset
		case first && w == "discard":
			switch word(i + 1) {
			case "all":
				out = sessionReset
			case "plans", "sequences", "temp", "temporary": // no setting
			default:
				return sessionChanged
			}
		}
		first = false
	}
	return out
}
