package sqlscan

import (
	"strings"
	"sync"
)

// This file walks the tokens of a statement string once, front to back:
// the frames of parentheses, from-lists and their items, and the small
// questions about tokens that the handlers of words.go and ddl.go share.

// frame is the state of one parenthesis or bracket level.
type frame struct {
	cte      int  // index in walker.ctes of the CTE whose body this is, or -1
	inFrom   bool // in a FROM/USING list: a comma introduces another from-item
	joinSeen bool // a JOIN was seen since the last FROM/target: USING (...) lists columns
	fn       bool // arguments of EXTRACT/SUBSTRING/TRIM/OVERLAY/POSITION: FROM is call syntax
	withList bool // a WITH list is in progress: a comma may introduce another CTE
	withRec  bool // ... and it is WITH RECURSIVE
}

type walker struct {
	d      Dialect // of s, a known one
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
	// dmlWrite: MySQL's multi-table UPDATE and DELETE, until their SET or
	// WHERE: every table named is written.
	dmlWrite bool
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
	w.head, w.inSchema, w.dmlWrite = head, false, false
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
		switch k := w.toks[i].kind; {
		case k == tkWord || k == tkQuoted:
			w.catalog = w.catalogRef(i)
		case k == tkParam && w.d == MySQL && w.s[w.toks[i].pos] == '@':
			w.catalog = true // @var and @@var: the session's variables
		}
	}
}

// isKw reports whether toks[j] is the unquoted keyword kw.
func (w *walker) isKw(j int, kw uint8) bool {
	return j < len(w.toks) && w.toks[j].kind == tkWord && w.toks[j].kw == kw
}

// prevKw returns the keyword before toks[i], or kwNone.
func (w *walker) prevKw(i int) uint8 {
	if i > 0 && w.toks[i-1].kind == tkWord {
		return w.toks[i-1].kw
	}
	return kwNone
}

// top returns the innermost frame.
func (w *walker) top() *frame { return &w.fs[len(w.fs)-1] }

func (w *walker) isKind(j int, k tokKind) bool {
	return j < len(w.toks) && w.toks[j].kind == k
}

// isNameTok reports whether toks[j] can start a table name.
func (w *walker) isNameTok(j int) bool {
	if j >= len(w.toks) {
		return false
	}
	t := w.toks[j]
	switch w.d {
	case SQLite:
		return t.kind == tkQuoted || t.kind == tkString || t.kind == tkWord && !w.sqliteReserved(j)
	case MySQL:
		return t.kind == tkQuoted || t.kind == tkWord && !w.reservedIn(j, mysqlReservedWords)
	}
	return t.kind == tkQuoted || t.kind == tkWord && !kwReserved[t.kw]
}

// sqliteReserved reports whether the word toks[j] is one of SQLite's
// keywords that cannot name a table unquoted. The others can, PostgreSQL's
// reserved words among them ("FROM user").
func (w *walker) sqliteReserved(j int) bool { return w.reservedIn(j, sqliteReservedWords) }

// reservedIn reports whether the word toks[j] is in words, a set of lower
// case words of at most 17 bytes.
func (w *walker) reservedIn(j int, words map[string]bool) bool {
	t := w.toks[j]
	if t.n > 17 {
		return false
	}
	var buf [17]byte
	return words[string(lowerInto(buf[:0], t.text(w.s)))]
}

// mysqlReservedWords are MySQL's reserved words that a statement's table
// position can hold in place of a name: the clauses and modifiers that
// follow or precede a table there. The others can name a table unquoted.
var mysqlReservedWords = map[string]bool{
	"select": true, "from": true, "where": true, "set": true, "join": true, "inner": true,
	"cross": true, "left": true, "right": true, "natural": true, "straight_join": true,
	"on": true, "using": true, "values": true, "into": true, "table": true,
	"update": true, "delete": true, "insert": true, "replace": true, "group": true,
	"order": true, "limit": true, "having": true, "union": true, "except": true,
	"intersect": true, "as": true, "partition": true, "use": true, "ignore": true,
	"force": true, "low_priority": true, "high_priority": true, "delayed": true,
	"window": true, "for": true, "lock": true, "with": true, "lateral": true,
	"default": true, "not": true, "exists": true, "if": true,
}

// sqliteReservedWords are the keywords SQLite's parser never takes for an
// identifier (its grammar's %fallback ID list leaves them out).
var sqliteReservedWords = map[string]bool{
	"add": true, "all": true, "alter": true, "and": true, "as": true, "autoincrement": true,
	"between": true, "case": true, "check": true, "collate": true, "commit": true,
	"constraint": true, "create": true, "default": true, "deferrable": true, "delete": true,
	"distinct": true, "drop": true, "else": true, "escape": true, "except": true,
	"exists": true, "foreign": true, "from": true, "group": true, "having": true, "in": true,
	"index": true, "insert": true, "intersect": true, "into": true, "is": true, "isnull": true,
	"join": true, "limit": true, "not": true, "nothing": true, "notnull": true, "null": true,
	"on": true, "or": true, "order": true, "primary": true, "references": true,
	"returning": true, "select": true, "set": true, "table": true, "then": true, "to": true,
	"transaction": true, "union": true, "unique": true, "update": true, "using": true,
	"values": true, "when": true, "where": true,
}

// qualName parses a possibly qualified name at j and returns its normalised
// last component, whether it was qualified, and the index after it.
func (w *walker) qualName(j int) (name string, qualified bool, next int, ok bool) {
	if w.d == MySQL && w.isKind(j, tkDot) && w.isNameTok(j+1) {
		j++ // .t: the default database's (ODBC)
	}
	if !w.isNameTok(j) {
		return "", false, j, false
	}
	last, k := j, j+1
	for k+1 < len(w.toks) && w.toks[k].kind == tkDot &&
		(w.toks[k+1].kind == tkWord || w.toks[k+1].kind == tkQuoted || w.d == SQLite && w.toks[k+1].kind == tkString) {
		if !w.catalog {
			w.catalog = w.catalogSchema(last)
		}
		last = k + 1
		k += 2
	}
	return identValue(w.d, w.s, w.toks, last), last != j, k, true
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
	if strings.HasPrefix(name, "pg_") || w.d == SQLite && strings.HasPrefix(name, "sqlite_") {
		w.catalog = true // pg_class, pg_tables, pg_stat_activity, ...; sqlite_master
	}
	w.reads = append(w.reads, name)
	if w.dmlWrite {
		w.addWrite(name)
	}
}

func (w *walker) addWrite(name string) {
	if name != "" {
		w.writes = append(w.writes, name)
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
	if w.d == MySQL && w.isKind(j, tkOp) && w.s[w.toks[j].pos] == '{' {
		j++ // { OJ a LEFT JOIN b ON ... }: ODBC's outer join
		if w.is(j, "oj") {
			j++
		}
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
