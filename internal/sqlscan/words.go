package sqlscan

// This file handles the keywords of queries, DML statements and their
// clauses: word dispatches each keyword to the method that knows it. Each
// method takes the index of its keyword and returns the index where the
// walk goes on. Statement heads that are DDL or utility statements are
// handled in ddl.go before the walk reaches them.

// word handles the unquoted word at i.
func (w *walker) word(i int) int {
	if next := w.dialectWord(i); next > i {
		return next
	}
	kw := w.toks[i].kw
	if kw == kwNone || i > 0 && w.toks[i-1].kind == tkDot {
		return i + 1 // an identifier (a name after "." is never a keyword)
	}
	switch kw {
	case kwFrom:
		return w.from(i)
	case kwJoin:
		w.top().joinSeen = true
		next, _ := w.fromItem(i + 1)
		return next
	case kwUsing:
		return w.using(i)
	case kwWith:
		return w.with(i)
	case kwWhere, kwGroup, kwHaving, kwOrder, kwLimit, kwOffset, kwFetch, kwFor, kwWindow,
		kwUnion, kwIntersect, kwExcept, kwReturning, kwDo:
		w.top().inFrom = false
		if len(w.fs) == 1 {
			w.dmlWrite = false
		}
	case kwSet:
		w.set(i)
	case kwInsert:
		w.top().withList = false
		if w.d == MySQL {
			return w.mysqlInsert(i)
		}
	case kwSelect, kwValues, kwMerge:
		w.top().withList = false
	case kwUpdate:
		w.top().withList = false
		return w.updateTarget(i)
	case kwDelete:
		w.top().withList = false
		return w.deleteTarget(i)
	case kwInto:
		return w.intoTarget(i)
	case kwTruncate:
		return w.truncateTargets(i)
	case kwRefresh:
		return w.refreshTarget(i)
	case kwCopy:
		return w.copyTarget(i)
	case kwTable:
		w.top().withList = false
		return w.tableName(i)
	}
	return i + 1
}

// dialectWord handles the words a dialect other than PostgreSQL reads
// otherwise, and returns the index after them, or i.
func (w *walker) dialectWord(i int) int {
	if w.d == PostgreSQL {
		return i
	}
	if w.d == MySQL {
		if next := w.mysqlWord(i); next > i {
			return next
		}
	}
	if w.d == SQLite && w.is(i, "in") {
		return w.sqliteInTable(i)
	}
	if w.aliasKeyword(i) {
		return i + 1
	}
	return i
}

// sqliteInTable reads SQLite's "x IN table" (and IN schema.table): a name
// after IN that no parenthesis follows is a table read. It returns the
// index after IN, or after the name.
func (w *walker) sqliteInTable(i int) int {
	name, qualified, next, ok := w.qualName(i + 1)
	if !ok || w.isKind(next, tkLParen) {
		return i + 1 // IN (list), IN tvf(...): the walk reads what is inside
	}
	w.addRead(name, qualified)
	return next
}

// mysqlWord handles the words of MySQL that the walk would misread, and
// returns the index after them, or i: index hints (USE|IGNORE|FORCE
// INDEX|KEY [FOR JOIN|ORDER BY|GROUP BY] (...)), whose FOR, ORDER and
// GROUP are not clauses; MariaDB's FOR SYSTEM_TIME; and the walk's
// keywords that MySQL does not reserve used as an alias or a qualifier
// (FROM a do, b; do.id).
func (w *walker) mysqlWord(i int) int {
	switch {
	case (w.is(i, "use") || w.is(i, "ignore") || w.is(i, "force")) && (w.is(i+1, "index") || w.is(i+1, "key")):
		j := i + 2
		if w.isKw(j, kwFor) {
			j++
			if w.isKw(j, kwJoin) {
				j++
			} else if w.isKw(j, kwOrder) || w.isKw(j, kwGroup) {
				j += 2 // ORDER BY, GROUP BY
			}
		}
		if w.isKind(j, tkLParen) {
			for j < len(w.toks) && !w.isKind(j, tkRParen) {
				j++
			}
			j++
		}
		return j
	case w.isKw(i, kwFor) && w.is(i+1, "system_time"):
		return i + 2
	}
	return i
}

// aliasKeyword reports whether the word at i is one of the walk's
// keywords that the dialect does not reserve, used as an alias or a
// qualifier: FROM a do, b; do.id (MySQL: DO, OFFSET, RETURNING, FETCH;
// SQLite: DO, FOR, OFFSET, WINDOW, FETCH).
func (w *walker) aliasKeyword(i int) bool {
	switch kw := w.toks[i].kw; {
	case kw == kwDo || kw == kwOffset || kw == kwFetch,
		w.d == MySQL && kw == kwReturning,
		w.d == SQLite && (kw == kwFor || kw == kwWindow):
	default:
		return false
	}
	if w.isKind(i+1, tkDot) {
		return true // a qualifier: do.id
	}
	prev := tokKind(0)
	if i > 0 {
		prev = w.toks[i-1].kind
	}
	// An alias right after a from-item's name.
	return w.top().inFrom && (prev == tkQuoted || prev == tkString || prev == tkWord && w.toks[i-1].kw == kwNone)
}

// set handles SET at i.
func (w *walker) set(i int) {
	if w.dmlWrite && len(w.fs) == 1 {
		w.dmlWrite, w.top().inFrom = false, false // UPDATE a JOIN b SET
	}
	// MERGE ... USING s ... THEN UPDATE SET a = 1, b = 2: the commas are
	// not from-items. Elsewhere SET may be a table alias ("FROM t set, u").
	if w.prevKw(i) == kwUpdate {
		w.top().inFrom = false
	}
}

// from handles FROM at i, which starts a from-list unless it belongs to
// COPY t FROM, to call syntax (EXTRACT(x FROM y), ...) or to IS [NOT]
// DISTINCT FROM.
func (w *walker) from(i int) int {
	prev := w.prevKw(i)
	f := w.top()
	if i == w.copyFrom || prev == kwAs || f.fn {
		return i + 1
	}
	if prev == kwDistinct && i > 1 && w.toks[i-2].kind == tkWord && (w.toks[i-2].kw == kwIs || w.toks[i-2].kw == kwNot) {
		return i + 1 // IS [NOT] DISTINCT FROM
	}
	f.inFrom, f.joinSeen = true, false
	next, _ := w.fromItem(i + 1)
	return next
}

// using handles USING at i: a from-list after DELETE or MERGE, a column
// list after a JOIN.
func (w *walker) using(i int) int {
	if w.top().joinSeen {
		return i + 1 // JOIN ... USING (columns)
	}
	// DELETE ... USING, MERGE ... USING: a from-list.
	next, found := w.fromItem(i + 1)
	if found {
		w.top().inFrom = true
	}
	return next
}

// with handles WITH at i when it starts a WITH list: its first CTE is
// defined, and a comma of the list may define another.
func (w *walker) with(i int) int {
	j := i + 1
	rec := w.isKw(j, kwRecursive)
	if rec {
		j++
	}
	next, ok := w.cteDef(j, rec)
	if !ok {
		return i + 1
	}
	f := w.top()
	f.withList, f.withRec = true, rec
	return next
}

// updateTarget handles UPDATE at i: the table an UPDATE statement names is
// written. An UPDATE that names no table (FOR [NO KEY] UPDATE, ON UPDATE,
// trigger events, DO UPDATE SET, THEN UPDATE SET) is left to the walk.
func (w *walker) updateTarget(i int) int {
	prev := w.prevKw(i)
	if i == w.head {
		prev = kwNone // a statement's first word (after SET STATEMENT ... FOR)
	}
	switch prev {
	case kwFor, kwKey, kwOn, kwOr, kwOf, kwBefore, kwAfter:
		return i + 1 // FOR [NO KEY] UPDATE, ON UPDATE, trigger events
	case kwDo, kwThen:
		if w.isKw(i+1, kwSet) {
			return i + 1 // ON CONFLICT DO UPDATE SET, MERGE ... THEN UPDATE SET
		}
	}
	j := i + 1
	if w.isKw(j, kwOnly) {
		j++
	}
	if w.d == SQLite && w.isKw(j, kwOr) {
		j += 2 // UPDATE OR REPLACE|IGNORE|ABORT|FAIL|ROLLBACK
	}
	if w.d == MySQL {
		j = w.skipWords(j, "low_priority", "ignore")
		if w.isKind(j, tkLParen) {
			// UPDATE (a JOIN b ...) SET: a from-item in parentheses, every
			// table of which may be written.
			w.dmlWrite, w.top().inFrom, w.pendFrom = true, true, j
			return j
		}
	}
	name, _, k, ok := w.qualName(j)
	if !ok {
		return i + 1
	}
	if w.isKind(k, tkStar) {
		k++
	}
	w.addWrite(name)
	w.top().joinSeen = false
	if w.d == MySQL {
		// UPDATE a, b ... or UPDATE a JOIN b ...: every table of the list
		// may be written, up to SET.
		w.dmlWrite, w.top().inFrom = true, true
	}
	return k
}

// skipWords returns the index after the words of set at j, in any order.
func (w *walker) skipWords(j int, set ...string) int {
	for j < len(w.toks) && w.toks[j].kind == tkWord {
		found := false
		for _, s := range set {
			if w.is(j, s) {
				found = true
				break
			}
		}
		if !found {
			break
		}
		j++
	}
	return j
}

// mysqlInsert handles INSERT and REPLACE at i in MySQL, whose INTO is
// optional: INSERT [LOW_PRIORITY | DELAYED | HIGH_PRIORITY] [IGNORE]
// [INTO] t, REPLACE [LOW_PRIORITY | DELAYED] [INTO] t.
func (w *walker) mysqlInsert(i int) int {
	j := w.skipWords(i+1, "low_priority", "delayed", "high_priority", "ignore")
	if w.isKw(j, kwInto) {
		j++
	}
	name, _, k, ok := w.qualName(j)
	if !ok {
		return i + 1
	}
	w.addWrite(name)
	w.top().joinSeen = false
	return k
}

// deleteTarget handles DELETE at i: the table of DELETE FROM is written.
func (w *walker) deleteTarget(i int) int {
	if w.d == MySQL {
		return w.mysqlDelete(i)
	}
	if !w.isKw(i+1, kwFrom) {
		return i + 1
	}
	j := i + 2
	if w.isKw(j, kwOnly) {
		j++
	}
	name, q, k, ok := w.qualName(j)
	if !ok {
		return i + 1
	}
	w.addWrite(name)
	w.top().joinSeen = false
	if w.prevKw(i) == kwAs {
		// "PREPARE p AS DELETE FROM t" or "SELECT x AS delete FROM t":
		// record the write and let the FROM be handled as a read as well.
		w.addRead(name, q)
		return i + 1
	}
	if w.isKind(k, tkStar) {
		k++
	}
	return k
}

// mysqlDelete handles DELETE at i in MySQL: DELETE [LOW_PRIORITY] [QUICK]
// [IGNORE] FROM t ..., DELETE a, b FROM a JOIN b ..., DELETE FROM a, b
// USING a JOIN b ...: every table named up to WHERE may be written.
func (w *walker) mysqlDelete(i int) int {
	if w.prevKw(i) == kwOn {
		return i + 1 // ON DELETE CASCADE
	}
	j := w.skipWords(i+1, "low_priority", "quick", "ignore")
	w.dmlWrite = true
	if w.isKw(j, kwFrom) {
		return j // from: a from-list, whose tables dmlWrite writes
	}
	// The tables before FROM (a, b.*): written, read by the FROM after.
	for {
		name, _, k, ok := w.qualName(j)
		if !ok {
			return j
		}
		w.addWrite(name)
		if w.isKind(k, tkDot) && w.isKind(k+1, tkStar) {
			k += 2
		}
		if !w.isKind(k, tkComma) {
			return k
		}
		j = k + 1
	}
}

// intoTarget handles INTO at i: the table of INSERT INTO and MERGE INTO is
// written, and so is the one SELECT ... INTO creates.
func (w *walker) intoTarget(i int) int {
	j := i + 1
	if prev := w.prevKw(i); prev != kwInsert && prev != kwMerge && !w.sqliteInsert(i) {
		// SELECT ... INTO [TEMP | UNLOGGED ...] [TABLE] name creates a table.
		w.ddl = true
		for (w.isNameTok(j+1) || w.isKw(j+1, kwTable)) && (w.isKw(j, kwTemp) || w.isKw(j, kwTemporary) ||
			w.isKw(j, kwUnlogged) || w.isKw(j, kwLocal) || w.isKw(j, kwGlobal)) {
			j++
		}
		if w.isKw(j, kwTable) {
			j++
		}
	}
	if w.isKw(j, kwOnly) {
		j++
	}
	name, _, k, ok := w.qualName(j)
	if !ok {
		return i + 1
	}
	w.addWrite(name)
	w.top().joinSeen = false
	return k
}

// sqliteInsert reports whether INTO at i belongs to one of SQLite's forms
// of INSERT: INSERT OR REPLACE|IGNORE|ABORT|FAIL|ROLLBACK INTO, REPLACE
// INTO.
func (w *walker) sqliteInsert(i int) bool {
	if w.d != SQLite || i == 0 || w.toks[i-1].kind != tkWord {
		return false
	}
	switch w.lower(i - 1) {
	case "replace":
		return true
	case "ignore", "abort", "fail", "rollback":
		return i >= 3 && w.isKw(i-2, kwOr) && w.isKw(i-3, kwInsert)
	}
	return false
}

// truncateTargets handles TRUNCATE [TABLE] at i: the tables are written.
func (w *walker) truncateTargets(i int) int {
	j := i + 1
	if w.isKw(j, kwTable) {
		j++
	}
	if next, found := w.nameList(j); found {
		return next
	}
	return i + 1
}

// refreshTarget handles REFRESH MATERIALIZED VIEW [CONCURRENTLY] at i: the
// view is written.
func (w *walker) refreshTarget(i int) int {
	j := i + 1
	if !w.isKw(j, kwMaterialized) || !w.isKw(j+1, kwView) {
		return i + 1
	}
	j += 2
	if w.isKw(j, kwConcurrently) {
		j++
	}
	name, _, k, ok := w.qualName(j)
	if !ok {
		return j
	}
	w.addWrite(name)
	return k
}

// copyTarget handles COPY at i: COPY t FROM writes t, COPY t TO reads it.
func (w *walker) copyTarget(i int) int {
	j := i + 1
	if w.isKw(j, kwBinary) {
		j++
	}
	name, _, k, ok := w.qualName(j)
	if !ok {
		return i + 1 // includes COPY (query) TO: the query is walked normally
	}
	m := k
	if w.isKind(m, tkLParen) {
		if e, ok := w.skipNameList(m); ok {
			m = e
		}
	}
	if w.isKw(m, kwFrom) {
		w.addWrite(name)
		w.copyFrom = m
	} else {
		w.addRead(name, true)
	}
	return k
}

// tableName handles TABLE at i: TABLE name (the command), CREATE/LOCK
// TABLE name, ...; statements that write their TABLE target consumed it
// before the walk got here.
func (w *walker) tableName(i int) int {
	j := i + 1
	if w.isKw(j, kwIf) {
		if w.isKw(j+1, kwNot) && w.isKw(j+2, kwExists) {
			j += 3
		} else if w.isKw(j+1, kwExists) {
			j += 2
		}
	}
	if w.isKw(j, kwOnly) {
		j++
	}
	name, q, k, ok := w.qualName(j)
	if !ok {
		return i + 1
	}
	if w.isKind(k, tkLParen) {
		return k // CREATE TABLE name (columns)
	}
	w.addRead(name, q)
	return k
}
