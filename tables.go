package gormflight

import (
	"math"
	"slices"
	"strings"
	"sync"
)

// This file finds the tables a PostgreSQL statement reads and writes, for
// generation-based cache invalidation.
//
// The analysis is a hand-written lexer (following PostgreSQL's scan.l for
// strings, comments, quoted identifiers and dollar quotes) followed by a single
// walk over the token stream that looks at every token position, so table
// references are found wherever they appear: in sub-queries, CTE bodies,
// data-modifying CTEs and every statement of a multi-statement string.
//
// Errors are asymmetric: reporting a table that is not really used only costs
// cache misses, while missing a table serves stale data. Wherever the walk is
// unsure it therefore reports a name rather than dropping it. The only places
// where names are deliberately left out are the ones PostgreSQL itself
// resolves to something that is not a table: aliases, column lists,
// set-returning functions in FROM, and references to CTEs that are in scope.
//
// What the text cannot show is not reported: writes done by functions,
// procedures (CALL), DO blocks, EXECUTE of prepared statements, triggers,
// rules, ON DELETE/UPDATE CASCADE foreign keys, TRUNCATE ... CASCADE on
// referencing tables and DROP SCHEMA ... CASCADE; a view is reported under its
// own name, not its base tables. Strings are lexed as with
// standard_conforming_strings = on (the default since PostgreSQL 9.1).

// sqlTables returns the tables a PostgreSQL statement reads and the tables it writes.
// Names are normalised with normTable. Each list is sorted and free of duplicates;
// an empty list is nil.
//
// The returned strings may share memory with query.
func sqlTables(query string) (read, written []string) {
	w := walkerPool.Get().(*walker)
	w.s = query
	if est := min(len(query)/2, maxPresizeTokens); cap(w.toks) < est {
		w.toks = make([]token, 0, est) // avoid repeated growth on long inputs
	}
	w.toks = tokenize(query, w.toks[:0])
	w.run()
	read = sortedSet(w.reads)
	written = sortedSet(w.writes)
	w.release()
	walkerPool.Put(w)
	return read, written
}

// normTable returns the generation name of a table reference as written in SQL:
// the last component of a possibly schema-qualified name ("public"."Users" -> Users,
// public.users -> users, "a.b" (one quoted identifier containing a dot) -> a.b),
// unquoted identifiers folded to lower case as PostgreSQL does, quoted ones kept exactly.
// Dropping the schema over-approximates (two schemas' tables of one name share a generation), which is safe.
//
// Like PostgreSQL, identifiers longer than 63 bytes are truncated, and U&"..."
// identifiers have their Unicode escapes decoded. A string that does not start
// with an identifier yields "".
func normTable(name string) string {
	var buf [8]token
	toks := tokenize(name, buf[:0])
	if len(toks) == 0 || (toks[0].kind != tkWord && toks[0].kind != tkQuoted) {
		return ""
	}
	last, k := 0, 1
	for k+1 < len(toks) && toks[k].kind == tkDot && (toks[k+1].kind == tkWord || toks[k+1].kind == tkQuoted) {
		last = k + 1
		k += 2
	}
	return identValue(name, toks, last)
}

// sortedSet sorts v in place, removes duplicates and returns a fresh copy (nil if empty).
func sortedSet(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	slices.Sort(v)
	v = slices.Compact(v)
	out := make([]string, len(v))
	copy(out, v)
	return out
}

// ---------------------------------------------------------------------------
// Lexer

type tokKind uint8

const (
	tkWord     tokKind = iota + 1 // unquoted identifier or keyword
	tkQuoted                      // "quoted identifier" or U&"identifier"
	tkString                      // any string literal, including dollar-quoted
	tkNumber                      // numeric literal
	tkParam                       // $1
	tkLParen                      // (
	tkRParen                      // )
	tkLBracket                    // [
	tkRBracket                    // ]
	tkComma                       // ,
	tkSemi                        // ;
	tkDot                         // .
	tkStar                        // *
	tkOp                          // any other operator or punctuation byte
)

// Flags of tkQuoted tokens (stored in token.kw).
const (
	qfClosed  = 1 << iota // the closing quote is present
	qfDoubled             // contains "" (an escaped quote)
	qfUnicode             // U&"..." form
)

type token struct {
	pos  int
	n    uint32 // length in bytes, saturated at math.MaxUint32
	kind tokKind
	kw   uint8 // keyword id for tkWord, qf* flags for tkQuoted
}

func mkTok(start, end int, kind tokKind, kw uint8) token {
	n := end - start
	if n > math.MaxUint32 {
		// Only the first bytes of a token this long are ever looked at
		// (identifiers are truncated to 63 bytes), so saturating is harmless.
		n = math.MaxUint32
		kw &^= qfClosed
	}
	return token{pos: start, n: uint32(n), kind: kind, kw: kw}
}

func (t token) end() int { return t.pos + int(t.n) }

func (t token) text(s string) string { return s[t.pos:t.end()] }

// Character classes.
const (
	ccIdentStart = 1 << iota // may start an identifier
	ccIdentCont              // may continue an identifier
	ccDigit
	ccSpace
)

var charClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c >= 0x80:
			t[c] = ccIdentStart | ccIdentCont
		case c >= '0' && c <= '9':
			t[c] = ccDigit | ccIdentCont
		case c == '$':
			t[c] = ccIdentCont
		case c == ' ', c == '\t', c == '\n', c == '\r', c == '\f', c == '\v':
			t[c] = ccSpace
		}
	}
	return t
}()

// tokenize appends the tokens of s to toks. Whitespace and comments produce no
// tokens. It never fails: unterminated constructs extend to the end of s.
func tokenize(s string, toks []token) []token {
	n := len(s)
	i := 0
	for i < n {
		c := s[i]
		cc := charClass[c]
		start := i
		if cc&ccSpace != 0 {
			i++
			continue
		}
		if cc&ccIdentStart != 0 {
			if i+1 < n {
				switch s[i+1] {
				case '\'':
					switch c {
					case 'e', 'E':
						i = scanEString(s, i+2)
						toks = append(toks, mkTok(start, i, tkString, 0))
						continue
					case 'b', 'B', 'x', 'X', 'n', 'N':
						i = scanString(s, i+2)
						toks = append(toks, mkTok(start, i, tkString, 0))
						continue
					}
				case '&':
					if (c == 'u' || c == 'U') && i+2 < n {
						if s[i+2] == '\'' {
							i = scanString(s, i+3)
							toks = append(toks, mkTok(start, i, tkString, 0))
							continue
						}
						if s[i+2] == '"' {
							var fl uint8
							i, fl = scanQuoted(s, i+3)
							toks = append(toks, mkTok(start, i, tkQuoted, fl|qfUnicode))
							continue
						}
					}
				}
			}
			i++
			for i < n && charClass[s[i]]&ccIdentCont != 0 {
				i++
			}
			toks = append(toks, mkTok(start, i, tkWord, lookupKeyword(s[start:i])))
			continue
		}
		if cc&ccDigit != 0 {
			i = scanNumber(s, i)
			toks = append(toks, mkTok(start, i, tkNumber, 0))
			continue
		}
		kind := tkOp
		switch c {
		case '"':
			var fl uint8
			i, fl = scanQuoted(s, i+1)
			toks = append(toks, mkTok(start, i, tkQuoted, fl))
			continue
		case '\'':
			i = scanString(s, i+1)
			toks = append(toks, mkTok(start, i, tkString, 0))
			continue
		case '-':
			if i+1 < n && s[i+1] == '-' {
				i += 2
				for i < n && s[i] != '\n' && s[i] != '\r' {
					i++
				}
				continue
			}
		case '/':
			if i+1 < n && s[i+1] == '*' {
				i = skipBlockComment(s, i+2)
				continue
			}
		case '.':
			if i+1 < n && charClass[s[i+1]]&ccDigit != 0 {
				i = scanNumber(s, i)
				toks = append(toks, mkTok(start, i, tkNumber, 0))
				continue
			}
			kind = tkDot
		case '$':
			if i+1 < n && charClass[s[i+1]]&ccDigit != 0 {
				i += 2
				for i < n && charClass[s[i]]&ccDigit != 0 {
					i++
				}
				toks = append(toks, mkTok(start, i, tkParam, 0))
				continue
			}
			if end, ok := scanDollar(s, i); ok {
				i = end
				toks = append(toks, mkTok(start, i, tkString, 0))
				continue
			}
		case '(':
			kind = tkLParen
		case ')':
			kind = tkRParen
		case '[':
			kind = tkLBracket
		case ']':
			kind = tkRBracket
		case ',':
			kind = tkComma
		case ';':
			kind = tkSemi
		case '*':
			kind = tkStar
		}
		i++
		toks = append(toks, mkTok(start, i, kind, 0))
	}
	return toks
}

// scanString scans a standard-conforming string body starting after the
// opening quote; a doubled quote is an escaped quote. It returns the index after
// the closing quote.
func scanString(s string, i int) int {
	for {
		j := strings.IndexByte(s[i:], '\'')
		if j < 0 {
			return len(s)
		}
		i += j + 1
		if i < len(s) && s[i] == '\'' {
			i++
			continue
		}
		return i
	}
}

// scanEString scans an E'...' body, where a backslash escapes the next byte.
func scanEString(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case '\\':
			i += 2
		case '\'':
			if i+1 < len(s) && s[i+1] == '\'' {
				i += 2
				continue
			}
			return i + 1
		default:
			i++
		}
	}
	return len(s)
}

// scanQuoted scans a quoted identifier body starting after the opening quote.
func scanQuoted(s string, i int) (int, uint8) {
	var fl uint8
	for {
		j := strings.IndexByte(s[i:], '"')
		if j < 0 {
			return len(s), fl
		}
		i += j + 1
		if i < len(s) && s[i] == '"' {
			fl |= qfDoubled
			i++
			continue
		}
		return i, fl | qfClosed
	}
}

// skipBlockComment skips a (possibly nested) block comment whose opening /*
// ends just before i.
func skipBlockComment(s string, i int) int {
	depth := 1
	for i+1 < len(s) {
		switch {
		case s[i] == '/' && s[i+1] == '*':
			depth++
			i += 2
		case s[i] == '*' && s[i+1] == '/':
			i += 2
			if depth--; depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return len(s)
}

// scanDollar scans a dollar-quoted string starting at the '$' at i. ok is
// false if no valid opening delimiter starts there.
func scanDollar(s string, i int) (end int, ok bool) {
	j := i + 1
	if j < len(s) && s[j] != '$' {
		if charClass[s[j]]&ccIdentStart == 0 {
			return 0, false
		}
		for j < len(s) && charClass[s[j]]&(ccIdentStart|ccDigit) != 0 {
			j++
		}
	}
	if j >= len(s) || s[j] != '$' {
		return 0, false
	}
	delim := s[i : j+1]
	body := j + 1
	k := strings.Index(s[body:], delim)
	if k < 0 {
		return len(s), true
	}
	return body + k + len(delim), true
}

// scanNumber scans a numeric literal starting at i (a digit, or '.' followed by a digit).
func scanNumber(s string, i int) int {
	n := len(s)
	if s[i] == '0' && i+2 < n {
		switch s[i+1] {
		case 'x', 'X', 'o', 'O', 'b', 'B':
			if isHexDigit(s[i+2]) {
				i += 2
				for i < n && (isHexDigit(s[i]) || s[i] == '_') {
					i++
				}
				return i
			}
		}
	}
	for i < n && (charClass[s[i]]&ccDigit != 0 || s[i] == '_') {
		i++
	}
	if i < n && s[i] == '.' && !(i+1 < n && s[i+1] == '.') {
		i++
		for i < n && (charClass[s[i]]&ccDigit != 0 || s[i] == '_') {
			i++
		}
	}
	if i < n && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < n && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < n && charClass[s[j]]&ccDigit != 0 {
			i = j
			for i < n && charClass[s[i]]&ccDigit != 0 {
				i++
			}
		}
	}
	return i
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// ---------------------------------------------------------------------------
// Keywords

const (
	kwNone          = iota
	kwReservedOther // a reserved keyword with no role of its own here
	kwAfter
	kwAlter
	kwAs
	kwBefore
	kwBinary
	kwConcurrently
	kwCopy
	kwDelete
	kwDistinct
	kwDo
	kwDrop
	kwExcept
	kwExists
	kwExtract
	kwFetch
	kwFor
	kwForeign
	kwFrom
	kwGlobal
	kwGroup
	kwHaving
	kwIf
	kwInsert
	kwIntersect
	kwInto
	kwIs
	kwJoin
	kwKey
	kwLateral
	kwLimit
	kwLocal
	kwMaterialized
	kwMerge
	kwNot
	kwOf
	kwOffset
	kwOn
	kwOnly
	kwOr
	kwOrder
	kwOverlay
	kwPosition
	kwRecursive
	kwRefresh
	kwRename
	kwReturning
	kwRows
	kwSelect
	kwSet
	kwSubstring
	kwTable
	kwTemp
	kwTemporary
	kwThen
	kwTo
	kwTrim
	kwTruncate
	kwUnion
	kwUnlogged
	kwUpdate
	kwUsing
	kwValues
	kwView
	kwWhere
	kwWindow
	kwWith
	kwCount
)

// kwReserved marks keywords that PostgreSQL does not accept as an unquoted
// table name (reserved and type/function-name keywords).
var kwReserved = func() (r [kwCount]bool) {
	for _, k := range []int{kwReservedOther, kwAs, kwBinary, kwConcurrently, kwDistinct, kwDo,
		kwExcept, kwFetch, kwFor, kwForeign, kwFrom, kwGroup, kwHaving, kwIntersect, kwInto,
		kwIs, kwJoin, kwLateral, kwLimit, kwNot, kwOffset, kwOn, kwOnly, kwOr, kwOrder,
		kwReturning, kwSelect, kwTable, kwThen, kwTo, kwUnion, kwUsing, kwWhere, kwWindow, kwWith} {
		r[k] = true
	}
	return r
}()

// lookupKeyword returns the keyword id of an unquoted word (case-insensitive).
func lookupKeyword(w string) uint8 {
	if len(w) < 2 || len(w) > 17 {
		return kwNone
	}
	var buf [17]byte
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	switch string(buf[:len(w)]) {
	case "after":
		return kwAfter
	case "alter":
		return kwAlter
	case "as":
		return kwAs
	case "before":
		return kwBefore
	case "binary":
		return kwBinary
	case "concurrently":
		return kwConcurrently
	case "copy":
		return kwCopy
	case "delete":
		return kwDelete
	case "distinct":
		return kwDistinct
	case "do":
		return kwDo
	case "drop":
		return kwDrop
	case "except":
		return kwExcept
	case "exists":
		return kwExists
	case "extract":
		return kwExtract
	case "fetch":
		return kwFetch
	case "for":
		return kwFor
	case "foreign":
		return kwForeign
	case "from":
		return kwFrom
	case "global":
		return kwGlobal
	case "group":
		return kwGroup
	case "having":
		return kwHaving
	case "if":
		return kwIf
	case "insert":
		return kwInsert
	case "intersect":
		return kwIntersect
	case "into":
		return kwInto
	case "is":
		return kwIs
	case "join":
		return kwJoin
	case "key":
		return kwKey
	case "lateral":
		return kwLateral
	case "limit":
		return kwLimit
	case "local":
		return kwLocal
	case "materialized":
		return kwMaterialized
	case "merge":
		return kwMerge
	case "not":
		return kwNot
	case "of":
		return kwOf
	case "offset":
		return kwOffset
	case "on":
		return kwOn
	case "only":
		return kwOnly
	case "or":
		return kwOr
	case "order":
		return kwOrder
	case "overlay":
		return kwOverlay
	case "position":
		return kwPosition
	case "recursive":
		return kwRecursive
	case "refresh":
		return kwRefresh
	case "rename":
		return kwRename
	case "returning":
		return kwReturning
	case "rows":
		return kwRows
	case "select":
		return kwSelect
	case "set":
		return kwSet
	case "substring":
		return kwSubstring
	case "table":
		return kwTable
	case "temp":
		return kwTemp
	case "temporary":
		return kwTemporary
	case "then":
		return kwThen
	case "to":
		return kwTo
	case "trim":
		return kwTrim
	case "truncate":
		return kwTruncate
	case "union":
		return kwUnion
	case "unlogged":
		return kwUnlogged
	case "update":
		return kwUpdate
	case "using":
		return kwUsing
	case "values":
		return kwValues
	case "view":
		return kwView
	case "where":
		return kwWhere
	case "window":
		return kwWindow
	case "with":
		return kwWith
	// Other reserved and type/function-name keywords (PostgreSQL 17).
	case "all", "analyse", "analyze", "and", "any", "array", "asc", "asymmetric",
		"both", "case", "cast", "check", "collate", "column", "constraint", "create",
		"current_catalog", "current_date", "current_role", "current_time",
		"current_timestamp", "current_user", "default", "deferrable", "desc", "else",
		"end", "false", "grant", "in", "initially", "leading", "localtime",
		"localtimestamp", "null", "placing", "primary", "references", "session_user",
		"some", "symmetric", "system_user", "trailing", "true", "unique", "user",
		"variadic", "when",
		"authorization", "collation", "cross", "current_schema", "freeze", "full",
		"ilike", "inner", "isnull", "left", "like", "natural", "notnull", "outer",
		"overlaps", "right", "similar", "tablesample", "verbose":
		return kwReservedOther
	}
	return kwNone
}

// ---------------------------------------------------------------------------
// Identifiers

// maxIdentLen is NAMEDATALEN-1: PostgreSQL truncates longer identifiers.
const maxIdentLen = 63

// identValue returns the normalised name of the identifier token toks[idx].
func identValue(s string, toks []token, idx int) string {
	t := toks[idx]
	var v string
	switch t.kind {
	case tkWord:
		v = t.text(s)
		if len(v) > maxIdentLen {
			v = clipIdent(v) // before folding, which keeps byte offsets
		}
		return foldLower(v)
	case tkQuoted:
		start, end := t.pos+1, t.end()
		if t.kw&qfUnicode != 0 {
			start = t.pos + 3
		}
		if t.kw&qfClosed != 0 {
			end--
		}
		if start > end {
			return ""
		}
		v = s[start:end]
		if t.kw&qfDoubled != 0 {
			v = strings.ReplaceAll(v, `""`, `"`)
		}
		if t.kw&qfUnicode != 0 {
			esc := byte('\\')
			if idx+2 < len(toks) && toks[idx+1].kind == tkWord && toks[idx+2].kind == tkString &&
				strings.EqualFold(toks[idx+1].text(s), "uescape") {
				if lit := toks[idx+2].text(s); len(lit) == 3 && lit[0] == '\'' && lit[2] == '\'' {
					esc = lit[1]
				}
			}
			v = decodeUnicodeEscapes(v, esc)
		}
	default:
		return ""
	}
	if len(v) > maxIdentLen {
		v = clipIdent(v)
	}
	return v
}

// clipIdent truncates v to maxIdentLen bytes at a UTF-8 character boundary,
// as PostgreSQL's truncate_identifier does.
func clipIdent(v string) string {
	cut := maxIdentLen
	for cut > 0 && v[cut]&0xC0 == 0x80 {
		cut--
	}
	return v[:cut]
}

// foldLower lower-cases ASCII letters, as PostgreSQL does for unquoted identifiers.
func foldLower(w string) string {
	for i := 0; i < len(w); i++ {
		if c := w[i]; c >= 'A' && c <= 'Z' {
			b := []byte(w)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return w
}

// decodeUnicodeEscapes decodes the escapes of a U&"..." identifier
// (esc esc, esc XXXX, esc +XXXXXX, with UTF-16 surrogate pairs). On malformed
// input, which PostgreSQL rejects, v is returned unchanged.
func decodeUnicodeEscapes(v string, esc byte) string {
	if strings.IndexByte(v, esc) < 0 {
		return v
	}
	var b strings.Builder
	b.Grow(len(v))
	pendingHigh := rune(0)
	for i := 0; i < len(v); {
		c := v[i]
		if c != esc {
			if pendingHigh != 0 {
				return v
			}
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(v) && v[i+1] == esc {
			if pendingHigh != 0 {
				return v
			}
			b.WriteByte(esc)
			i += 2
			continue
		}
		digits, j := 4, i+1
		if j < len(v) && v[j] == '+' {
			digits, j = 6, j+1
		}
		if j+digits > len(v) {
			return v
		}
		r := rune(0)
		for _, d := range []byte(v[j : j+digits]) {
			var x byte
			switch {
			case d >= '0' && d <= '9':
				x = d - '0'
			case d >= 'a' && d <= 'f':
				x = d - 'a' + 10
			case d >= 'A' && d <= 'F':
				x = d - 'A' + 10
			default:
				return v
			}
			r = r<<4 | rune(x)
		}
		i = j + digits
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if pendingHigh != 0 {
				return v
			}
			pendingHigh = r
			continue
		case r >= 0xDC00 && r <= 0xDFFF:
			if pendingHigh == 0 {
				return v
			}
			r = 0x10000 + (pendingHigh-0xD800)<<10 + (r - 0xDC00)
			pendingHigh = 0
		case pendingHigh != 0 || r == 0 || r > 0x10FFFF:
			return v
		}
		b.WriteRune(r)
	}
	if pendingHigh != 0 {
		return v
	}
	return b.String()
}

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

func (w *walker) reset() {
	w.fs = append(w.fs[:0], frame{cte: -1})
	clear(w.ctes)
	w.ctes = w.ctes[:0]
	w.cteActive = 0
	w.cteMap = nil
	w.pendFrom, w.pendCTE, w.pendCTEIdx, w.copyFrom = -1, -1, -1, -1
}

func (w *walker) run() {
	w.reset()
	n := len(w.toks)
	for i := 0; i < n; {
		switch w.toks[i].kind {
		case tkLParen, tkLBracket:
			i = w.open(i)
		case tkRParen, tkRBracket:
			w.close()
			i++
		case tkSemi:
			w.reset()
			i++
		case tkComma:
			i = w.comma(i)
		case tkWord:
			i = w.word(i)
		default:
			i++
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
			// SELECT ... INTO [TEMP | UNLOGGED ...] [TABLE] name
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

	case kwAlter:
		j := i + 1
		if w.isKw(j, kwForeign) {
			j++
		}
		if !w.isKw(j, kwTable) {
			return i + 1
		}
		j++
		if w.isKw(j, kwIf) && w.isKw(j+1, kwExists) {
			j += 2
		}
		if w.isKw(j, kwOnly) {
			j++
		}
		name, _, k, ok := w.qualName(j)
		if !ok {
			return j
		}
		if w.isKind(k, tkStar) {
			k++
		}
		w.addWrite(name)
		if w.isKw(k, kwRename) && w.isKw(k+1, kwTo) {
			// The new name now denotes the table's contents too.
			if name2, _, k2, ok := w.qualName(k + 2); ok {
				w.addWrite(name2)
				return k2
			}
		}
		return k

	case kwDrop:
		j := i + 1
		switch {
		case w.isKw(j, kwTable), w.isKw(j, kwView):
			j++
		case w.isKw(j, kwForeign) && w.isKw(j+1, kwTable), w.isKw(j, kwMaterialized) && w.isKw(j+1, kwView):
			j += 2
		default:
			return i + 1
		}
		if w.isKw(j, kwIf) && w.isKw(j+1, kwExists) {
			j += 2
		}
		next, _ := w.nameList(j)
		return next

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
