package sqlscan

import (
	"strings"
	"sync"
)

// ---------------------------------------------------------------------------
// Walk

// frame is the state of one parenthesis or bracket level.
type frame struct {
	cte      int  // index in walker.ctes of the CTE whose body this is, or -1
	inFrom   bool // in a FROM/USING list: a comma introduces another from-item
	joinSeen bool // a JOIN was seen since the last FROM/target: USING (...) lists columns
	fn       bool // arguments of EXTRACT/SUBSTRING/TRIM/OVERLAY/POSITION: FROM is call syntax
	withList bool // a WITH list is in progress: a comma may introduce another CTE
	withRec  bool // ... and it is WITH RECURSIVE
}

// cteDef is a CTE name defined by a WITH clause at frame depth depth. It
// hides tables of the same (unqualified) name while active.
type cteDef struct {
	name   string
	depth  int
	active bool
}

// cteMapThreshold is the number of active CTEs above which lookups use a map.
const cteMapThreshold = 16

type walker struct {
	s      string
	toks   []token
	fs     []frame
	reads  []string
	writes []string
	ctes   []cteDef

	cteActive int            // number of active entries in ctes
	cteMap    map[string]int // active CTE name counts, once cteActive exceeded cteMapThreshold

	pendFrom   int // index of a "(" that starts a from-item, or -1
	pendCTE    int // index of a "(" that starts a CTE body, or -1
	pendCTEIdx int // ... and the index of that CTE in ctes
	copyFrom   int // index of the FROM of COPY t FROM, or -1
	head       int // index of the first token of the current statement

	inSchema bool // in CREATE SCHEMA: CREATE and GRANT start schema elements
	catalog  bool // Result.Catalog
	ddl      bool // Result.DDL
	schema   bool // Result.Schema
}

var walkerPool = sync.Pool{New: func() any { return new(walker) }}

const (
	// maxPooledTokens bounds the buffers kept in the pool (1 MiB of tokens).
	maxPooledTokens = 1 << 16
	// maxPresizeTokens bounds the initial token buffer for long inputs.
	maxPresizeTokens = 1 << 20
)

func (w *walker) release() {
	w.s = ""
	clear(w.reads)
	clear(w.writes)
	clear(w.ctes)
	w.reads, w.writes, w.ctes = w.reads[:0], w.writes[:0], w.ctes[:0]
	w.cteMap = nil
	if cap(w.toks) > maxPooledTokens {
		w.toks = nil
	}
	if cap(w.fs) > maxPooledTokens {
		w.fs = nil
	}
	if cap(w.reads) > maxPooledTokens {
		w.reads = nil
	}
	if cap(w.writes) > maxPooledTokens {
		w.writes = nil
	}
	if cap(w.ctes) > maxPooledTokens {
		w.ctes = nil
	}
}

// reset starts a statement whose first token is toks[head].
func (w *walker) reset(head int) {
	w.head, w.inSchema = head, false
	w.fs = append(w.fs[:0], frame{cte: -1})
	clear(w.ctes)
	w.ctes = w.ctes[:0]
	w.cteActive = 0
	w.cteMap = nil
	w.pendFrom, w.pendCTE, w.pendCTEIdx, w.copyFrom = -1, -1, -1, -1
}

func (w *walker) run() {
	w.reset(0)
	w.catalog, w.ddl, w.schema = false, false, false
	n := len(w.toks)
	for i := 0; i < n; {
		if i == w.head || w.inSchema && len(w.fs) == 1 {
			if next := w.statement(i); next != i {
				i = next
				continue
			}
		}
		switch w.toks[i].kind {
		case tkLParen, tkLBracket:
			i = w.open(i)
		case tkRParen, tkRBracket:
			w.close()
			i++
		case tkSemi:
			w.reset(i + 1)
			i++
		case tkComma:
			i = w.comma(i)
		case tkWord:
			i = w.word(i)
		default:
			i++
		}
	}
	// Catalog references are looked for at every token, apart from the
	// walk: it steps over the items of a FROM list, set-returning function
	// calls (pg_get_keywords()) included.
	for i := 0; i < n && !w.catalog; i++ {
		if k := w.toks[i].kind; k == tkWord || k == tkQuoted {
			w.catalog = w.catalogRef(i)
		}
	}
}

// isKw reports whether toks[j] is the unquoted keyword kw.
func (w *walker) isKw(j int, kw uint8) bool {
	return j < len(w.toks) && w.toks[j].kind == tkWord && w.toks[j].kw == kw
}

func (w *walker) isKind(j int, k tokKind) bool {
	return j < len(w.toks) && w.toks[j].kind == k
}

// isNameTok reports whether toks[j] can start a table name.
func (w *walker) isNameTok(j int) bool {
	if j >= len(w.toks) {
		return false
	}
	t := w.toks[j]
	return t.kind == tkQuoted || t.kind == tkWord && !kwReserved[t.kw]
}

// qualName parses a possibly qualified name at j and returns its normalised
// last component, whether it was qualified, and the index after it.
func (w *walker) qualName(j int) (name string, qualified bool, next int, ok bool) {
	if !w.isNameTok(j) {
		return "", false, j, false
	}
	last, k := j, j+1
	for k+1 < len(w.toks) && w.toks[k].kind == tkDot &&
		(w.toks[k+1].kind == tkWord || w.toks[k+1].kind == tkQuoted) {
		if !w.catalog {
			w.catalog = w.catalogSchema(last)
		}
		last = k + 1
		k += 2
	}
	return identValue(w.s, w.toks, last), last != j, k, true
}

// skipNameList checks that toks[j] starts a parenthesised list of names
// "(a, b, ...)" and returns the index after it.
func (w *walker) skipNameList(j int) (int, bool) {
	if !w.isKind(j, tkLParen) {
		return j, false
	}
	k := j + 1
	if w.isKind(k, tkRParen) {
		return k + 1, true
	}
	for {
		if !w.isKind(k, tkWord) && !w.isKind(k, tkQuoted) {
			return j, false
		}
		k++
		switch {
		case w.isKind(k, tkComma):
			k++
		case w.isKind(k, tkRParen):
			return k + 1, true
		default:
			return j, false
		}
	}
}

func (w *walker) addRead(name string, qualified bool) {
	if name == "" || !qualified && w.isCTE(name) {
		return
	}
	if strings.HasPrefix(name, "pg_") {
		w.catalog = true // pg_class, pg_tables, pg_stat_activity, ...
	}
	w.reads = append(w.reads, name)
}

func (w *walker) addWrite(name string) {
	if name != "" {
		w.writes = append(w.writes, name)
	}
}

func (w *walker) isCTE(name string) bool {
	if w.cteActive == 0 {
		return false
	}
	if w.cteMap != nil {
		return w.cteMap[name] > 0
	}
	for i := range w.ctes {
		if w.ctes[i].active && w.ctes[i].name == name {
			return true
		}
	}
	return false
}

func (w *walker) activateCTE(idx int) {
	c := &w.ctes[idx]
	if c.active || c.name == "" {
		return
	}
	c.active = true
	w.cteActive++
	switch {
	case w.cteMap != nil:
		w.cteMap[c.name]++
	case w.cteActive > cteMapThreshold:
		w.cteMap = make(map[string]int, 2*w.cteActive)
		for i := range w.ctes {
			if w.ctes[i].active {
				w.cteMap[w.ctes[i].name]++
			}
		}
	}
}

// dropCTEs ends the scope of the CTEs defined at depth >= depth.
func (w *walker) dropCTEs(depth int) {
	for len(w.ctes) > 0 {
		c := &w.ctes[len(w.ctes)-1]
		if c.depth < depth {
			return
		}
		if c.active {
			w.cteActive--
			if w.cteMap != nil {
				if w.cteMap[c.name]--; w.cteMap[c.name] <= 0 {
					delete(w.cteMap, c.name)
				}
			}
		}
		*c = cteDef{}
		w.ctes = w.ctes[:len(w.ctes)-1]
	}
}

func (w *walker) open(i int) int {
	toks := w.toks
	f := frame{cte: -1}
	if i == w.pendCTE {
		f.cte = w.pendCTEIdx
		w.pendCTE = -1
	}
	if toks[i].kind == tkLParen && i > 0 && toks[i-1].kind == tkWord && !(i > 1 && toks[i-2].kind == tkDot) {
		switch toks[i-1].kw {
		case kwExtract, kwSubstring, kwTrim, kwOverlay, kwPosition:
			f.fn = true
		}
	}
	w.fs = append(w.fs, f)
	if i == w.pendFrom {
		// A parenthesis where a from-item is expected: a sub-query, or a
		// parenthesised joined table whose first item is a table reference.
		w.pendFrom = -1
		switch {
		case i+1 >= len(toks):
		case toks[i+1].kind == tkLParen:
			w.pendFrom = i + 1
		case toks[i+1].kind == tkWord && (toks[i+1].kw == kwSelect || toks[i+1].kw == kwWith ||
			toks[i+1].kw == kwValues || toks[i+1].kw == kwTable):
		default:
			w.fs[len(w.fs)-1].inFrom = true
			next, _ := w.fromItem(i + 1)
			return next
		}
	}
	return i + 1
}

func (w *walker) close() {
	d := len(w.fs) - 1
	if d == 0 {
		return
	}
	f := w.fs[d]
	w.fs = w.fs[:d]
	w.dropCTEs(d)
	if f.cte >= 0 && f.cte < len(w.ctes) {
		w.activateCTE(f.cte)
	}
}

func (w *walker) comma(i int) int {
	f := &w.fs[len(w.fs)-1]
	if f.withList {
		if next, ok := w.cteDef(i+1, f.withRec); ok {
			return next
		}
	}
	if f.inFrom {
		next, _ := w.fromItem(i + 1)
		return next
	}
	return i + 1
}

// fromItem handles a position where a from-item may start: [ONLY] [LATERAL]
// followed by a table name, a function call or a parenthesis.
func (w *walker) fromItem(j int) (next int, found bool) {
	if w.isKw(j, kwOnly) {
		j++
	}
	if w.isKw(j, kwLateral) {
		j++
	}
	if w.isKind(j, tkLParen) {
		w.pendFrom = j
		return j, true
	}
	if w.isKw(j, kwRows) && w.isKw(j+1, kwFrom) {
		return j + 1, true // ROWS FROM (...): the FROM is handled next
	}
	name, q, k, ok := w.qualName(j)
	if !ok {
		return j, false
	}
	if w.isKind(k, tkLParen) {
		return k, true // set-returning function
	}
	if w.isKind(k, tkStar) {
		k++
	}
	w.addRead(name, q)
	return k, true
}

// nameList parses "[ONLY] name [*] {, [ONLY] name [*]}" at j and records the names as written.
func (w *walker) nameList(j int) (next int, found bool) {
	for {
		k := j
		if w.isKw(k, kwOnly) {
			k++
		}
		name, _, k, ok := w.qualName(k)
		if !ok {
			return j, found
		}
		w.addWrite(name)
		found = true
		j = k
		if w.isKind(j, tkStar) {
			j++
		}
		if !w.isKind(j, tkComma) {
			return j, true
		}
		j++
	}
}

// cteDef recognises "name [(cols)] AS [NOT] [MATERIALIZED] (" at j and
// records the CTE; it returns the index of the body's "(".
func (w *walker) cteDef(j int, recursive bool) (int, bool) {
	if !w.isNameTok(j) {
		return j, false
	}
	k := j + 1
	if w.isKind(k, tkLParen) {
		var ok bool
		if k, ok = w.skipNameList(k); !ok {
			return j, false
		}
	}
	if !w.isKw(k, kwAs) {
		return j, false
	}
	k++
	if w.isKw(k, kwNot) {
		k++
	}
	if w.isKw(k, kwMaterialized) {
		k++
	}
	if !w.isKind(k, tkLParen) {
		return j, false
	}
	w.ctes = append(w.ctes, cteDef{name: identValue(w.s, w.toks, j), depth: len(w.fs) - 1})
	idx := len(w.ctes) - 1
	if recursive {
		w.activateCTE(idx)
	}
	w.pendCTE, w.pendCTEIdx = k, idx
	return k, true
}

func (w *walker) word(i int) int {
	toks := w.toks
	kw := toks[i].kw
	if kw == kwNone || i > 0 && toks[i-1].kind == tkDot {
		return i + 1 // an identifier (a name after "." is never a keyword)
	}
	var prev uint8 // keyword before this one, if any
	if i > 0 && toks[i-1].kind == tkWord {
		prev = toks[i-1].kw
	}
	f := &w.fs[len(w.fs)-1]
	switch kw {
	case kwFrom:
		if i == w.copyFrom || prev == kwAs || f.fn {
			return i + 1
		}
		if prev == kwDistinct && i > 1 && toks[i-2].kind == tkWord && (toks[i-2].kw == kwIs || toks[i-2].kw == kwNot) {
			return i + 1 // IS [NOT] DISTINCT FROM
		}
		f.inFrom, f.joinSeen = true, false
		next, _ := w.fromItem(i + 1)
		return next

	case kwJoin:
		f.joinSeen = true
		next, _ := w.fromItem(i + 1)
		return next

	case kwUsing:
		if f.joinSeen {
			return i + 1 // JOIN ... USING (columns)
		}
		// DELETE ... USING, MERGE ... USING: a from-list.
		next, found := w.fromItem(i + 1)
		if found {
			f = &w.fs[len(w.fs)-1]
			f.inFrom = true
		}
		return next

	case kwWith:
		j := i + 1
		rec := w.isKw(j, kwRecursive)
		if rec {
			j++
		}
		if next, ok := w.cteDef(j, rec); ok {
			f = &w.fs[len(w.fs)-1]
			f.withList, f.withRec = true, rec
			return next
		}
		return i + 1

	case kwWhere, kwGroup, kwHaving, kwOrder, kwLimit, kwOffset, kwFetch, kwFor, kwWindow,
		kwUnion, kwIntersect, kwExcept, kwReturning, kwDo:
		f.inFrom = false
		return i + 1

	case kwSet:
		// MERGE ... USING s ... THEN UPDATE SET a = 1, b = 2: the commas are
		// not from-items. Elsewhere SET may be a table alias ("FROM t set, u").
		if prev == kwUpdate {
			f.inFrom = false
		}
		return i + 1

	case kwSelect, kwValues, kwInsert, kwMerge:
		f.withList = false
		return i + 1

	case kwUpdate:
		f.withList = false
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
		name, _, k, ok := w.qualName(j)
		if !ok {
			return i + 1
		}
		if w.isKind(k, tkStar) {
			k++
		}
		w.addWrite(name)
		f.joinSeen = false
		return k

	case kwDelete:
		f.withList = false
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
		f.joinSeen = false
		if prev == kwAs {
			// "PREPARE p AS DELETE FROM t" or "SELECT x AS delete FROM t":
			// record the write and let the FROM be handled as a read as well.
			w.addRead(name, q)
			return i + 1
		}
		if w.isKind(k, tkStar) {
			k++
		}
		return k

	case kwInto:
		j := i + 1
		if prev != kwInsert && prev != kwMerge {
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
		f.joinSeen = false
		return k

	case kwTruncate:
		j := i + 1
		if w.isKw(j, kwTable) {
			j++
		}
		if next, found := w.nameList(j); found {
			return next
		}
		return i + 1

	case kwRefresh:
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

	case kwCopy:
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

	case kwTable:
		f.withList = false
		// TABLE name (the command), CREATE/LOCK TABLE name, ... ; statements
		// that write their TABLE target consumed it above.
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
	return i + 1
}
