package sqlscan

import (
	"math"
	"strings"
)

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

// Token is one lexical token of a statement: its kind and the byte range
// [Pos, End) of its text. Whitespace and comments are not tokens. It is for
// callers that look at statement structure the analyser does not report.
type Token struct {
	Kind     TokenKind
	Pos, End int
}

// TokenKind classifies a Token.
type TokenKind uint8

// The kinds of Token. Literals, operators and other punctuation are TokOther.
const (
	TokOther  TokenKind = iota
	TokWord             // unquoted identifier or keyword
	TokQuoted           // "quoted identifier"
	TokSemi             // ;
	TokLParen           // (
	TokRParen           // )
)

// Lex returns the tokens of query, lexed as Analyze lexes it.
func Lex(query string) []Token {
	toks := tokenize(query, nil)
	out := make([]Token, len(toks))
	for i, t := range toks {
		k := TokOther
		switch t.kind {
		case tkWord:
			k = TokWord
		case tkQuoted:
			k = TokQuoted
		case tkSemi:
			k = TokSemi
		case tkLParen:
			k = TokLParen
		case tkRParen:
			k = TokRParen
		}
		out[i] = Token{Kind: k, Pos: t.pos, End: t.end()}
	}
	return out
}
