package gormflight

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/gormflight/gormflight/internal/sqlscan"
	"gorm.io/gorm"
)

// The same SQL returns different rows on connections whose sessions
// differ: another search_path (schema per tenant), another role, a setting
// a row-level security policy or a view reads, a temporary table that
// hides a table of the same name. Two statements share an entry only if
// their sessions match, so every key includes the session's fingerprint
// (the dialect's sessionSQL; PostgreSQL's, pgSessionSQL, is described here,
// MySQL's and SQLite's in dialect.go): the current and session user; every setting that shapes
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

// pgSessionSQL returns the session's fingerprint. $1 is Config.SessionSettings.
const pgSessionSQL = `SELECT current_user || E'\n' || session_user || E'\n' ||
	coalesce((SELECT string_agg(name || '=' || setting, E'\n' ORDER BY name)
		FROM pg_catalog.pg_settings
		WHERE source NOT IN ('default', 'override', 'configuration file')
			AND (category LIKE 'Client Connection Defaults%' OR category LIKE 'Version and Platform Compatibility%')
			AND name NOT LIKE '%timeout' AND name NOT LIKE 'vacuum%' AND name NOT LIKE 'default_transaction%'
			AND name NOT IN ('client_min_messages', 'default_tablespace', 'temp_tablespaces',
				'check_function_bodies', 'default_table_access_method', 'default_toast_compression',
				'createrole_self_grant', 'gin_pending_list_limit', 'session_preload_libraries',
				'local_preload_libraries', 'shared_preload_libraries', 'jit_provider')), '') || E'\n' ||
	coalesce((SELECT string_agg(n || '=' || current_setting(n, true), E'\n' ORDER BY n)
		FROM (SELECT (regexp_matches(src, 'current_setting\(\s*''([^'']+)''', 'g'))[1] AS n
			FROM (SELECT coalesce(pg_catalog.pg_get_expr(polqual, polrelid), '') || ' ' ||
					coalesce(pg_catalog.pg_get_expr(polwithcheck, polrelid), '') AS src
				FROM pg_catalog.pg_policy
				UNION ALL SELECT pg_catalog.pg_get_viewdef(v.oid)
				FROM (SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
					WHERE c.relkind IN ('v', 'm') AND ns.nspname NOT IN ('pg_catalog', 'information_schema')
					OFFSET 0) AS v
				UNION ALL SELECT f.prosrc
				FROM (SELECT p.prosrc FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace ns ON ns.oid = p.pronamespace
					WHERE ns.nspname NOT IN ('pg_catalog', 'information_schema')
					OFFSET 0) AS f) AS srcs
			WHERE src ~ 'current_setting\(\s*''[^'']*\.'
			UNION SELECT unnest($1::text[])) AS s
		WHERE (n LIKE '%.%' OR n = ANY($1::text[])) AND coalesce(current_setting(n, true), '') <> ''), '') || E'\n' ||
	coalesce((SELECT 'temp ' || a.pid || ' ' || a.backend_start
		FROM pg_catalog.pg_stat_activity a
		WHERE a.pid = pg_catalog.pg_backend_pid()
			AND EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema())), '')`

// maxTaintedConns bounds how many tainted dedicated connections are
// remembered. Past it the pool counts as tainted for good: an application
// that never resets what it changes gets no cached reads on the pool.
const maxTaintedConns = 1024

// sessionState is what the plugin knows of its pool's sessions.
type sessionState struct {
	pool      string      // the pool's scope: database and fingerprint, from Initialize
	query     string      // the dialect's fingerprint query, for Config.SessionSettings
	args      []any       // its arguments
	poolTaint atomic.Bool // a pooled connection may have changed its session

	mu      sync.Mutex
	tainted map[*sql.Conn]aspects // dedicated connections with changed sessions
	count   atomic.Int32          // len(tainted), read on every cached query
}

// inDoubt reports whether a pooled connection may have a session other
// than the pool's.
func (s *sessionState) inDoubt() bool {
	return s.poolTaint.Load() || s.count.Load() > 0
}

// note records what a statement on a dedicated connection did to its
// session.
func (s *sessionState) note(conn *sql.Conn, eff sessionEffect) {
	s.mu.Lock()
	defer s.mu.Unlock()
	left := s.tainted[conn]&^eff.clears | eff.adds
	if left == 0 {
		delete(s.tainted, conn)
	} else {
		if s.tainted == nil {
			s.tainted = make(map[*sql.Conn]aspects)
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
	var fp string
	err := pool.QueryRowContext(ctx, p.session.query, p.session.args...).Scan(&fp)
	return fp, err
}

// private reports whether conn's session has state no fingerprint shows
// and no entry may be shared for: temporary tables its statements created
// where the dialect's fingerprint cannot see them (tempUnseen).
func (s *sessionState) private(d *dialect, conn *sql.Conn) bool {
	if !d.tempUnseen {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tainted[conn]&(aspTemp|aspUnknown) != 0
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
		return p.database + "\x00" + fp, err == nil && !p.dialect.privateSession(fp)
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
	eff := p.dialect.changesSession(db.Statement.SQL.String())
	if eff == (sessionEffect{}) {
		return
	}
	pool := db.Statement.ConnPool
	if c, ok := pool.(*cachedPool); ok {
		pool = c.ConnPool
	}
	if conn, ok := pool.(*sql.Conn); ok {
		p.session.note(conn, eff)
		return
	}
	if eff.adds == 0 {
		return // a reset on a connection of the pool's choosing: nothing to clear
	}
	if !p.session.poolTaint.Swap(true) {
		p.logf(db.Statement.Context, engine.LevelError, "gormflight: %q changed the session of a pooled connection; reads on the pool run uncached from now on. Change session state inside db.Connection and end with RESET ALL, use SET LOCAL inside a transaction, or set it in the DSN", db.Statement.SQL.String())
	}
}

// aspects are the parts of a session's state a statement can change,
// each undone by its own reset.
type aspects uint8

const (
	aspSettings aspects = 1 << iota // SET, set_config of a setting: RESET ALL
	aspRole                         // SET ROLE, SET SESSION AUTHORIZATION: RESET ROLE, RESET SESSION AUTHORIZATION
	aspTemp                         // temporary relations: DISCARD TEMP
	aspUnknown                      // code that may change anything: only DISCARD ALL
	aspAll      = aspSettings | aspRole | aspTemp | aspUnknown
)

// sessionEffect is what a statement does to its session: it changes adds
// after undoing clears. The zero value changes nothing.
type sessionEffect struct{ adds, clears aspects }

// then returns the effect of e followed by next.
func (e sessionEffect) then(next sessionEffect) sessionEffect {
	return sessionEffect{adds: e.adds&^next.clears | next.adds, clears: e.clears | next.clears}
}

// changesSession reports what query does to its session's state. It may
// over-report: that only costs cached reads; what it misses (a function
// that calls set_config) a fill on the pool still catches, by the
// fingerprint of its connection.
func (d *dialect) changesSession(query string) sessionEffect {
	if d.plainStatement(query) {
		return sessionEffect{}
	}
	st := lexed{query: query, toks: sqlscan.Lex(d.sql, query)}
	effect := pgEffect
	switch d.sql {
	case sqlscan.MySQL:
		effect = mysqlEffect
	case sqlscan.SQLite:
		effect = sqliteEffect
	}
	var out sessionEffect
	first := true
	for i := range st.toks {
		if st.toks[i].Kind == sqlscan.TokSemi {
			first = true
			continue
		}
		out = out.then(effect(st, i, first))
		first = false
	}
	return out
}

// lexed is a statement string and its tokens.
type lexed struct {
	query string
	toks  []sqlscan.Token
}

// word returns the keyword or unquoted name at token i in lower case, or
// "" for any other token.
func (st lexed) word(i int) string {
	if i >= 0 && i < len(st.toks) && st.toks[i].Kind == sqlscan.TokWord {
		return strings.ToLower(st.text(i))
	}
	return ""
}

// text returns token i as written, or "" past either end.
func (st lexed) text(i int) string {
	if i >= 0 && i < len(st.toks) {
		return st.query[st.toks[i].Pos:st.toks[i].End]
	}
	return ""
}

// pgEffect is what PostgreSQL's token i changes (first: it begins a
// statement). SET LOCAL (and SET TRANSACTION, SET CONSTRAINTS) end with
// the transaction and change nothing. set_config changes the setting its
// literal first argument names; with another first argument, as DO, CALL
// and EXECUTE, it may change anything.
func pgEffect(st lexed, i int, first bool) sessionEffect {
	w := st.word(i)
	if st.toks[i].Kind == sqlscan.TokQuoted {
		w = strings.Trim(st.text(i), `"`)
	}
	var e sessionEffect
	switch {
	case w == "set_config" && i+1 < len(st.toks) && st.toks[i+1].Kind == sqlscan.TokLParen:
		e.adds = setConfigAspect(st.query, st.toks, i+2)
	case w == "into" && (st.word(i+1) == "temp" || st.word(i+1) == "temporary"):
		e.adds = aspTemp
	case !first:
	case w == "set":
		e.adds = setAspect(st.word(i+1), st.word(i+2))
	case w == "reset":
		e.clears = resetAspect(st.word(i+1), st.word(i+2))
	case w == "discard":
		e.clears = discardAspect(st.word(i + 1))
	case w == "create" && createsTemp(st.word, i+1):
		e.adds = aspTemp
	case w == "do", w == "call", w == "execute":
		e.adds = aspUnknown
	}
	return e
}

// mysqlEffect is pgEffect for MySQL and MariaDB, which reset nothing but
// a whole connection: SET (SESSION and LOCAL alike), SET NAMES and USE
// change settings, SET ROLE the role, CREATE TEMPORARY TABLE adds a
// temporary table, and CALL, EXECUTE and DO may change anything. A user
// variable assigned by := or SELECT ... INTO changes a setting too (a
// function may read it: Config.SessionSettings).
func mysqlEffect(st lexed, i int, first bool) sessionEffect {
	w := st.word(i)
	var e sessionEffect
	switch {
	case userVariable(st.text(i)) && (st.word(i-1) == "into" || strings.HasPrefix(strings.TrimLeft(st.query[st.toks[i].End:], " \t\r\n"), ":=")):
		e.adds = aspSettings
	case !first:
	case w == "set":
		switch st.word(i + 1) {
		case "transaction", "statement", "password":
			// SET STATEMENT ... FOR runs one statement with the settings.
		case "role", "default":
			e.adds = aspRole
		default:
			e.adds = aspSettings
		}
	case w == "use":
		e.adds = aspSettings
	case w == "create" && createsTemp(st.word, i+1):
		e.adds = aspTemp
	case w == "do", w == "call", w == "execute":
		e.adds = aspUnknown
	}
	return e
}

// userVariable reports whether a MySQL token is a user variable (@name),
// not a system variable (@@name).
func userVariable(tok string) bool {
	return len(tok) > 1 && tok[0] == '@' && tok[1] != '@'
}

// sqliteEffect is pgEffect for SQLite, which resets nothing: ATTACH and
// DETACH change what names resolve to, a pragma that changes what queries
// return changes a setting, and CREATE TEMP ... or CREATE ... temp.name
// adds a temporary object.
func sqliteEffect(st lexed, i int, first bool) sessionEffect {
	if !first {
		return sessionEffect{}
	}
	var e sessionEffect
	switch st.word(i) {
	case "attach", "detach":
		e.adds = aspSettings
	case "pragma":
		if sqliteResultPragma(st, i+1) {
			e.adds = aspSettings
		}
	case "create":
		if createsTemp(st.word, i+1) || createsInTemp(st, i+1) {
			e.adds = aspTemp
		}
	}
	return e
}

// sqliteResultPragma reports whether the pragma whose name begins at token
// i ([schema.]name) sets one that changes what queries return.
func sqliteResultPragma(st lexed, i int) bool {
	if st.text(i+1) == "." {
		i += 2
	}
	switch strings.ToLower(strings.Trim(st.text(i), "\"`[]'")) {
	case "case_sensitive_like", "reverse_unordered_selects", "short_column_names", "full_column_names":
		return st.text(i+1) == "=" || st.text(i+1) == "("
	}
	return false
}

// createsInTemp reports whether the CREATE statement whose next token is
// at i names an object in the temp schema (CREATE TABLE temp.t).
func createsInTemp(st lexed, i int) bool {
	for ; i+1 < len(st.toks) && st.toks[i].Kind != sqlscan.TokSemi; i++ {
		if n := strings.ToLower(strings.Trim(st.text(i), "\"`[]'")); (n == "temp" || n == "temporary") && st.text(i+1) == "." {
			return true
		}
	}
	return false
}

// setAspect is what SET followed by the words a and b changes.
func setAspect(a, b string) aspects {
	switch {
	case a == "local" || a == "transaction" || a == "constraints":
		return 0
	case a == "role" || a == "session" && (b == "authorization" || b == "role"):
		return aspRole
	}
	return aspSettings
}

// setConfigAspect is what set_config changes, by its first argument at
// token i: a string literal names the setting.
func setConfigAspect(query string, toks []sqlscan.Token, i int) aspects {
	if i >= len(toks) || toks[i].Kind != sqlscan.TokOther || query[toks[i].Pos] != '\'' {
		return aspUnknown
	}
	switch strings.ToLower(strings.Trim(query[toks[i].Pos:toks[i].End], "'")) {
	case "role", "session_authorization":
		return aspRole
	}
	return aspSettings
}

// resetAspect is what RESET followed by the words a and b undoes.
func resetAspect(a, b string) aspects {
	switch {
	case a == "all":
		return aspSettings
	case a == "role", a == "session" && b == "authorization":
		return aspRole
	}
	return 0 // one setting: others may still differ
}

// discardAspect is what DISCARD followed by the word a undoes.
func discardAspect(a string) aspects {
	switch a {
	case "all":
		return aspAll
	case "temp", "temporary":
		return aspTemp
	}
	return 0
}

// createsTemp reports whether the CREATE whose next word is at i creates a
// temporary relation: CREATE [OR REPLACE] [GLOBAL | LOCAL] TEMP[ORARY] ...
func createsTemp(word func(int) string, i int) bool {
	for w := word(i); w == "or" || w == "replace" || w == "global" || w == "local"; w = word(i) {
		i++
	}
	return word(i) == "temp" || word(i) == "temporary"
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
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return nil, err
	}
	// A panic in user code inside the query (an argument's Value method)
	// leaves database/sql holding the connection's lock, and Close would
	// then wait for ever: the panic goes on to the callers without it, and
	// the connection is lost, as database/sql loses one of its pool's.
	queried := false
	defer func() {
		if queried {
			_ = conn.Close()
		}
	}()
	var fp string
	fpErr := conn.QueryRowContext(ctx, p.session.query, p.session.args...).Scan(&fp)
	rows, err := conn.QueryContext(ctx, query, args...)
	queried = true
	if err != nil {
		return nil, err
	}
	ent, err := rowcodec.Capture(rows)
	if err == nil && (fpErr != nil || p.database+"\x00"+fp != p.session.pool) {
		ent.Local = true
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

// plainStatement reports, without lexing, that query is one statement that
// starts with a keyword that cannot change session state and names neither
// set_config nor TEMP (nor, in MySQL, a variable): most statements, cached reads among them, which run
// this check twice (request and noteSession). Anything else is lexed.
func (d *dialect) plainStatement(query string) bool {
	if strings.IndexByte(query, ';') >= 0 || containsFold(query, "set_config") || containsFold(query, "temp") {
		return false
	}
	if d.sql == sqlscan.MySQL && strings.IndexByte(query, '@') >= 0 {
		return false // a user variable may be assigned
	}
	return d.classify(query) != sqlscan.Other // queries and INSERT, UPDATE, DELETE, MERGE
}

// containsFold reports whether s contains the lower-case ASCII word w, in
// any case, without allocating.
func containsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if s[i]|0x20 == w[0] && strings.EqualFold(s[i:i+len(w)], w) {
			return true
		}
	}
	return false
}
