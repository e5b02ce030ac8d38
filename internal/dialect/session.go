package dialect

import (
	"strings"

	"github.com/gormflight/gormflight/internal/sqlscan"
)

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

// Aspects are the parts of a session's state a statement can change,
// each undone by its own reset.
type Aspects uint8

const (
	AspSettings Aspects = 1 << iota // SET, set_config of a setting: RESET ALL
	AspRole                         // SET ROLE, SET SESSION AUTHORIZATION: RESET ROLE, RESET SESSION AUTHORIZATION
	AspTemp                         // temporary relations: DISCARD TEMP
	AspUnknown                      // code that may change anything: only DISCARD ALL
	// AspTx: a transaction begun by SQL (BEGIN, START TRANSACTION, SET
	// autocommit, SQLite's SAVEPOINT), which no driver's Commit ends: its
	// writes commit when SQL says so. Nothing clears it.
	AspTx
	AspAll = AspSettings | AspRole | AspTemp | AspUnknown | AspTx
)

// Effect is what a statement does to its session: it changes adds
// after undoing clears. The zero value changes nothing.
type Effect struct{ Adds, Clears Aspects }

// Then returns the effect of e followed by next.
func (e Effect) Then(next Effect) Effect {
	return Effect{Adds: e.Adds&^next.Clears | next.Adds, Clears: e.Clears | next.Clears}
}

// ChangesSession reports what query does to its session's state. It may
// over-report: that only costs cached reads; what it misses (a function
// that calls set_config) a fill on the pool still catches, by the
// fingerprint of its connection.
func (d *Dialect) ChangesSession(query string) Effect {
	// From the statement's analysis if it is remembered (a cached read's
	// is); worked out alone otherwise, which costs less than analysing.
	if a, ok := analyses.GetIfPresent(analysisKey{d.SQL, query}); ok {
		return a.Session
	}
	return d.changesSession(query)
}

// changesSession is ChangesSession, worked out.
func (d *Dialect) changesSession(query string) Effect {
	if d.plainStatement(query) {
		return Effect{}
	}
	st := lexed{query: query, toks: sqlscan.Lex(d.SQL, query)}
	effect := pgEffect
	switch d.SQL {
	case sqlscan.MySQL:
		effect = mysqlEffect
	case sqlscan.SQLite:
		effect = sqliteEffect
	}
	var out Effect
	first := true
	for i := range st.toks {
		if st.toks[i].Kind == sqlscan.TokSemi {
			first = true
			continue
		}
		if first && st.word(i) == "create" && createsRoutine(st, i+1) {
			break // the body (BEGIN ...; END) runs later, if ever
		}
		out = out.Then(effect(st, i, first))
		first = false
	}
	return out
}

// createsRoutine reports whether the CREATE whose next word is at i makes
// a trigger, procedure, function or event: CREATE [OR REPLACE] [DEFINER =
// user] [AGGREGATE] TRIGGER|PROCEDURE|FUNCTION|EVENT ..., whose body's
// statements do not run now.
func createsRoutine(st lexed, i int) bool {
	for ; i < len(st.toks) && i < 16; i++ {
		switch st.word(i) {
		case "trigger", "procedure", "function", "event":
			return true
		case "table", "view", "index", "temporary", "temp", "database", "schema", "user", "role":
			return false
		}
	}
	return false
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
func pgEffect(st lexed, i int, first bool) Effect {
	w := st.word(i)
	if st.toks[i].Kind == sqlscan.TokQuoted {
		w = strings.Trim(st.text(i), `"`)
	}
	var e Effect
	switch {
	case w == "set_config" && i+1 < len(st.toks) && st.toks[i+1].Kind == sqlscan.TokLParen:
		e.Adds = setConfigAspect(st.query, st.toks, i+2)
	case w == "into" && (st.word(i+1) == "temp" || st.word(i+1) == "temporary"):
		e.Adds = AspTemp
	case !first:
	case w == "set":
		e.Adds = setAspect(st.word(i+1), st.word(i+2))
	case w == "reset":
		e.Clears = resetAspect(st.word(i+1), st.word(i+2))
	case w == "discard":
		e.Clears = discardAspect(st.word(i + 1))
	case w == "create" && createsTemp(st.word, i+1):
		e.Adds = AspTemp
	case w == "do", w == "call", w == "execute":
		e.Adds = AspUnknown
	default:
		e = sqlTxEffect(st, i, w)
	}
	return e
}

// sqlTxEffect is the effect of a statement that begins a transaction in
// SQL, in every dialect: BEGIN and START TRANSACTION add AspTx. Nothing
// clears it: COMMIT AND CHAIN, SAVEPOINTs, autocommit and compound
// statements make the end of such a transaction too easy to misread, and a
// connection that begins transactions in SQL can afford uncached reads.
func sqlTxEffect(st lexed, i int, w string) Effect {
	switch {
	case w == "begin", w == "start" && st.word(i+1) == "transaction", w == "xa":
		return Effect{Adds: AspTx}
	}
	return Effect{}
}

// mysqlEffect is pgEffect for MySQL and MariaDB, which reset nothing but
// a whole connection: SET (SESSION and LOCAL alike) of a variable that
// shapes results, SET NAMES and USE change settings, SET ROLE the role,
// CREATE TEMPORARY TABLE (wherever it stands) adds a temporary table, and
// CALL, EXECUTE, DO and compound statements (BEGIN NOT ATOMIC, IF, ...)
// may change anything. SET STATEMENT ... FOR has the effect of the
// statement after FOR. A user variable assigned by := or SELECT ... INTO
// changes a setting too (a function may read it: SessionSettings).
func mysqlEffect(st lexed, i int, first bool) Effect {
	w := st.word(i)
	var e Effect
	switch {
	case userVariable(st.text(i)) && (st.word(i-1) == "into" || strings.HasPrefix(strings.TrimLeft(st.query[st.toks[i].End:], " \t\r\n"), ":=")):
		e.Adds = AspSettings
	case w == "create" && createsTemp(st.word, i+1):
		e.Adds = AspTemp // also inside a compound statement or after SET STATEMENT ... FOR
	case !first:
	case w == "set" && st.word(i+1) == "statement":
		for j := i + 2; j < len(st.toks) && st.toks[j].Kind != sqlscan.TokSemi; j++ {
			if st.word(j) == "for" {
				return MySQL.changesSession(st.query[st.toks[j].End:])
			}
		}
	case w == "set":
		e = mysqlSetEffect(st, i+1)
	case w == "use", w == "lock":
		// LOCK TABLES: the connection's reads, which a load on another
		// connection would wait behind, run uncached (nothing clears it).
		e.Adds = AspSettings
	case w == "do", w == "call", w == "execute",
		w == "begin" && st.word(i+1) == "not", w == "if", w == "case", w == "loop", w == "repeat", w == "while":
		e.Adds = AspUnknown
	default:
		e = sqlTxEffect(st, i, w)
	}
	return e
}

// mysqlSetEffect is the effect of MySQL's SET whose first word after SET is
// at i: SET [GLOBAL | SESSION | LOCAL | PERSIST] var = value, ... Variables
// that change no query's rows (checks on writes, timeouts, logging) change
// nothing; autocommit, however it is set, may begin a transaction SQL must
// end (AspTx); SET TRANSACTION and SET PASSWORD change nothing a read sees.
func mysqlSetEffect(st lexed, i int) Effect {
	switch st.word(i) {
	case "transaction", "password":
		return Effect{}
	case "role", "default":
		return Effect{Adds: AspRole}
	case "names", "character", "charset":
		return Effect{Adds: AspSettings}
	}
	for j := i; j < len(st.toks) && st.toks[j].Kind != sqlscan.TokSemi; j++ {
		if strings.Contains(strings.ToLower(st.text(j)), "autocommit") {
			return Effect{Adds: AspSettings | AspTx} // however it is spelled
		}
	}
	var e Effect
	for j := i; j < len(st.toks) && st.toks[j].Kind != sqlscan.TokSemi; j++ {
		name, value, next, ok := mysqlAssignment(st, j)
		if !ok {
			return Effect{Adds: AspSettings}
		}
		if !mysqlHarmlessVars[name] || value == "" {
			e.Adds |= AspSettings
		}
		j = next
		if j >= len(st.toks) || st.toks[j].Kind == sqlscan.TokSemi {
			break
		}
		if st.text(j) != "," {
			// A value of more than one token ((0), 1 + 0): the variables
			// after it are not read, so the statement counts as changing a
			// setting.
			return Effect{Adds: e.Adds | AspSettings}
		}
	}
	return e
}

// mysqlHarmlessVars are MySQL's and MariaDB's session variables that change
// what a statement may do or how long it may take, never what rows a read
// returns. GORM's migrator sets foreign_key_checks.
var mysqlHarmlessVars = map[string]bool{
	"foreign_key_checks": true, "unique_checks": true, "sql_log_bin": true, "sql_log_off": true,
	"sql_safe_updates": true, "sql_notes": true, "sql_warnings": true, "sql_quote_show_create": true,
	"max_statement_time": true, "max_execution_time": true, "lock_wait_timeout": true,
	"innodb_lock_wait_timeout": true, "wait_timeout": true, "interactive_timeout": true,
	"net_read_timeout": true, "net_write_timeout": true, "profiling": true, "max_error_count": true,
	"check_constraint_checks": true, "innodb_strict_mode": true,
}

// mysqlAssignment reads "[SESSION | LOCAL] name = value" or
// "@@[session.|local.]name = value" at token j: the variable's name and the
// value's first word or number, in lower case, and the index after the
// value's first token. ok is false for anything else (a user variable, a
// GLOBAL variable, an expression it cannot follow): that SET counts as
// changing a setting.
func mysqlAssignment(st lexed, j int) (name, value string, next int, ok bool) {
	if w := st.word(j); w == "session" || w == "local" {
		j++
	}
	tok := strings.ToLower(st.text(j))
	switch {
	case strings.HasPrefix(tok, "@@"):
		name = strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(tok, "@@"), "session."), "local.")
		if strings.ContainsRune(name, '.') || strings.HasPrefix(name, "global") {
			return "", "", j, false
		}
	case st.word(j) != "" && st.word(j) != "global" && st.word(j) != "persist":
		name = st.word(j)
	default:
		return "", "", j, false
	}
	if op := st.text(j + 1); op != "=" && op != ":=" {
		return "", "", j, false
	}
	value = strings.ToLower(strings.Trim(st.text(j+2), "'\""))
	if value == "" {
		return "", "", j, false
	}
	return name, value, j + 3, true
}

// userVariable reports whether a MySQL token is a user variable (@name),
// not a system variable (@@name).
func userVariable(tok string) bool {
	return len(tok) > 1 && tok[0] == '@' && tok[1] != '@'
}

// sqliteEffect is pgEffect for SQLite, which resets nothing (but ends
// transactions begun in SQL, sqlTxEffect): ATTACH and
// DETACH change what names resolve to, a pragma that changes what queries
// return changes a setting, and CREATE TEMP ... or CREATE ... temp.name
// adds a temporary object.
func sqliteEffect(st lexed, i int, first bool) Effect {
	if !first {
		return Effect{}
	}
	var e Effect
	switch st.word(i) {
	case "attach", "detach":
		e.Adds = AspSettings
	case "pragma":
		if sqliteResultPragma(st, i+1) {
			e.Adds = AspSettings
		}
	case "create":
		if createsTemp(st.word, i+1) || createsInTemp(st, i+1) {
			e.Adds = AspTemp
		}
	case "savepoint":
		e.Adds = AspTx // outside a transaction, SAVEPOINT begins one
	default:
		e = sqlTxEffect(st, i, st.word(i))
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
func setAspect(a, b string) Aspects {
	switch {
	case a == "local" || a == "transaction" || a == "constraints":
		return 0
	case a == "role" || a == "session" && (b == "authorization" || b == "role"):
		return AspRole
	}
	return AspSettings
}

// setConfigAspect is what set_config changes, by its first argument at
// token i: a string literal names the setting.
func setConfigAspect(query string, toks []sqlscan.Token, i int) Aspects {
	if i >= len(toks) || toks[i].Kind != sqlscan.TokOther || query[toks[i].Pos] != '\'' {
		return AspUnknown
	}
	switch strings.ToLower(strings.Trim(query[toks[i].Pos:toks[i].End], "'")) {
	case "role", "session_authorization":
		return AspRole
	}
	return AspSettings
}

// resetAspect is what RESET followed by the words a and b undoes.
func resetAspect(a, b string) Aspects {
	switch {
	case a == "all":
		return AspSettings
	case a == "role", a == "session" && b == "authorization":
		return AspRole
	}
	return 0 // one setting: others may still differ
}

// discardAspect is what DISCARD followed by the word a undoes.
func discardAspect(a string) Aspects {
	switch a {
	case "all":
		return AspAll
	case "temp", "temporary":
		return AspTemp
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

// plainStatement reports, without lexing, that query is one statement that
// starts with a keyword that cannot change session state and names neither
// set_config nor TEMP (nor, in MySQL, a variable): most statements, cached reads among them, which run
// this check twice (request and noteSession). Anything else is lexed.
func (d *Dialect) plainStatement(query string) bool {
	if strings.IndexByte(query, ';') >= 0 || ContainsFold(query, "set_config") || ContainsFold(query, "temp") {
		return false
	}
	if d.SQL == sqlscan.MySQL && strings.IndexByte(query, '@') >= 0 {
		return false // a user variable may be assigned
	}
	return d.Classify(query) != sqlscan.Other // queries and INSERT, UPDATE, DELETE, MERGE
}

// ContainsFold reports whether s contains the lower-case ASCII word w, in
// any case, without allocating.
func ContainsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if s[i]|0x20 == w[0] && strings.EqualFold(s[i:i+len(w)], w) {
			return true
		}
	}
	return false
}
