package sqlscan

import (
	"bytes"
	"strings"
)

// This file recognises statements that read the system catalogs or session
// state. Their results change with DDL, SET or the connected role, which no
// table generation follows, so they are never cached. The test is a
// deliberate over-approximation:
//
//   - any relation whose name starts with pg_ (pg_class, pg_tables,
//     pg_stat_activity, ...), and any name qualified with pg_catalog,
//     information_schema or another pg_ schema (pg_toast, pg_temp);
//   - any call of a function whose name starts with pg_ (pg_get_viewdef,
//     pg_table_is_visible, pg_relation_size, ...), but pg_sleep* and the
//     advisory lock functions, which read no catalog;
//   - the catalog and session functions of catalogFuncs (to_regclass and the
//     other to_reg*, has_*_privilege, obj_description, format_type,
//     current_setting, ...), called or not;
//   - the object identifier types (regclass, ...), whose casts look names up;
//   - the SQL value functions CURRENT_USER, SESSION_USER, CURRENT_ROLE, USER,
//     SYSTEM_USER, CURRENT_SCHEMA and CURRENT_CATALOG: entries are shared by
//     every role and search_path that uses the same prefix;
//   - SHOW (in ddl.go).
//
// Functions that read other state (now(), random(), nextval()) are not
// catalog reads: a query opted into caching accepts their cached value.

// catalogFuncs are the names, besides pg_*, to_reg* and has_*_privilege,
// that read catalogs or session state.
var catalogFuncs = map[string]bool{
	"obj_description": true, "col_description": true, "shobj_description": true,
	"format_type": true, "current_setting": true, "current_schema": true,
	"current_schemas": true, "current_database": true, "current_query": true,
	"row_security_active": true, "current_user": true, "session_user": true,
	"current_role": true, "user": true, "system_user": true, "current_catalog": true,
	"regclass": true, "regtype": true, "regproc": true, "regprocedure": true,
	"regoper": true, "regoperator": true, "regnamespace": true, "regrole": true,
	"regconfig": true, "regdictionary": true, "regcollation": true,
}

// maxCatalogName bounds the names compared: PostgreSQL truncates longer ones.
const maxCatalogName = maxIdentLen

// catalogRef reports whether the identifier token at i names a catalog
// relation, schema or function, or session state.
func (w *walker) catalogRef(i int) bool {
	switch w.d {
	case SQLite:
		return w.sqliteCatalogRef(i)
	case MySQL:
		return w.mysqlCatalogRef(i)
	}
	t := w.toks[i]
	if i > 0 && w.toks[i-1].kind == tkDot && t.kind == tkWord {
		return false // a column or the last part of a qualified name: see addRead
	}
	var buf [maxCatalogName]byte
	var v []byte
	switch {
	case t.kind == tkWord && int(t.n) <= maxCatalogName:
		v = lowerInto(buf[:0], t.text(w.s))
	case t.kind == tkWord:
		v = lowerInto(buf[:0], t.text(w.s)[:maxCatalogName])
	case t.n < 4 || !strings.HasPrefix(w.s[t.pos+1:], "pg_") && !strings.HasPrefix(w.s[t.pos+1:], "information_schema"):
		return false // a quoted name
	default:
		v = []byte(identValue(w.d, w.s, w.toks, i))
	}
	next := tokKind(0)
	if i+1 < len(w.toks) {
		next = w.toks[i+1].kind
	}
	switch {
	case bytes.HasPrefix(v, []byte("pg_sleep")), bytes.HasPrefix(v, []byte("pg_advisory_")),
		bytes.HasPrefix(v, []byte("pg_try_advisory_")):
		return false // sleeps and advisory locks read no catalog
	case bytes.HasPrefix(v, []byte("pg_")):
		return next == tkLParen || next == tkDot // relations: see addRead
	case string(v) == "information_schema":
		return next == tkDot
	case bytes.HasPrefix(v, []byte("to_reg")),
		bytes.HasPrefix(v, []byte("has_")) && bytes.HasSuffix(v, []byte("_privilege")):
		return next == tkLParen
	}
	return catalogFuncs[string(v)]
}

// lowerInto appends the ASCII lower case of s to buf.
func lowerInto(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	return buf
}

// catalogSchema reports whether the qualifier token at i is pg_catalog,
// information_schema or another pg_ schema.
func (w *walker) catalogSchema(i int) bool {
	switch w.d {
	case SQLite:
		return false // main, temp and attached databases: sqliteCatalogRef looks at the names
	case MySQL:
		return mysqlCatalogSchemas[identValue(w.d, w.s, w.toks, i)]
	}
	t := w.toks[i]
	v := t.text(w.s)
	if t.kind == tkQuoted {
		if t.kw&qfUnicode != 0 {
			v = identValue(w.d, w.s, w.toks, i) // rare: allocates
		} else {
			v = v[1:]
		}
		return strings.HasPrefix(v, "pg_") || strings.HasPrefix(v, `information_schema"`) || v == "information_schema"
	}
	return len(v) >= 3 && strings.EqualFold(v[:3], "pg_") || strings.EqualFold(v, "information_schema")
}

// sqliteCatalogRef is catalogRef for SQLite: any name starting with sqlite_
// (sqlite_schema, sqlite_master, sqlite_temp_schema, sqlite_sequence, which
// inserts change without naming it, sqlite_stat1, sqlite_version(), ...),
// the table-valued pragma functions (pragma_table_info(...)), and the
// functions that read the connection's state.
func (w *walker) sqliteCatalogRef(i int) bool {
	v := identValue(w.d, w.s, w.toks, i)
	if strings.HasPrefix(v, "sqlite_") || strings.HasPrefix(v, "pragma_") {
		return true // main.sqlite_master, pragma_table_list (called or not), ...
	}
	call := i+1 < len(w.toks) && w.toks[i+1].kind == tkLParen
	return call && sqliteSessionFuncs[v] && !(i > 0 && w.toks[i-1].kind == tkDot)
}

// sqliteSessionFuncs read the state of the connection, not of tables.
var sqliteSessionFuncs = map[string]bool{
	"changes": true, "total_changes": true, "last_insert_rowid": true,
}

// mysqlCatalogSchemas are MySQL's and MariaDB's system databases.
var mysqlCatalogSchemas = map[string]bool{
	"information_schema": true, "mysql": true, "performance_schema": true, "sys": true,
}

// mysqlCatalogRef is catalogRef for MySQL: a system database named as a
// qualifier (information_schema.tables) and the functions that read the
// session or the server; SHOW and DESCRIBE are statements (ddl.go), and
// variables (@x, @@x) tokens of their own (walker.run).
func (w *walker) mysqlCatalogRef(i int) bool {
	if i > 0 && w.toks[i-1].kind == tkDot {
		return false
	}
	v := identValue(w.d, w.s, w.toks, i)
	if i+1 < len(w.toks) && w.toks[i+1].kind == tkDot {
		return mysqlCatalogSchemas[v]
	}
	call := i+1 < len(w.toks) && w.toks[i+1].kind == tkLParen
	return call && mysqlSessionFuncs[v] || v == "current_user" || v == "current_role"
}

// mysqlSessionFuncs read the session or the server, not tables.
var mysqlSessionFuncs = map[string]bool{
	"database": true, "schema": true, "user": true, "current_user": true, "session_user": true,
	"system_user": true, "current_role": true, "connection_id": true, "last_insert_id": true,
	"found_rows": true, "row_count": true, "version": true, "get_lock": true, "is_free_lock": true,
	"is_used_lock": true, "release_lock": true,
}
