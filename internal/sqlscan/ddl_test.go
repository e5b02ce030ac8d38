package sqlscan

import (
	"slices"
	"testing"
)

type analyzeCase struct {
	sql    string
	writes []string
	flags  string // letters: c = Catalog, d = DDL, s = Schema
}

func (c analyzeCase) check(t *testing.T) {
	t.Helper()
	r := Analyze(PostgreSQL, c.sql)
	got := ""
	if r.Catalog {
		got += "c"
	}
	if r.DDL {
		got += "d"
	}
	if r.Schema {
		got += "s"
	}
	if !slices.Equal(r.Writes, c.writes) || got != c.flags {
		t.Errorf("Analyze(%q) = writes %q flags %q, want %q %q", c.sql, r.Writes, got, c.writes, c.flags)
	}
	if r.Schema && !slices.Contains(r.Writes, AllTables) {
		t.Errorf("Analyze(%q): Schema without AllTables", c.sql)
	}
}

// ddlCases are DDL statements (issue 7, defect 6): each writes every
// relation whose rows, definition or privileges it changes, and sets Schema
// when those cannot be named.
var ddlCases = []analyzeCase{
	// Creating and replacing relations.
	{`CREATE OR REPLACE VIEW "v" AS SELECT * FROM t`, l("v"), "d"},
	{`CREATE OR REPLACE TEMP RECURSIVE VIEW v (n) AS SELECT 1`, l("v"), "d"},
	{`CREATE TABLE "users" ("id" bigserial,"name" text,PRIMARY KEY ("id"))`, l("users"), "d"},
	{`CREATE UNLOGGED TABLE IF NOT EXISTS s.t (a int REFERENCES u (id))`, l("t"), "d"},
	{`CREATE GLOBAL TEMPORARY TABLE t AS SELECT * FROM src WITH NO DATA`, l("t"), "d"},
	{`CREATE TABLE t (LIKE src INCLUDING ALL)`, l("t"), "d"},
	{`CREATE TABLE p1 PARTITION OF parent FOR VALUES IN (1)`, l("p1", "parent"), "d"},
	{`CREATE TABLE c (x int) INHERITS (p1, s.p2)`, l("c", "p1", "p2"), "d"},
	{`CREATE MATERIALIZED VIEW IF NOT EXISTS mv AS SELECT * FROM t`, l("mv"), "d"},
	{`CREATE FOREIGN TABLE ft (a int) SERVER s`, l("ft"), "d"},
	{`CREATE SEQUENCE IF NOT EXISTS seq`, l("seq"), "d"},
	{`SELECT * INTO snap FROM users`, l("snap"), "d"},
	{`EXPLAIN (ANALYZE) CREATE TABLE t AS SELECT 1`, l("t"), "d"},
	{`CREATE SCHEMA s CREATE TABLE a (x int) CREATE VIEW b AS SELECT * FROM c GRANT SELECT ON a TO r`, l("a", "b"), "d"},

	// Altering relations.
	{`ALTER VIEW v RENAME TO w`, l("v", "w"), "d"},
	{`ALTER MATERIALIZED VIEW IF EXISTS mv RENAME TO mv2`, l("mv", "mv2"), "d"},
	{`ALTER FOREIGN TABLE ONLY ft RENAME TO ft2`, l("ft", "ft2"), "d"},
	{`ALTER TABLE t SET SCHEMA other`, l("t"), "d"},
	{`ALTER TABLE t ENABLE ROW LEVEL SECURITY`, l("t"), "d"},
	{`ALTER TABLE t RENAME COLUMN a TO b`, l("t"), "d"},
	{`ALTER TABLE parent ATTACH PARTITION p1 FOR VALUES IN (1)`, l("p1", "parent"), "d"},
	{`ALTER TABLE parent DETACH PARTITION p1 CONCURRENTLY`, l("p1", "parent"), "d"},
	{`ALTER TABLE c INHERIT p; ALTER TABLE d NO INHERIT q`, l("c", "d", "p", "q"), "d"},
	{`ALTER TABLE t ALTER COLUMN c TYPE int USING c::int`, l("t"), "d"},
	{`ALTER SEQUENCE seq RESTART`, l("seq"), "d"},
	{`ALTER INDEX idx RENAME TO idx2`, l("idx", "idx2"), "d"},
	{`ALTER TABLE ALL IN TABLESPACE a SET TABLESPACE b`, nil, "d"},

	// Rules, policies, triggers, comments, labels, privileges.
	{`CREATE OR REPLACE RULE r AS ON SELECT TO t DO INSTEAD SELECT * FROM u`, l("t"), "d"},
	{`DROP RULE IF EXISTS r ON s.t`, l("t"), "d"},
	{`ALTER RULE r ON t RENAME TO r2`, l("t"), "d"},
	{`CREATE POLICY p ON t FOR SELECT USING (owner = current_user)`, l("t"), "cd"},
	{`ALTER POLICY p ON t RENAME TO p2`, l("t"), "d"},
	{`DROP POLICY p ON t`, l("t"), "d"},
	{`CREATE CONSTRAINT TRIGGER tr AFTER INSERT OR UPDATE OF a ON t FOR EACH ROW EXECUTE FUNCTION f()`, l("t"), "d"},
	{`DROP TRIGGER IF EXISTS tr ON t`, l("t"), "d"},
	{`COMMENT ON TABLE t IS 'x'`, l("t"), "d"},
	{`COMMENT ON COLUMN s.t.c IS 'x'`, l("t"), "d"},
	{`COMMENT ON FUNCTION f() IS 'x'`, nil, "d"},
	{`SECURITY LABEL FOR selinux ON TABLE t IS 'label'`, l("t"), "d"},
	{`SECURITY LABEL ON SCHEMA s IS 'label'`, l(AllTables), "ds"},
	{`GRANT SELECT ON t, u TO r`, l("t", "u"), "d"},
	{`REVOKE GRANT OPTION FOR SELECT (a, b) ON TABLE t FROM r`, l("t"), "d"},
	{`GRANT SELECT ON ALL TABLES IN SCHEMA public TO r`, l(AllTables), "ds"},
	{`GRANT r1 TO r2`, l(AllTables), "ds"},
	{`GRANT CONNECT ON DATABASE d TO r`, nil, "d"},
	{`GRANT SELECT ON database, schema.t TO r`, l("database", "t"), "d"},

	// Indexes, drops.
	{`CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON ONLY t USING btree (a) WHERE b`, l("t"), "d"},
	{`DROP INDEX CONCURRENTLY IF EXISTS i`, l("i"), "d"},
	{`DROP VIEW v1; DROP MATERIALIZED VIEW IF EXISTS v2`, l("v1", "v2"), "d"},
	{`DROP FOREIGN TABLE ft, s.ft2`, l("ft", "ft2"), "d"},
	{`DROP SEQUENCE seq`, l("seq"), "d"},

	// DDL whose tables cannot be named.
	{`DROP SCHEMA s CASCADE`, l(AllTables), "ds"},
	{`ALTER SCHEMA s RENAME TO s2`, l(AllTables), "ds"},
	{`DROP TABLE t CASCADE`, l(AllTables, "t"), "ds"},
	{`CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$SELECT 1$$`, l(AllTables), "ds"},
	{`ALTER TYPE mood RENAME VALUE 'sad' TO 'blue'`, l(AllTables), "ds"},
	{`CREATE EXTENSION IF NOT EXISTS postgis`, l(AllTables), "ds"},
	{`ALTER ROLE app BYPASSRLS`, l(AllTables), "ds"},
	{`IMPORT FOREIGN SCHEMA remote FROM SERVER s INTO public`, l(AllTables), "ds"},
	{`IMPORT FOREIGN SCHEMA remote LIMIT TO (a, b) FROM SERVER s INTO public`, l("a", "b"), "d"},
	{`DROP OWNED BY r`, l(AllTables), "ds"},
	{`REASSIGN OWNED BY a TO b`, l(AllTables), "ds"},

	// DDL that changes no relation.
	{`CREATE ROLE r`, nil, "d"},
	{`CREATE LANGUAGE plpgsql`, l(AllTables), "ds"}, // may create the extension
	{`DROP DATABASE IF EXISTS d`, nil, "d"},
	{`CREATE SCHEMA s`, nil, "d"},
	{`ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO r`, nil, "d"},

	// Not DDL.
	{`TRUNCATE t CASCADE`, l("t"), ""},
	{`REFRESH MATERIALIZED VIEW mv`, l("mv"), ""},
	{`SET search_path TO s`, nil, ""},
}

func TestAnalyzeDDL(t *testing.T) {
	for _, c := range ddlCases {
		t.Run(c.sql, c.check)
	}
}
