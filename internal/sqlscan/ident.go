package sqlscan

import "strings"

// maxIdentLen is NAMEDATALEN-1: PostgreSQL truncates longer identifiers.
const maxIdentLen = 63

// NormTable returns the generation name of a table reference as written in SQL of dialect d:
// the last component of a possibly schema-qualified name ("public"."Users" -> Users,
// public.users -> users, "a.b" (one quoted identifier containing a dot) -> a.b),
// unquoted identifiers folded to lower case as PostgreSQL does, quoted ones kept exactly.
// Dropping the schema over-approximates (two schemas' tables of one name share a generation), which is safe.
//
// Like PostgreSQL, identifiers longer than 63 bytes are truncated, and U&"..."
// identifiers have their Unicode escapes decoded. A string that does not start
// with an identifier yields "". For the zero Dialect every name is
// AllTables, which every table's entries depend on.
func NormTable(d Dialect, name string) string {
	t, _ := tableRef(d, name)
	return t
}

// TableName is NormTable for a name given alone, as in an API or a
// configuration: it reports false unless the whole of name is one table
// reference, so that "my-view" or "t; x" is refused rather than read as "my"
// or "t".
func TableName(d Dialect, name string) (string, bool) {
	t, whole := tableRef(d, name)
	return t, whole && t != ""
}

// tableRef returns NormTable's answer and whether the reference was all of
// name.
func tableRef(d Dialect, name string) (string, bool) {
	if !d.known() {
		return AllTables, true
	}
	var buf [8]token
	toks := tokenize(d, name, buf[:0])
	if len(toks) == 0 || (toks[0].kind != tkWord && toks[0].kind != tkQuoted) {
		return "", false
	}
	last, k := 0, 1
	for k+1 < len(toks) && toks[k].kind == tkDot && (toks[k+1].kind == tkWord || toks[k+1].kind == tkQuoted) {
		last = k + 1
		k += 2
	}
	return identValue(d, name, toks, last), k == len(toks)
}

// identValue returns the normalised name of the identifier token toks[idx]
// of a statement of dialect d.
func identValue(d Dialect, s string, toks []token, idx int) string {
	switch d {
	case SQLite:
		return sqliteIdent(s, toks[idx])
	case MySQL:
		return mysqlIdent(s, toks[idx])
	}
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
		v = quotedValue(s, toks, idx)
	default:
		return ""
	}
	if len(v) > maxIdentLen {
		v = clipIdent(v)
	}
	return v
}

// sqliteIdent returns the normalised name of a SQLite identifier token:
// unquoted, and folded to lower case whether quoted or not, since SQLite
// compares table names without regard to ASCII case. A string literal
// where a name is expected names a table too (SQLite's fallback).
func sqliteIdent(s string, t token) string {
	v := t.text(s)
	switch t.kind {
	case tkWord:
		return foldLower(v)
	case tkQuoted, tkString:
		if t.kind == tkString && v[0] != '\'' {
			return "" // a blob
		}
		q := v[0]
		v = v[1:]
		if q == '[' {
			v = strings.TrimSuffix(v, "]")
		} else {
			if len(v) > 0 && v[len(v)-1] == q && (t.kind == tkString || t.kw&qfClosed != 0) {
				v = v[:len(v)-1]
			}
			v = strings.ReplaceAll(v, string([]byte{q, q}), string(q))
		}
		return foldLower(v)
	}
	return ""
}

// mysqlIdent returns the normalised name of a MySQL identifier token:
// unquoted, and folded to lower case (see MySQL), non-ASCII letters too,
// as lower_case_table_names = 1 folds them.
func mysqlIdent(s string, t token) string {
	v := t.text(s)
	switch t.kind {
	case tkWord:
		return strings.ToLower(v)
	case tkQuoted:
		v = v[1:]
		if t.kw&qfClosed != 0 {
			v = v[:len(v)-1]
		}
		if t.kw&qfDoubled != 0 {
			v = strings.ReplaceAll(v, "``", "`")
		}
		return strings.ToLower(v)
	}
	return ""
}

// quotedValue returns the name of the quoted identifier toks[idx], before
// truncation.
func quotedValue(s string, toks []token, idx int) string {
	t := toks[idx]
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
	v := s[start:end]
	if t.kw&qfDoubled != 0 {
		v = strings.ReplaceAll(v, `""`, `"`)
	}
	if t.kw&qfUnicode != 0 {
		v = decodeUnicodeEscapes(v, uescape(s, toks, idx))
	}
	return v
}

// uescape returns the escape character of the U&"..." identifier
// toks[idx]: the one of a UESCAPE 'c' clause after it, or a backslash.
func uescape(s string, toks []token, idx int) byte {
	if idx+2 < len(toks) && toks[idx+1].kind == tkWord && toks[idx+2].kind == tkString &&
		strings.EqualFold(toks[idx+1].text(s), "uescape") {
		if lit := toks[idx+2].text(s); len(lit) == 3 && lit[0] == '\'' && lit[2] == '\'' {
			return lit[1]
		}
	}
	return '\\'
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
	high := rune(0) // a UTF-16 high surrogate waiting for its low half
	for i := 0; i < len(v); {
		if v[i] != esc || i+1 < len(v) && v[i+1] == esc {
			if high != 0 {
				return v
			}
			b.WriteByte(v[i]) // a byte as it is, or esc esc: one esc
			if v[i] == esc {
				i++
			}
			i++
			continue
		}
		r, next, ok := escapedRune(v, i+1)
		if !ok {
			return v
		}
		i = next
		if r, high, ok = pairSurrogates(high, r); !ok {
			return v
		}
		if high == 0 {
			b.WriteRune(r)
		}
	}
	if high != 0 {
		return v
	}
	return b.String()
}

// escapedRune decodes the code point of an escape whose esc ends just
// before v[j]: XXXX or +XXXXXX in hexadecimal. It returns the index after
// the escape; ok is false if the digits are missing or not hexadecimal.
func escapedRune(v string, j int) (r rune, next int, ok bool) {
	digits := 4
	if j < len(v) && v[j] == '+' {
		digits, j = 6, j+1
	}
	if j+digits > len(v) {
		return 0, j, false
	}
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
			return 0, j, false
		}
		r = r<<4 | rune(x)
	}
	return r, j + digits, true
}

// pairSurrogates takes the code point r of an escape, given the high
// surrogate before it (or 0). It returns the character to write (with
// pending 0), or the high surrogate r to keep (pending != 0); ok is false
// for a surrogate out of its pair, NUL or a code point past Unicode.
func pairSurrogates(high, r rune) (out, pending rune, ok bool) {
	switch {
	case r >= 0xD800 && r <= 0xDBFF:
		return 0, r, high == 0
	case r >= 0xDC00 && r <= 0xDFFF:
		if high == 0 {
			return 0, 0, false
		}
		return 0x10000 + (high-0xD800)<<10 + (r - 0xDC00), 0, true
	case high != 0 || r == 0 || r > 0x10FFFF:
		return 0, 0, false
	}
	return r, 0, true
}
