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

// Analyze returns the tables a statement string of dialect d reads and
// writes and how it must be treated. It is safe for concurrent use.
//
// For the zero Dialect it returns the answer that is safe whatever the
// statement: it reads and writes AllTables and is Catalog, DDL and Schema.
//
// The returned strings may share memory with query.
func Analyze(d Dialect, query string) Result {
	if !d.known() {
		return unknownStatement()
	}
	// PostgreSQL reads a query string as a C string: nothing after a NUL
	// byte is part of the statement. (SQLite's tokenizer refuses a NUL.)
	if i := strings.IndexByte(query, 0); i >= 0 && d == PostgreSQL {
		query = query[:i]
	}
	w := walkerPool.Get().(*walker)
	w.s, w.d = query, d
	if est := min(len(query)/2, maxPresizeTokens); cap(w.toks) < est {
		w.toks = make([]token, 0, est) // avoid repeated growth on long inputs
	}
	w.toks = tokenize(d, query, w.toks[:0])
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

// unknownStatement is the Result of a statement that was not read: it may
// read and write anything, so nothing of it is cached and everything it
// may write is invalidated. The lists are fresh: callers own them.
func unknownStatement() Result {
	return Result{Reads: []string{AllTables}, Writes: []string{AllTables},
		Catalog: true, DDL: true, Schema: true}
}

// Tables returns the tables a statement string of dialect d reads and the
// tables it writes, as Analyze does.
func Tables(d Dialect, query string) (read, written []string) {
	r := Analyze(d, query)
	return r.Reads, r.Writes
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
