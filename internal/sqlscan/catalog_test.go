package sqlscan

import "testing"

// catalogCases are catalog and session reads (issue 7, defect 11): never
// cached, since no table write follows their changes.
var catalogCases = []analyzeCase{
	{`SELECT count(*) FROM information_schema.tables WHERE table_schema = CURRENT_SCHEMA() AND table_name = $1 AND table_type = $2`, nil, "c"},
	{`SELECT count(*) FROM "information_schema"."columns" WHERE table_name = $1`, nil, "c"},
	{`SELECT * FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace`, nil, "c"},
	{`SELECT * FROM pg_catalog.pg_tables`, nil, "c"},
	{`SELECT relname FROM PG_STAT_USER_TABLES`, nil, "c"},
	{`SELECT to_regclass($1) IS NOT NULL`, nil, "c"},
	{`SELECT pg_table_is_visible(1)`, nil, "c"},
	{`SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM t a`, nil, "c"},
	{`SELECT has_table_privilege('t', 'select')`, nil, "c"},
	{`SELECT has_foreign_data_wrapper_privilege('w', 'usage')`, nil, "c"},
	{`SELECT obj_description('t'::regclass)`, nil, "c"},
	{`SELECT current_setting('search_path')`, nil, "c"},
	{`SELECT current_user, session_user`, nil, "c"},
	{`SELECT * FROM t WHERE owner = CURRENT_USER`, nil, "c"},
	{`SHOW search_path`, nil, "c"},
	{`SELECT "pg_get_viewdef"('v')`, nil, "c"},
	{`SELECT * FROM pg_get_keywords() k`, nil, "c"},
	{"SELECT 1\x00FROM pg_class", nil, ""}, // PostgreSQL stops at the NUL
	{`SELECT * FROM t, pg_ls_dir('.')`, nil, "c"},
	{`SELECT * FROM to_regclass('x')`, nil, "c"},

	// Not catalog reads.
	{`SELECT pg FROM t WHERE t.pg_x = 1 AND x.current_user = 2`, nil, ""},
	{`SELECT * FROM "users" WHERE "users"."deleted_at" IS NULL`, nil, ""},
	{`SELECT now(), "user" FROM pgx`, nil, ""},
	{`SELECT pg_sleep(0.1), pg_sleep_for('1s'), pg_sleep_until(now())`, nil, ""},
	{`SELECT pg_advisory_xact_lock_shared($1), pg_try_advisory_lock(1)`, nil, ""},
}

func TestAnalyzeCatalog(t *testing.T) {
	for _, c := range catalogCases {
		t.Run(c.sql, c.check)
	}
}
