package sqlscan

import "strings"

// Kind is what the first keyword of a statement string says about it. It
// is told without lexing, since callers ask it of every query, cached or
// not; Analyze reads the rest.
type Kind uint8

// The kinds of statement. Only the leading white space and opening
// parentheses are skipped: a statement that starts with a comment is Other.
const (
	// Other is any other statement (CALL, DO, SET, EXECUTE, DDL, ...), and
	// every statement of the zero Dialect: it may write, or change session
	// state, where no analysis of its text looks.
	Other Kind = iota
	// Select is a single statement that starts with SELECT. It writes no
	// table that exists, since a data-modifying statement can hide only
	// under WITH (SELECT INTO creates its table), so a caller need not
	// analyse it for writes. A string with a semicolon
	// anywhere (simple protocol: "SELECT ...; UPDATE ...") may hold more
	// statements, and is Query.
	Select
	// Query is a statement that starts as a query: with WITH, VALUES,
	// TABLE or SHOW, or with SELECT in a string that may hold more
	// statements. What a WITH or a later statement writes, Analyze finds.
	Query
	// Write is a statement that starts with INSERT, UPDATE, DELETE or
	// MERGE. Analyze names the tables it writes.
	Write
)

// String returns the name of the kind.
func (k Kind) String() string {
	switch k {
	case Select:
		return "Select"
	case Query:
		return "Query"
	case Write:
		return "Write"
	}
	return "Other"
}

// IsQuery reports whether k is Select or Query: the statement starts as a
// query, not as a call, a utility statement or DDL.
func (k Kind) IsQuery() bool { return k == Select || k == Query }

// Classify returns the Kind of a statement string of dialect d by its
// first keyword. It is safe for concurrent use and does not allocate.
func Classify(d Dialect, query string) Kind {
	if !d.known() {
		return Other
	}
	query = strings.TrimLeft(query, " \t\r\n(")
	end := 0
	for end < len(query) && charClass[query[end]]&ccIdentCont != 0 {
		end++
	}
	switch lookupKeyword(query[:end]) {
	case kwSelect:
		if strings.IndexByte(query, ';') >= 0 {
			return Query
		}
		return Select
	case kwWith, kwValues, kwTable:
		return Query
	case kwInsert, kwUpdate, kwDelete, kwMerge:
		return Write
	case kwNone:
		if d == PostgreSQL && end == len("show") && strings.EqualFold(query[:end], "show") { // bytes: ASCII only
			return Query
		}
		if d != PostgreSQL && end == len("replace") && strings.EqualFold(query[:end], "replace") {
			return Write // REPLACE INTO
		}
		if d == MySQL && end == len("show") && strings.EqualFold(query[:end], "show") {
			return Query
		}
	}
	return Other
}
