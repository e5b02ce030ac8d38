package sqlscan

import "strings"

// This file handles the first words of a statement: DDL, which changes what
// names return, and the few utility statements whose meaning the token walk
// alone cannot see.
//
// The rule is the one of the whole package: a DDL statement that changes
// what a relation returns, or who may read it, writes that relation; a DDL
// statement whose affected relations cannot be named from its text (schemas,
// functions, types, extensions, roles, CASCADE, ...) sets Schema. Only the
// statements listed in safeDDL are known to change no relation's rows or
// privileges and are DDL alone. Anything else starting with CREATE, ALTER or
// DROP sets Schema: an unknown statement costs misses, never stale rows.

// safeDDL lists the object kinds (first word after CREATE or DROP) whose
// creation or removal changes neither the rows nor the privileges of any
// relation (a DROP that would, fails without CASCADE, which sets Schema).
// FOREIGN DATA WRAPPER is matched by isSafeKind. Not LANGUAGE: without a
// handler, CREATE LANGUAGE creates the extension of that name.
var safeDDL = map[string]bool{
	"role": true, "user": true, "group": true, "database": true, "tablespace": true,
	"statistics": true, "event": true, "publication": true, "subscription": true,
	"server": true, "access": true,
}

// safeAlter lists the object kinds that ALTER changes without changing the
// rows or privileges of a relation. Not roles (BYPASSRLS, memberships,
// per-role search_path), databases (search_path), servers and wrappers
// (what foreign tables return).
var safeAlter = map[string]bool{
	"statistics": true, "tablespace": true, "event": true, "publication": true,
	"subscription": true, "language": true,
}

// statement handles the head of a statement at i (or of a CREATE SCHEMA
// element) and returns the index where the walk goes on, or i when the
// statement is left to the walk.
func (w *walker) statement(i int) int {
	if w.toks[i].kind != tkWord {
		return i
	}
	switch {
	case w.inSchema && !w.is(i, "create") && !w.is(i, "grant"):
		return i
	case w.d == SQLite:
		if next, ok := w.sqliteStatement(i); ok {
			return next
		}
	case w.d == MySQL:
		if next, ok := w.mysqlStatement(i); ok {
			return next
		}
	}
	switch {
	case w.runsCode(i):
		// A procedure, a prepared statement, an anonymous code block: code
		// the walk cannot follow, which may write any table.
		w.schema = true
		return w.stmtEnd(i)
	case w.is(i, "explain"):
		return w.explain(i)
	case w.is(i, "create"):
		w.ddl = true
		return w.create(i + 1)
	case w.is(i, "alter"):
		w.ddl = true
		return w.alter(i + 1)
	case w.is(i, "drop"):
		w.ddl = true
		return w.drop(i + 1)
	case w.is(i, "comment") && w.is(i+1, "on"):
		w.ddl = true
		w.onObject(i+2, false)
		return w.stmtEnd(i)
	case w.is(i, "security") && w.is(i+1, "label"):
		return w.securityLabel(i)
	case w.is(i, "grant"), w.is(i, "revoke"):
		w.ddl = true
		return w.grant(i + 1)
	case w.is(i, "import") && w.is(i+1, "foreign"):
		w.ddl = true
		return w.importForeign(i + 2)
	case w.is(i, "reassign"):
		w.ddl, w.schema = true, true
		return w.stmtEnd(i)
	case w.is(i, "show"):
		w.catalog = true // session settings
	}
	return i
}

// securityLabel reads SECURITY LABEL [FOR provider] ON object: DDL on the
// object, or on every table when it names none the walk reads.
func (w *walker) securityLabel(i int) int {
	w.ddl = true
	j := i + 2
	if w.is(j, "for") {
		j += 2
	}
	if w.is(j, "on") {
		w.onObject(j+1, true)
	} else {
		w.schema = true
	}
	return w.stmtEnd(i)
}

// runsCode reports whether the statement at i runs code: CALL, EXECUTE
// (not in SQLite, whose EXECUTE is no statement), PostgreSQL's DO.
func (w *walker) runsCode(i int) bool {
	return w.is(i, "call") || w.is(i, "execute") && w.d != SQLite || w.is(i, "do") && w.d == PostgreSQL
}

// sqliteStatement handles the heads of SQLite's own statements; ok is
// false for the others.
func (w *walker) sqliteStatement(i int) (next int, ok bool) {
	switch {
	case w.is(i, "pragma"):
		// PRAGMA reads the catalog or the connection's settings, and one
		// that sets a value (PRAGMA x = v) may change how later statements
		// behave (foreign_keys, recursive_triggers): what is known of the
		// schema is forgotten. One that reads (PRAGMA x, PRAGMA
		// table_info(t)) changes nothing.
		end := w.stmtEnd(i)
		w.catalog = true
		for k := i + 1; k < end; k++ {
			if w.toks[k].kind == tkOp && w.toks[k].text(w.s) == "=" {
				w.ddl = true
			}
		}
		return end, true
	case (w.is(i, "attach") || w.is(i, "detach")):
		// A database attached or detached changes what unqualified names
		// resolve to.
		w.ddl, w.schema = true, true
		return w.stmtEnd(i), true
	}
	return i, false
}

// mysqlStatement handles the heads of MySQL's own statements; ok is false
// for the others.
func (w *walker) mysqlStatement(i int) (next int, ok bool) {
	switch {
	case w.is(i, "replace"):
		return w.mysqlInsert(i), true
	case w.is(i, "analyze") && !w.is(i+1, "table") && !w.is(i+1, "no_write_to_binlog") && !w.is(i+1, "local"):
		// MariaDB's ANALYZE [FORMAT=...] statement runs the statement.
		j := i + 1
		if w.is(j, "format") {
			j += 3
		}
		w.head = j
		return j, true
	case w.is(i, "begin") && w.is(i+1, "not") && w.is(i+2, "atomic"):
		// A compound statement, whose statements the walk does not follow
		// through labels and control flow: every table.
		w.ddl, w.schema = true, true
		return i + 3, true
	case w.is(i, "describe") || w.is(i, "desc"):
		w.catalog = true
		return w.stmtEnd(i), true
	case w.is(i, "set") && w.is(i+1, "statement"):
		// MariaDB's SET STATEMENT var = value, ... FOR statement: the
		// statement after FOR is read as a statement of its own.
		if k := w.findWord(i, "for"); k >= 0 {
			w.head = k + 1
			return k + 1, true
		}
	case w.is(i, "load"):
		// LOAD DATA|XML ... INTO TABLE t
		if k := w.findWord(i, "into"); k >= 0 && w.is(k+1, "table") {
			w.writeName(k + 2)
		}
		return w.stmtEnd(i), true
	case w.is(i, "rename"):
		// RENAME TABLE a TO b, c TO d: every name is written.
		w.ddl = true
		end := w.stmtEnd(i)
		for k := i + 1; k < end; k++ {
			if !w.is(k, "table") && !w.is(k, "to") && w.isNameTok(k) && !w.isKind(k+1, tkDot) {
				w.addWrite(identValue(w.d, w.s, w.toks, k))
			}
		}
		return end, true
	}
	return i, false
}

// explain skips "EXPLAIN [(options)] [ANALYZE] [VERBOSE]": EXPLAIN ANALYZE
// runs the statement that follows, which then starts the statement.
func (w *walker) explain(i int) int {
	j := i + 1
	if w.isKind(j, tkLParen) {
		for j < len(w.toks) && !w.isKind(j, tkRParen) {
			j++
		}
		j++
	}
	for w.is(j, "analyze") || w.is(j, "analyse") || w.is(j, "verbose") {
		j++
	}
	w.head = j
	return j
}

// create handles CREATE at j.
func (w *walker) create(j int) int {
	if w.is(j, "or") && w.is(j+1, "replace") {
		j += 2
	}
	for w.is(j, "temp") || w.is(j, "temporary") || w.is(j, "local") || w.is(j, "global") ||
		w.is(j, "unlogged") || w.is(j, "recursive") || w.is(j, "unique") || w.is(j, "constraint") {
		j++
	}
	switch {
	case w.is(j, "table"), w.is(j, "foreign") && w.is(j+1, "table"):
		if w.is(j, "foreign") {
			j++
		}
		next := w.writeName(w.skipIfExists(j + 1))
		w.createTableParents(next)
		return next
	case w.is(j, "view"), w.is(j, "sequence"):
		return w.writeName(w.skipIfExists(j + 1))
	case w.is(j, "materialized") && w.is(j+1, "view"):
		return w.writeName(w.skipIfExists(j + 2))
	case w.is(j, "index"):
		w.onTable(j)
		return w.stmtEnd(j)
	case w.is(j, "rule"):
		// CREATE RULE name AS ON event TO table DO ...: the actions are walked.
		if k := w.findWord(j, "to"); k >= 0 {
			return w.writeName(k + 1)
		}
		return j
	case w.is(j, "policy"), w.is(j, "trigger"):
		if k := w.onTable(j); k >= 0 {
			return k
		}
		return j
	case w.is(j, "schema"):
		w.inSchema = true // its elements are CREATE and GRANT statements
		return j + 1
	case w.isSafeKind(j):
		return j
	}
	w.schema = true
	return j
}

// createTableParents records the parents of CREATE TABLE ... PARTITION OF
// parent and ... INHERITS (parents), whose scans now include the new table.
func (w *walker) createTableParents(j int) {
	if k := w.findWord(j, "partition"); k >= 0 && w.is(k+1, "of") {
		w.writeName(k + 2)
	}
	if k := w.findWord(j, "inherits"); k >= 0 && w.isKind(k+1, tkLParen) {
		w.nameList(k + 2)
	}
}

// relationKind returns the position after a relation kind at j (TABLE,
// VIEW, SEQUENCE, INDEX, MATERIALIZED VIEW, FOREIGN TABLE), or j if there
// is none.
func (w *walker) relationKind(j int) int {
	switch {
	case w.is(j, "table"), w.is(j, "view"), w.is(j, "sequence"), w.is(j, "index"):
		return j + 1
	case w.is(j, "materialized") && w.is(j+1, "view"), w.is(j, "foreign") && w.is(j+1, "table"):
		return j + 2
	}
	return j
}

// alter handles ALTER at j.
func (w *walker) alter(j int) int {
	switch {
	case w.relationKind(j) > j:
		j = w.relationKind(j)
	case w.is(j, "policy"), w.is(j, "rule"), w.is(j, "trigger"):
		w.onTable(j)
		return w.stmtEnd(j)
	case w.is(j, "default") && w.is(j+1, "privileges"), w.isKind(j, tkWord) && safeAlter[w.lower(j)]:
		return w.stmtEnd(j) // DEFAULT PRIVILEGES apply to future objects only
	default:
		w.schema = true
		return w.stmtEnd(j)
	}
	if w.is(j, "all") {
		return w.stmtEnd(j) // ALL IN TABLESPACE moves storage only
	}
	j = w.skipIfExists(j)
	if w.is(j, "only") {
		j++
	}
	w.writeName(j)
	w.alterTargets(j)
	return w.stmtEnd(j)
}

// alterTargets records the other relations an ALTER TABLE changes: the new
// name of RENAME TO, partitions attached or detached, parents of INHERIT
// and NO INHERIT (their scans gain or lose the table's rows).
func (w *walker) alterTargets(j int) {
	end := w.stmtEnd(j)
	for k := j; k < end; k++ {
		switch {
		case w.is(k, "rename") && w.is(k+1, "to"):
			w.writeName(k + 2)
		case w.d == MySQL && w.is(k, "rename") && (w.is(k+1, "as") || w.isNameTok(k+1) && !w.is(k+1, "column") && !w.is(k+1, "index") && !w.is(k+1, "key")):
			w.writeName(k + 1 + btoi(w.is(k+1, "as")))
		case w.d == MySQL && w.is(k, "with") && w.is(k+1, "table"):
			w.writeName(k + 2) // EXCHANGE PARTITION p WITH TABLE u
		case (w.is(k, "attach") || w.is(k, "detach")) && w.is(k+1, "partition"):
			w.writeName(k + 2)
		case w.is(k, "inherit"):
			w.writeName(k + 1)
		}
	}
}

// drop handles DROP at j.
func (w *walker) drop(j int) int {
	end := w.stmtEnd(j)
	if w.hasWord(j, "cascade") {
		w.schema = true // dependent objects, which the text does not name, go too
	}
	switch {
	case w.relationKind(j) > j:
		j = w.relationKind(j)
	case w.is(j, "policy"), w.is(j, "rule"), w.is(j, "trigger"):
		w.onTable(j)
		return end
	case w.isSafeKind(j):
		return end
	default:
		w.schema = true
		return end
	}
	if w.is(j, "concurrently") {
		j++
	}
	w.nameList(w.skipIfExists(j))
	return end
}

// onObject handles the object of COMMENT ON and SECURITY LABEL ON at j.
// Relations and their columns, constraints, policies, rules and triggers
// are written; other objects set Schema if strict.
func (w *walker) onObject(j int, strict bool) {
	switch {
	case w.relationKind(j) > j:
		w.writeName(w.relationKind(j))
	case w.is(j, "column"):
		// [schema.]table.column: the table is the next-to-last component.
		if prev, _, ok := w.qualLastTwo(j + 1); ok && prev >= 0 {
			w.addWrite(identValue(w.d, w.s, w.toks, prev))
		}
	case w.is(j, "constraint"), w.is(j, "policy"), w.is(j, "rule"), w.is(j, "trigger"):
		w.onTable(j) // COMMENT ON CONSTRAINT c ON DOMAIN d writes d: harmless
	default:
		w.schema = w.schema || strict
	}
}

// grant handles GRANT and REVOKE after their first word at j.
func (w *walker) grant(j int) int {
	end := w.stmtEnd(j)
	on := w.findWord(j, "on")
	if on < 0 {
		w.schema = true // GRANT role TO role: the grantee may read more
		return end
	}
	k := on + 1
	switch {
	case w.isNameTok(k) && (k+1 >= end || w.is(k+1, "to") || w.is(k+1, "from") ||
		w.isKind(k+1, tkComma) || w.isKind(k+1, tkDot)):
		w.nameList(k) // ON database TO r: a table named like an object kind
	case w.is(k, "table"), w.is(k, "sequence"):
		w.nameList(k + 1)
	case w.is(k, "database"), w.is(k, "tablespace"), w.is(k, "language"):
	case w.isNameTok(k) && !w.is(k, "all") && !w.is(k, "schema") && !w.is(k, "function") &&
		!w.is(k, "procedure") && !w.is(k, "routine") && !w.is(k, "type") && !w.is(k, "domain") &&
		!w.is(k, "large") && !w.is(k, "foreign") && !w.is(k, "parameter"):
		w.nameList(k) // ON t1, t2: TABLE is optional
	default:
		w.schema = true // ALL TABLES IN SCHEMA, SCHEMA, FUNCTION, ...
	}
	return end
}

// importForeign handles IMPORT FOREIGN SCHEMA after its second word at j.
func (w *walker) importForeign(j int) int {
	end := w.stmtEnd(j)
	if k := w.findWord(j, "limit"); k >= 0 && w.is(k+1, "to") && w.isKind(k+2, tkLParen) {
		w.nameList(k + 3)
	} else {
		w.schema = true // every table of the remote schema, or all but some
	}
	return end
}

// onTable records the table of "... name ON [TABLE] table" (index, policy,
// rule, trigger, constraint) found after j, and returns the index after it,
// or -1.
func (w *walker) onTable(j int) int {
	k := w.findWord(j, "on")
	if k < 0 {
		return -1
	}
	k++
	if w.is(k, "only") || w.is(k, "table") {
		k++
	}
	return w.writeName(k)
}

// isSafeKind reports whether the object kind at j is one of safeDDL's.
func (w *walker) isSafeKind(j int) bool {
	if j >= len(w.toks) || w.toks[j].kind != tkWord {
		return false
	}
	if w.is(j, "user") && w.is(j+1, "mapping") {
		return false // what a foreign table returns depends on the remote user
	}
	if w.is(j, "foreign") {
		return w.is(j+1, "data") // FOREIGN DATA WRAPPER
	}
	return safeDDL[w.lower(j)]
}

// lower returns the text of toks[j] in lower case (allocating if needed:
// DDL only).
func (w *walker) lower(j int) string { return strings.ToLower(w.toks[j].text(w.s)) }

// writeName records the possibly qualified name at j as written and returns
// the index after it, or j if there is no name.
func (w *walker) writeName(j int) int {
	name, _, k, ok := w.qualName(j)
	if !ok {
		return j
	}
	w.addWrite(name)
	if w.isKind(k, tkStar) {
		k++
	}
	return k
}

// skipIfExists skips IF [NOT] EXISTS at j.
func (w *walker) skipIfExists(j int) int {
	if w.is(j, "if") {
		if w.is(j+1, "not") && w.is(j+2, "exists") {
			return j + 3
		}
		if w.is(j+1, "exists") {
			return j + 2
		}
	}
	return j
}

// qualLastTwo parses a qualified name at j and returns the indexes of its
// next-to-last (or -1) and last components.
func (w *walker) qualLastTwo(j int) (prev, last int, ok bool) {
	if !w.isNameTok(j) {
		return -1, j, false
	}
	prev, last = -1, j
	for k := j + 1; k+1 < len(w.toks) && w.toks[k].kind == tkDot &&
		(w.toks[k+1].kind == tkWord || w.toks[k+1].kind == tkQuoted); k += 2 {
		prev, last = last, k+1
	}
	return prev, last, true
}

// is reports whether toks[j] is the unquoted word kw (lower case).
func (w *walker) is(j int, kw string) bool {
	if j >= len(w.toks) || w.toks[j].kind != tkWord || int(w.toks[j].n) != len(kw) {
		return false
	}
	return strings.EqualFold(w.toks[j].text(w.s), kw)
}

// stmtEnd returns the index of the semicolon ending the statement that
// contains j, or len(toks).
func (w *walker) stmtEnd(j int) int {
	for ; j < len(w.toks); j++ {
		if w.toks[j].kind == tkSemi {
			return j
		}
	}
	return j
}

// findWord returns the index of the first word kw outside parentheses
// between j and the end of the statement, or -1.
func (w *walker) findWord(j int, kw string) int {
	depth := 0
	for ; j < len(w.toks); j++ {
		switch w.toks[j].kind {
		case tkSemi:
			return -1
		case tkLParen:
			depth++
		case tkRParen:
			depth--
		case tkWord:
			if depth == 0 && w.is(j, kw) {
				return j
			}
		}
	}
	return -1
}

// hasWord reports whether the statement from j on contains the word kw
// outside parentheses.
func (w *walker) hasWord(j int, kw string) bool { return w.findWord(j, kw) >= 0 }

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
