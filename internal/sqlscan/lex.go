package sqlscan

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
	TokQuoted           // "quoted identifier" (SQLite: also [this] and `this`)
	TokSemi             // ;
	TokLParen           // (
	TokRParen           // )
)

// Lex returns the tokens of a statement string of dialect d, lexed as
// Analyze lexes it. For the zero Dialect it returns none: a caller that
// must stay safe with it decides from Analyze, which reports such a
// statement as unknown.
func Lex(d Dialect, query string) []Token {
	if !d.known() {
		return nil
	}
	toks := tokenize(d, query, nil)
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
