package sqlscan

import (
	"slices"
	"testing"
)

func TestLex(t *testing.T) {
	const sql = `SELECT "a""b", f(x) /* (c) */ FROM t -- ;
; 'it''s' $1`
	want := []Token{
		{TokWord, 0, 6}, {TokQuoted, 7, 13}, {TokOther, 13, 14}, {TokWord, 15, 16},
		{TokLParen, 16, 17}, {TokWord, 17, 18}, {TokRParen, 18, 19}, {TokWord, 30, 34},
		{TokWord, 35, 36}, {TokSemi, 42, 43}, {TokOther, 44, 51}, {TokOther, 52, 54},
	}
	if got := Lex(PostgreSQL, sql); !slices.Equal(got, want) {
		t.Errorf("Lex(%q)\n got %v\nwant %v", sql, got, want)
	}
}
