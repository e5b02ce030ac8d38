// Package sqlscan finds the tables a PostgreSQL statement reads and writes,
// for generation-based cache invalidation, and tells which statements must
// never be cached (catalog reads) or change the schema (DDL).
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
// DDL whose effect on names cannot be listed (DROP SCHEMA, CREATE OR REPLACE
// FUNCTION, DROP ... CASCADE, ...) sets Result.Schema and writes AllTables.
//
// What the text cannot show is not reported: writes done by functions,
// procedures (CALL), DO blocks, EXECUTE of prepared statements, triggers,
// rules, ON DELETE/UPDATE CASCADE foreign keys, TRUNCATE ... CASCADE on
// referencing tables and inserts into a child
// table seen through its inheritance parent; a view is reported under its
// own name, not its base tables. Strings are lexed as with
// standard_conforming_strings = on (the default since PostgreSQL 9.1).
// An oracle test module (oracle/) checks all this against PostgreSQL's own
// parser.
package sqlscan

import (
	"slices"
	"strings"
)

// AllTables is the name written by a statement whose affected tables cannot
// be named (Result.Schema). A caller that makes every cached entry depend on
// it invalidates everything by bumping it. A real table named "*" shares
// its generation, which only costs misses.
const AllTables = "*"

// Result is what Analyze finds in a statement string.
type Result struct {
	// Reads and Writes are the tables read and written, normalised with
	// NormTable, sorted and free of duplicates; an empty list is nil.
	Reads, Writes []string
	// Catalog: the statement reads the system catalogs or session state
	// (pg_catalog, information_schema, pg_* relations and functions,
	// to_regclass, current_user, SHOW, ...). Its result can change without
	// any table write, so it must never be cached.
	Catalog bool
	// DDL: the statement changes the schema (CREATE, ALTER, DROP, GRANT,
	// COMMENT, ...; SELECT INTO). A caller forgets what it knows of it.
	DDL bool
	// Schema: the statement may change what tables it cannot name return
	// (schema-level DDL, function or type changes, DROP ... CASCADE; not
	// TRUNCATE ... CASCADE, whose tables the foreign keys name).
	// The caller must treat every table as written; Writes then holds
	// AllTables.
	Schema bool
}

// Analyze returns the tables a PostgreSQL statement string reads and writes
// and how it must be treated. It is safe for concurrent use.
//
// The returned strings may share memory with query.
func Analyze(query string) Result {
	// PostgreSQL reads a query string as a C string: nothing after a NUL
	// byte is part of the statement.
	if i := strings.IndexByte(query, 0); i >= 0 {
		query = query[:i]
	}
	w := walkerPool.Get().(*walker)
	w.s = query
	if est := min(len(query)/2, maxPresizeTokens); cap(w.toks) < est {
		w.toks = make([]token, 0, est) // avoid repeated growth on long inputs
	}
	w.toks = tokenize(query, w.toks[:0])
	w.run()
	if w.schema {
		w.writes = append(w.writes, AllTables)
	}
	r := Result{Reads: sortedSet(w.reads), Writes: sortedSet(w.writes),
		Catalog: w.catalog, DDL: w.ddl, Schema: w.schema}
	w.release()
	walkerPool.Put(w)
	return r
}

// Tables returns the tables a PostgreSQL statement reads and the tables it
// writes, as Analyze does.
func Tables(query string) (read, written []string) {
	r := Analyze(query)
	return r.Reads, r.Writes
}

// NormTable returns the generation name of a table reference as written in SQL:
// the last component of a possibly schema-qualified name ("public"."Users" -> Users,
// public.users -> users, "a.b" (one quoted identifier containing a dot) -> a.b),
// unquoted identifiers folded to lower case as PostgreSQL does, quoted ones kept exactly.
// Dropping the schema over-approximates (two schemas' tables of one name share a generation), which is safe.
//
// Like PostgreSQL, identifiers longer than 63 bytes are truncated, and U&"..."
// identifiers have their Unicode escapes decoded. A string that does not start
// with an identifier yields "".
func NormTable(name string) string {
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
