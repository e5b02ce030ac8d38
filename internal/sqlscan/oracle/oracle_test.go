package oracle

import (
	"slices"
	"sort"
	"strconv"
	"testing"

	"github.com/gormflight/gormflight/internal/sqlscan"
	sqlcorpus "github.com/gormflight/gormflight/internal/sqlscan/corpus"
)

// extraCorpus are statements besides the analyser's own test cases: the
// shapes GORM generates (queries, writes, Migrator DDL) and the DDL of
// issue 7.
var extraCorpus = []string{
	`SELECT * FROM "users" WHERE "users"."deleted_at" IS NULL ORDER BY "users"."id" LIMIT $1`,
	`SELECT count(*) FROM "users" WHERE name = $1 AND "users"."deleted_at" IS NULL`,
	`SELECT "users"."id","users"."name","Company"."id" AS "Company__id" FROM "users" LEFT JOIN "companies" "Company" ON "users"."company_id" = "Company"."id"`,
	`SELECT * FROM "pets" WHERE "pets"."user_id" IN ($1,$2,$3)`,
	`SELECT * FROM "languages" WHERE "languages"."id" IN (SELECT "language_id" FROM "user_languages" WHERE "user_id" = $1)`,
	`INSERT INTO "users" ("created_at","name") VALUES ($1,$2) RETURNING "id"`,
	`INSERT INTO "users" ("id","name") VALUES ($1,$2) ON CONFLICT ("id") DO UPDATE SET "name"="excluded"."name"`,
	`UPDATE "users" SET "name"=$1,"updated_at"=$2 WHERE "users"."deleted_at" IS NULL AND "id" = $3`,
	`DELETE FROM "users" WHERE "users"."id" = $1`,
	`UPDATE "users" SET "deleted_at"=$1 WHERE "users"."id" IN ($2,$3) AND "users"."deleted_at" IS NULL`,
	// Migrator.
	`SELECT count(*) FROM information_schema.tables WHERE table_schema = CURRENT_SCHEMA() AND table_name = $1 AND table_type = $2`,
	`SELECT count(*) FROM INFORMATION_SCHEMA.columns WHERE table_schema = CURRENT_SCHEMA() AND table_name = $1 AND column_name = $2`,
	`SELECT count(*) FROM pg_indexes WHERE tablename = $1 AND indexname = $2 AND schemaname = CURRENT_SCHEMA()`,
	`SELECT description FROM pg_catalog.pg_description WHERE objsubid = (SELECT ordinal_position FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND column_name = $3) AND objoid = (SELECT oid FROM pg_catalog.pg_class WHERE relname = $4 AND relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $5))`,
	`SELECT CURRENT_DATABASE()`,
	`CREATE TABLE "users" ("id" bigserial,"created_at" timestamptz,"name" text,PRIMARY KEY ("id"))`,
	`CREATE INDEX IF NOT EXISTS "idx_users_deleted_at" ON "users" ("deleted_at")`,
	`CREATE OR REPLACE VIEW "users_pets" AS SELECT * FROM users JOIN pets ON pets.user_id = users.id`,
	`CREATE VIEW v AS SELECT * FROM t WITH LOCAL CHECK OPTION`,
	`ALTER TABLE "users" ADD "age" bigint`,
	`ALTER TABLE "users" ALTER COLUMN "age" TYPE bigint USING "age"::bigint`,
	`ALTER TABLE "users" RENAME COLUMN "age" TO "years"`,
	`ALTER TABLE "users" ADD CONSTRAINT "fk_users_company" FOREIGN KEY ("company_id") REFERENCES "companies"("id")`,
	`ALTER TABLE "users" DROP CONSTRAINT "fk_users_company"`,
	`ALTER INDEX "idx_a" RENAME TO "idx_b"`,
	`DROP TABLE IF EXISTS "users" CASCADE`,
	`DROP VIEW IF EXISTS "users_pets"`,
	`COMMENT ON COLUMN "users"."name" IS 'the name'`,
	// DDL of issue 7.
	`CREATE TEMP TABLE t AS SELECT * FROM s`,
	`CREATE TABLE t (a int, b text DEFAULT 'x' CHECK (b <> 'y')) PARTITION BY RANGE (a)`,
	`CREATE TABLE p1 PARTITION OF parent FOR VALUES FROM (1) TO (10)`,
	`CREATE TABLE c () INHERITS (p)`,
	`CREATE MATERIALIZED VIEW mv AS SELECT * FROM t WITH NO DATA`,
	`ALTER VIEW v RENAME TO w`,
	`ALTER VIEW v ALTER COLUMN c SET DEFAULT 1`,
	`ALTER MATERIALIZED VIEW mv RENAME TO mv2`,
	`ALTER MATERIALIZED VIEW mv SET SCHEMA s`,
	`ALTER FOREIGN TABLE ft RENAME TO ft2`,
	`ALTER TABLE t SET SCHEMA s`,
	`ALTER TABLE t OWNER TO r`,
	`ALTER TABLE t ENABLE ROW LEVEL SECURITY`,
	`ALTER TABLE t FORCE ROW LEVEL SECURITY`,
	`ALTER TABLE parent ATTACH PARTITION p FOR VALUES IN (1)`,
	`ALTER TABLE parent DETACH PARTITION p`,
	`ALTER TABLE c INHERIT p`,
	`ALTER TABLE c NO INHERIT p`,
	`ALTER SEQUENCE s RESTART WITH 1`,
	`ALTER SEQUENCE s RENAME TO s2`,
	`CREATE RULE r AS ON SELECT TO t DO INSTEAD SELECT * FROM u`,
	`CREATE RULE r AS ON INSERT TO t DO ALSO INSERT INTO log VALUES (1)`,
	`DROP RULE r ON t`,
	`ALTER RULE r ON t RENAME TO r2`,
	`CREATE POLICY p ON t USING (owner = current_user)`,
	`CREATE POLICY p ON t FOR SELECT USING (id IN (SELECT id FROM allowed))`,
	`ALTER POLICY p ON t USING (true)`,
	`DROP POLICY IF EXISTS p ON t`,
	`CREATE TRIGGER tr BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION f()`,
	`DROP TRIGGER tr ON t`,
	`ALTER TRIGGER tr ON t RENAME TO tr2`,
	`COMMENT ON TABLE t IS 'x'`,
	`COMMENT ON VIEW v IS 'x'`,
	`COMMENT ON CONSTRAINT c ON t IS 'x'`,
	`SECURITY LABEL ON TABLE t IS 'x'`,
	`GRANT SELECT ON TABLE t TO r`,
	`GRANT SELECT, UPDATE (a) ON t, u TO r WITH GRANT OPTION`,
	`REVOKE ALL ON t FROM PUBLIC`,
	`GRANT ALL ON ALL TABLES IN SCHEMA public TO r`,
	`GRANT USAGE ON SCHEMA s TO r`,
	`GRANT r TO u`,
	`TRUNCATE t, u RESTART IDENTITY`,
	`CREATE INDEX ON t (a)`,
	`DROP INDEX i`,
	`IMPORT FOREIGN SCHEMA rs LIMIT TO (a, b) FROM SERVER srv INTO public`,
	`IMPORT FOREIGN SCHEMA rs EXCEPT (a) FROM SERVER srv INTO public`,
	`ALTER TYPE mood ADD VALUE 'x'`,
	`ALTER TYPE t RENAME ATTRIBUTE a TO b`,
	`DROP SCHEMA s CASCADE`,
	`ALTER SCHEMA s RENAME TO s2`,
	`CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM t; END`,
	`DROP FUNCTION f`,
	`CREATE SCHEMA s CREATE TABLE a (x int) CREATE VIEW b AS SELECT * FROM c`,
	`EXPLAIN ANALYZE CREATE TABLE t AS SELECT * FROM s`,
	`SELECT * INTO TEMP snap FROM t`,
	`REFRESH MATERIALIZED VIEW mv`,
	`COPY t FROM STDIN`,
	`COPY t TO STDOUT`,
	// Catalog and session reads.
	`SELECT to_regclass('t')`,
	`SELECT 't'::regclass::oid`,
	`SELECT pg_get_viewdef('v'::regclass)`,
	`SELECT pg_relation_size('t')`,
	`SELECT has_table_privilege('t', 'SELECT')`,
	`SELECT current_user, session_user, current_role, user, current_catalog, current_schema`,
	`SELECT obj_description(1, 'pg_class'), col_description(1, 1), format_type(23, NULL)`,
	`SELECT current_setting('search_path')`,
	`SHOW search_path`,
	`SELECT * FROM pg_stat_activity`,
	`TABLE pg_class`,
	`SELECT * FROM "information_schema"."tables"`,
}

// corpus returns extraCorpus and every string literal of the analyser's
// test files; the oracle skips those PostgreSQL does not accept.
func corpus(t testing.TB) []string {
	strs, err := sqlcorpus.TestStrings("..")
	if err != nil || len(strs) == 0 {
		t.Fatalf("analyser tests not found: %v", err)
	}
	return append(slices.Clone(extraCorpus), strs...)
}

// check compares the analyser with the oracle for one statement string.
// It reports whether PostgreSQL accepted sql.
func check(t *testing.T, sql string) bool {
	t.Helper()
	want, ok := Analyze(sql)
	if !ok {
		return false
	}
	got := sqlscan.Analyze(sqlscan.PostgreSQL, sql)
	var problems []string
	for _, name := range keys(want.Writes) {
		if !got.Schema && !slices.Contains(got.Writes, name) {
			problems = append(problems, "missed write "+strconv.Quote(name))
		}
	}
	for _, name := range keys(want.Reads) {
		if !slices.Contains(got.Reads, name) && !slices.Contains(got.Writes, name) && !got.Schema {
			problems = append(problems, "missed read "+strconv.Quote(name))
		}
	}
	if want.DDL && !got.DDL {
		problems = append(problems, "missed DDL")
	}
	if want.Catalog && !got.Catalog {
		problems = append(problems, "missed catalog read")
	}
	if want.Schema && !got.Schema {
		problems = append(problems, "missed schema change")
	}
	if len(problems) > 0 {
		t.Errorf("%q: %v\n analyser: %+v\n oracle: reads %v writes %v catalog %v ddl %v schema %v",
			sql, problems, got, keys(want.Reads), keys(want.Writes), want.Catalog, want.DDL, want.Schema)
	}
	return true
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestOracleCorpus checks every corpus statement PostgreSQL accepts.
func TestOracleCorpus(t *testing.T) {
	accepted := 0
	for _, sql := range corpus(t) {
		if check(t, sql) {
			accepted++
		}
	}
	if accepted < 200 {
		t.Errorf("only %d corpus statements parsed; the corpus went missing", accepted)
	}
	t.Logf("%d statements checked", accepted)
}

// FuzzOracle mutates corpus statements; each one PostgreSQL accepts must
// be analysed at least as broadly as the oracle says.
func FuzzOracle(f *testing.F) {
	for _, sql := range corpus(f) {
		f.Add(sql)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		check(t, sql)
	})
}
