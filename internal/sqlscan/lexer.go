package sqlscan

import (
	"math"
	"strings"
)

// This file splits a statement string into tokens as PostgreSQL's scan.l
// does for what matters here: words, quoted identifiers, strings of every
// kind, dollar quotes, nested comments, numbers and parameters.

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

// tokenize appends the tokens of s, a statement string of dialect d (a
// known one), to toks. Whitespace and comments produce no tokens. It never
// fails: unterminated constructs extend to the end of s.
func tokenize(d Dialect, s string, toks []token) []token {
	switch d {
	case SQLite:
		return tokenizeSQLite(s, toks)
	case MySQL:
		return tokenizeMySQL(s, toks)
	}
	return tokenizePostgres(s, toks)
}

// tokenizePostgres is tokenize for PostgreSQL.
//
// The tokens most statements are made of (words, quoted identifiers,
// numbers, one-byte punctuation) are lexed in line and the rest by
// lexOther: a call per token made tokenize 15% slower.
func tokenizePostgres(s string, toks []token) []token {
	for i := 0; i < len(s); {
		c, start := s[i], i
		var kind tokKind
		var flags uint8 // keyword id of a word, qf* flags of a quoted identifier
		switch cc := charClass[c]; {
		case cc&ccSpace != 0:
			i++
			continue
		case cc&ccIdentStart != 0 && !(i+1 < len(s) && (s[i+1] == '\'' || s[i+1] == '&')):
			i = scanWord(s, i+1)
			kind, flags = tkWord, lookupKeyword(s[start:i])
		case cc&ccDigit != 0:
			kind, i = tkNumber, scanNumber(s, i)
		case c == '"':
			kind = tkQuoted
			i, flags = scanQuoted(s, i+1, '"')
		case punctKind[c] != 0 && !(c == '.' && i+1 < len(s) && charClass[s[i+1]]&ccDigit != 0):
			kind, i = punctKind[c], i+1
		default:
			if kind, flags, i = lexOther(s, i); kind == 0 {
				continue // a comment
			}
		}
		toks = append(toks, mkTok(start, i, kind, flags))
	}
	return toks
}

// punctKind is the kind of the one-byte tokens that have one.
var punctKind = [256]tokKind{
	'(': tkLParen, ')': tkRParen, '[': tkLBracket, ']': tkRBracket,
	',': tkComma, ';': tkSemi, '.': tkDot, '*': tkStar,
}

// lexOther lexes the token that starts at s[i] when tokenize does not:
// a string or quoted identifier with a prefix (E'...', U&"...", ...) or
// the word that looked like one, a string, a parameter, a dollar-quoted
// string, a number that starts with '.', an operator byte; or a comment,
// for which kind is 0. end is the index after it.
func lexOther(s string, i int) (kind tokKind, flags uint8, end int) {
	c, next := s[i], byte(0)
	if i+1 < len(s) {
		next = s[i+1]
	}
	switch {
	case charClass[c]&ccIdentStart != 0:
		if kind, flags, end, ok := lexPrefixed(s, i); ok {
			return kind, flags, end
		}
		end = scanWord(s, i+1)
		return tkWord, lookupKeyword(s[i:end]), end
	case c == '\'':
		return tkString, 0, scanString(s, i+1)
	case c == '-' && next == '-':
		end = i + 2
		for end < len(s) && s[end] != '\n' && s[end] != '\r' {
			end++
		}
		return 0, 0, end
	case c == '/' && next == '*':
		return 0, 0, skipBlockComment(s, i+2)
	case c == '.' && charClass[next]&ccDigit != 0:
		return tkNumber, 0, scanNumber(s, i)
	case c == '$' && charClass[next]&ccDigit != 0:
		end = i + 2
		for end < len(s) && charClass[s[end]]&ccDigit != 0 {
			end++
		}
		return tkParam, 0, end
	case c == '$':
		if end, ok := scanDollar(s, i); ok {
			return tkString, 0, end
		}
	}
	return tkOp, 0, i + 1
}

// lexPrefixed lexes a string or quoted identifier whose prefix letter is
// s[i] (E'...', B'...', X'...', N'...', U&'...', U&"..."); ok is false if
// the letters there start a plain word.
func lexPrefixed(s string, i int) (kind tokKind, flags uint8, end int, ok bool) {
	c := s[i]
	switch {
	case s[i+1] == '\'' && (c == 'e' || c == 'E'):
		return tkString, 0, scanEString(s, i+2), true
	case s[i+1] == '\'' && strings.IndexByte("bBxXnN", c) >= 0:
		return tkString, 0, scanString(s, i+2), true
	case s[i+1] != '&' || c != 'u' && c != 'U' || i+2 >= len(s):
		return 0, 0, i, false
	case s[i+2] == '\'':
		return tkString, 0, scanString(s, i+3), true
	case s[i+2] == '"':
		end, flags = scanQuoted(s, i+3, '"')
		return tkQuoted, flags | qfUnicode, end, true
	}
	return 0, 0, i, false
}

// scanWord returns the index after the identifier characters from s[i] on.
func scanWord(s string, i int) int {
	for i < len(s) && charClass[s[i]]&ccIdentCont != 0 {
		i++
	}
	return i
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

// scanQuoted scans a quoted identifier body starting after the opening
// quote q, which a doubled q escapes.
func scanQuoted(s string, i int, q byte) (int, uint8) {
	var fl uint8
	for {
		j := strings.IndexByte(s[i:], q)
		if j < 0 {
			return len(s), fl
		}
		i += j + 1
		if i < len(s) && s[i] == q {
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

// tokenizeSQLite is tokenize for SQLite, as its tokenizer (tokenize.c)
// reads what matters here: identifiers quoted with "", “ (a doubled quote
// escapes it) or [] (nothing escapes), strings and X” blobs (a doubled
// quote escapes), parameters (?, ?NNN, :name, @name, $name), comments (--
// to the end of the line, /* */, which do not nest) and numbers. There are
// no E” strings, no dollar quotes and no U& identifiers.
//
// PostgreSQL's keywords that SQLite does not have (COPY, MERGE, ONLY, ...)
// are plain words: in SQLite they can name tables.
func tokenizeSQLite(s string, toks []token) []token {
	for i := 0; i < len(s); {
		c, start, next := s[i], i, byteAt(s, i+1)
		var kind tokKind
		var flags uint8
		switch cc := charClass[c]; {
		case cc&ccSpace != 0:
			i++
			continue
		case (c == 'x' || c == 'X') && next == '\'':
			kind, i = tkString, scanString(s, i+2)
		case cc&ccIdentStart != 0:
			i = scanWord(s, i+1)
			kind, flags = tkWord, lookupKeyword(s[start:i])
			if notSQLiteKeyword[flags] {
				flags = kwNone
			}
		case cc&ccDigit != 0, c == '.' && charClass[next]&ccDigit != 0:
			kind, i = tkNumber, scanNumber(s, i)
		case c == '"', c == '`':
			kind = tkQuoted
			i, flags = scanQuoted(s, i+1, c)
		case c == '[':
			kind, i = tkQuoted, len(s)
			if j := strings.IndexByte(s[start+1:], ']'); j >= 0 {
				i, flags = start+j+2, qfClosed
			}
		case c == '\'':
			kind, i = tkString, scanString(s, i+1)
		case c == '-' && next == '-':
			for i += 2; i < len(s) && s[i] != '\n'; i++ {
			}
			continue
		case c == '/' && next == '*':
			i = len(s)
			if j := strings.Index(s[start+2:], "*/"); j >= 0 {
				i = start + 2 + j + 2
			}
			continue
		case c == '?':
			for i++; i < len(s) && charClass[s[i]]&ccDigit != 0; i++ {
			}
			kind = tkParam
		case (c == ':' || c == '@' || c == '$') && charClass[next]&ccIdentCont != 0:
			kind, i = tkParam, scanSQLiteParam(s, i+1)
		case punctKind[c] != 0:
			kind, i = punctKind[c], i+1
		default:
			kind, i = tkOp, i+1
		}
		toks = append(toks, mkTok(start, i, kind, flags))
	}
	return toks
}

// scanSQLiteParam scans the name of a :, @ or $ parameter from i as
// SQLite's tokenizer does: identifier characters, "::", and a "(...)"
// suffix that runs to the next ")" (TCL's array syntax), quotes and all.
func scanSQLiteParam(s string, i int) int {
	for i < len(s) {
		switch c := s[i]; {
		case charClass[c]&ccIdentCont != 0:
			i++
		case c == ':' && i+1 < len(s) && s[i+1] == ':':
			i += 2
		case c == '(':
			for i++; i < len(s) && s[i] != ')' && charClass[s[i]]&ccSpace == 0; i++ {
			}
			if i < len(s) && s[i] == ')' {
				i++
			}
			return i
		default:
			return i
		}
	}
	return i
}

// notSQLiteKeyword marks the keywords the walk knows from PostgreSQL that
// SQLite does not have.
var notSQLiteKeyword = func() (m [256]bool) {
	for _, kw := range []uint8{kwCopy, kwMerge, kwTruncate, kwRefresh, kwOnly, kwLateral, kwFetch, kwUnlogged} {
		m[kw] = true
	}
	return m
}()

// tokenizeMySQL is tokenize for MySQL and MariaDB with the default
// sql_mode: identifiers in “ (a doubled backtick escapes it), which may
// start with a digit (1abc); strings in ” and "" where a backslash or a
// doubled quote escapes; comments from # or "-- " (a space or control
// character after the dashes) to the end of the line, and /* */, which do
// not nest, but whose content runs when they start /*! or /*M! (an
// optional version number follows); parameters ? and variables @name and
// @@name.
//
// PostgreSQL's keywords MySQL lacks (COPY, MERGE, ONLY, ...) are plain
// words that can name tables.
func tokenizeMySQL(s string, toks []token) []token {
	running := false // inside a /*! comment, whose */ ends it
	for i := 0; i < len(s); {
		c, start, next := s[i], i, byteAt(s, i+1)
		var kind tokKind
		var flags uint8
		if end, run, skipped := skipMySQLComment(s, i, running); skipped {
			i, running = end, run
			continue
		}
		switch cc := charClass[c]; {
		case (c == 'x' || c == 'X' || c == 'b' || c == 'B' || c == 'n' || c == 'N') && next == '\'':
			kind, i = tkString, scanMySQLString(s, i+2, '\'')
		case cc&ccIdentStart != 0, c == '$':
			i = scanWord(s, i+1)
			kind, flags = tkWord, lookupKeyword(s[start:i])
			if notMySQLKeyword[flags] {
				flags = kwNone
			}
			if flags == kwNone && strings.EqualFold(s[start:i], "straight_join") {
				flags = kwJoin
			}
		case cc&ccDigit != 0:
			kind, i = tkNumber, scanMySQLNumber(s, i)
			if i < len(s) && charClass[s[i]]&ccIdentCont != 0 {
				kind, i = tkWord, scanWord(s, i) // 1abc, 2024_01, 0o17: identifiers
			}
		case c == '.' && charClass[next]&ccDigit != 0 && (len(toks) == 0 || toks[len(toks)-1].kind != tkWord && toks[len(toks)-1].kind != tkQuoted):
			kind, i = tkNumber, scanNumber(s, i)
		case c == '`':
			kind = tkQuoted
			i, flags = scanQuoted(s, i+1, '`')
		case c == '\'', c == '"':
			kind, i = tkString, scanMySQLString(s, i+1, c)
		case c == '?':
			kind, i = tkParam, i+1
		case c == '@':
			i++
			if i < len(s) && s[i] == '@' {
				i++
			}
			switch {
			case i < len(s) && (s[i] == '`' || s[i] == '\'' || s[i] == '"'):
				i = scanMySQLString(s, i+1, s[i]) // @`name`
			default:
				i = scanWord(s, i)
			}
			kind = tkParam
		case punctKind[c] != 0:
			kind, i = punctKind[c], i+1
		default:
			kind, i = tkOp, i+1
		}
		toks = append(toks, mkTok(start, i, kind, flags))
	}
	return toks
}

// skipMySQLComment skips the white space or comment at i, or the end of
// a /*! comment (running: one is open), and reports the index after it and
// whether a /*! comment is open then; skipped is false for anything else.
func skipMySQLComment(s string, i int, running bool) (end int, stillRunning, skipped bool) {
	c, next := s[i], byteAt(s, i+1)
	switch {
	case charClass[c]&ccSpace != 0:
		return i + 1, running, true
	case c == '#', c == '-' && next == '-' && (i+2 >= len(s) || s[i+2] <= ' '):
		for i++; i < len(s) && s[i] != '\n'; i++ {
		}
		return i, running, true
	case c == '/' && next == '*':
		k := i + 2
		if k < len(s) && (s[k] == '!' || s[k] == 'M' && k+1 < len(s) && s[k+1] == '!') {
			// Its content runs: skip the marker and the version.
			if s[k] == 'M' {
				k++
			}
			for k++; k < len(s) && charClass[s[k]]&ccDigit != 0; k++ {
			}
			return k, true, true
		}
		if j := strings.Index(s[k:], "*/"); j >= 0 {
			return k + j + 2, running, true
		}
		return len(s), running, true
	case c == '*' && next == '/' && running:
		return i + 2, false, true
	}
	return i, running, false
}

// byteAt returns s[i], or 0 past its end.
func byteAt(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// scanMySQLNumber scans a MySQL number at i (a digit): digits, a fraction,
// an exponent, or 0x and 0b literals; no _ separators and no 0o.
func scanMySQLNumber(s string, i int) int {
	n := len(s)
	if s[i] == '0' && i+2 < n && (s[i+1] == 'x' || s[i+1] == 'b') {
		j := i + 2
		for j < n && (s[i+1] == 'x' && isHexDigit(s[j]) || s[i+1] == 'b' && (s[j] == '0' || s[j] == '1')) {
			j++
		}
		if j > i+2 {
			return j
		}
	}
	for i < n && charClass[s[i]]&ccDigit != 0 {
		i++
	}
	if i < n && s[i] == '.' {
		i++
		for i < n && charClass[s[i]]&ccDigit != 0 {
			i++
		}
	}
	if i < n && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < n && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < n && charClass[s[j]]&ccDigit != 0 {
			for i = j; i < n && charClass[s[i]]&ccDigit != 0; i++ {
			}
		}
	}
	return i
}

// scanMySQLString scans a MySQL string body starting after the opening
// quote q: a backslash escapes the next byte, a doubled quote is a quote.
func scanMySQLString(s string, i int, q byte) int {
	for i < len(s) {
		switch s[i] {
		case '\\':
			i += 2
		case q:
			if i+1 < len(s) && s[i+1] == q {
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

// notMySQLKeyword marks the keywords the walk knows from PostgreSQL that
// MySQL does not have.
var notMySQLKeyword = func() (m [256]bool) {
	for _, kw := range []uint8{kwCopy, kwMerge, kwRefresh, kwOnly, kwFetch, kwUnlogged} {
		m[kw] = true
	}
	return m
}()
