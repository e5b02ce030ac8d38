package sqlscan

import (
	"slices"
	"strings"
	"testing"
)

type tablesCase struct {
	name    string
	sql     string
	read    []string
	written []string
}

func l(names ...string) []string { return names }

const gormJoinQuery = `SELECT "users"."id","users"."name" FROM "users" LEFT JOIN "companies" "Company" ON "users"."company_id" = "Company"."id" WHERE "users"."age" > $1 AND "users"."deleted_at" IS NULL ORDER BY "users"."id" LIMIT $2`

var tablesCases = []tablesCase{
	// Plain reads and names.
	{"simple select", `SELECT * FROM users WHERE id = 1`, l("users"), nil},
	{"gorm join", gormJoinQuery, l("companies", "users"), nil},
	{"gorm count", `SELECT count(*) FROM "users" WHERE "users"."deleted_at" IS NULL`, l("users"), nil},
	{"schema qualified", `SELECT * FROM public.users`, l("users"), nil},
	{"quoted schema qualified", `SELECT * FROM "public"."Users"`, l("Users"), nil},
	{"quoted name containing dot", `SELECT * FROM "odd.name"`, l("odd.name"), nil},
	{"mixed qualification and case", `SELECT * FROM public."Users" u JOIN Sales.Orders o ON o.uid = u.id`, l("Users", "orders"), nil},
	{"case folding", `select * from Users join "Users" on true join USERS on true`, l("Users", "users"), nil},
	{"escaped quote in identifier", `SELECT * FROM "we""ird"`, l(`we"ird`), nil},
	{"spaces around dot", `SELECT * FROM public . users`, l("users"), nil},
	{"three part name", `SELECT * FROM db.public.users`, l("users"), nil},
	{"unicode identifier", `SELECT * FROM U&"d\0061t\+000061"`, l("data"), nil},
	{"unicode identifier uescape", `SELECT * FROM U&"d!0061t" UESCAPE '!'`, l("dat"), nil},
	{"long identifier truncated", `SELECT * FROM ` + strings.Repeat("abcdefghij", 7), l(strings.Repeat("abcdefghij", 7)[:63]), nil},
	{"placeholders", `SELECT * FROM t WHERE a = ? AND b = $1 AND c = $2`, l("t"), nil},

	// Joins.
	{"join kinds", `SELECT * FROM a INNER JOIN b ON a.id = b.id LEFT OUTER JOIN c ON true RIGHT JOIN d ON true
		FULL OUTER JOIN e ON true CROSS JOIN f NATURAL JOIN g LEFT JOIN h USING (id) JOIN i ON true`,
		l("a", "b", "c", "d", "e", "f", "g", "h", "i"), nil},
	{"join using", `SELECT * FROM a JOIN b USING (id, name) JOIN c USING (x)`, l("a", "b", "c"), nil},
	{"comma joins with aliases", `SELECT * FROM a, b AS x, c y, ONLY d, e * WHERE a.id = x.id`, l("a", "b", "c", "d", "e"), nil},
	{"comma after join condition", `SELECT * FROM a JOIN b ON a.id = b.id, c WHERE true`, l("a", "b", "c"), nil},
	{"comma after case in join condition", `SELECT * FROM a JOIN b ON CASE WHEN a.x THEN b.y ELSE false END, c`, l("a", "b", "c"), nil},
	{"array in join condition", `SELECT * FROM a JOIN b ON b.x = ANY(ARRAY[a.y, a.z]) AND b.v && ARRAY[a.p, a.q], c`, l("a", "b", "c"), nil},
	{"keyword aliases", `SELECT * FROM a set, b copy, c update, d truncate, e values, f`, l("a", "b", "c", "d", "e", "f"), nil},
	{"alias column list", `SELECT * FROM a AS x(c1, c2), b`, l("a", "b"), nil},
	{"tablesample", `SELECT * FROM t1 TABLESAMPLE SYSTEM (10) REPEATABLE (1), t2`, l("t1", "t2"), nil},
	{"parenthesised joins", `SELECT * FROM (a JOIN (b CROSS JOIN c) ON true) JOIN d ON true`, l("a", "b", "c", "d"), nil},
	{"sub-query in join", `SELECT * FROM a LEFT JOIN (SELECT * FROM b) bb ON true`, l("a", "b"), nil},

	// Sub-queries.
	{"sub-query in from", `SELECT * FROM (SELECT id FROM inner_t) AS s, outer_t`, l("inner_t", "outer_t"), nil},
	{"sub-query in where in", `SELECT * FROM a WHERE id IN (SELECT a_id FROM b WHERE c IN (SELECT 1 FROM c))`, l("a", "b", "c"), nil},
	{"sub-query in select list", `SELECT (SELECT count(*) FROM orders o WHERE o.user_id = u.id) AS n, u.name FROM users u`, l("orders", "users"), nil},
	{"exists", `SELECT 1 WHERE EXISTS (SELECT 1 FROM t) AND NOT EXISTS (SELECT 1 FROM u)`, l("t", "u"), nil},
	{"nested set operation in from", `SELECT * FROM ((SELECT 1 FROM a) UNION (SELECT 2 FROM b)) s`, l("a", "b"), nil},
	{"values in from", `SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(n, s), t`, l("t"), nil},

	// CTEs.
	{"cte names excluded", `WITH x AS (SELECT * FROM a), y AS (SELECT * FROM x JOIN b ON true) SELECT * FROM y, x`, l("a", "b"), nil},
	{"recursive cte with columns", `WITH RECURSIVE tree(id, parent) AS (SELECT id, parent FROM nodes WHERE parent IS NULL
		UNION ALL SELECT n.id, n.parent FROM nodes n JOIN tree t ON n.parent = t.id) SELECT * FROM tree`, l("nodes"), nil},
	{"materialized ctes", `WITH m AS MATERIALIZED (SELECT * FROM a), n AS NOT MATERIALIZED (SELECT * FROM b) SELECT * FROM m, n`, l("a", "b"), nil},
	{"cte body reads table of same name", `WITH users AS (SELECT * FROM users WHERE active) SELECT * FROM users`, l("users"), nil},
	{"cte scope ends with its parenthesis", `SELECT * FROM (WITH d AS (SELECT 1) SELECT * FROM d) s JOIN d ON true`, l("d"), nil},
	{"qualified name is not the cte", `WITH d AS (SELECT 1) SELECT * FROM public.d, d`, l("d"), nil},
	{"cte quoted name", `WITH "D" AS (SELECT 1) SELECT * FROM "D", d`, l("d"), nil},
	{"cte sees earlier sibling", `WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b`, nil, nil},
	{"cte scope ends with statement", `WITH a AS (SELECT 1) SELECT * FROM a; SELECT * FROM a`, l("a"), nil},
	{"insert with cte", `INSERT INTO t WITH s AS (SELECT * FROM src) SELECT * FROM s`, l("src"), l("t")},
	{"window clause is not a cte", `WITH c AS (SELECT 1) SELECT * FROM c, w WINDOW w1 AS (ORDER BY 1), w AS (ORDER BY 2)`, l("w"), nil},
	{"cte after search clause", `WITH RECURSIVE t(id) AS (SELECT id FROM n UNION ALL SELECT n.id FROM n JOIN t ON true)
		SEARCH DEPTH FIRST BY id, x SET ord, u AS (SELECT 1) SELECT * FROM t, u`, l("n"), nil},
	{"table command on cte", `WITH x AS (SELECT 1) TABLE x`, nil, nil},

	// Things that look like FROM but are not.
	{"from in strings", `SELECT 'FROM a', 'it''s FROM b' FROM c`, l("c"), nil},
	{"from in e-string", `SELECT E'it\'s FROM a', e'\\' FROM c`, l("c"), nil},
	{"from in dollar quotes", `SELECT $$ FROM a $$, $tag$ FROM b $x$ FROM d $tag$ FROM c`, l("c"), nil},
	{"dollar quote with quote inside", `SELECT * FROM t WHERE x = $$it's$$ AND y = $a$b$a$`, l("t"), nil},
	{"from in comments", "SELECT 1 -- FROM a\nFROM c /* FROM b /* nested FROM e */ FROM d */ WHERE true", l("c"), nil},
	{"from in bit and national strings", `SELECT B'101', X'FF', N'FROM x' FROM c`, l("c"), nil},
	{"extract substring trim overlay position", `SELECT EXTRACT(YEAR FROM created_at), SUBSTRING(name FROM 2 FOR 3),
		TRIM(BOTH 'x' FROM title), OVERLAY(s PLACING 'ab' FROM 2), POSITION('a' IN s) FROM t`, l("t"), nil},
	{"sub-query inside extract", `SELECT EXTRACT(EPOCH FROM (SELECT max(ts) FROM events))`, l("events"), nil},
	{"is distinct from", `SELECT * FROM a WHERE x IS DISTINCT FROM y AND z IS NOT DISTINCT FROM w`, l("a"), nil},
	{"keyword used as column label", `SELECT 1 AS from, x.from, y.update FROM t x, u y`, l("t", "u"), nil},
	{"json operators and casts", `SELECT doc->>'from' FROM t WHERE doc ? 'x' AND ts::timestamp with time zone > now()`, l("t"), nil},

	// FROM items that are not tables.
	{"only", `SELECT * FROM ONLY a JOIN ONLY b ON true`, l("a", "b"), nil},
	{"lateral sub-query", `SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.x = a.x) s`, l("a", "b"), nil},
	{"lateral function", `SELECT * FROM a CROSS JOIN LATERAL jsonb_array_elements(a.doc) AS e`, l("a"), nil},
	{"set returning functions", `SELECT * FROM generate_series(1, 3) g, pg_catalog.unnest(ARRAY[1, 2]) WITH ORDINALITY AS u(v, n)`, nil, nil},
	{"rows from", `SELECT * FROM ROWS FROM (generate_series(1, 2), unnest(ARRAY[1])) AS x, t`, l("t"), nil},
	{"no tables", `SELECT 1`, nil, nil},
	{"function only", `SELECT now()`, nil, nil},

	// Writes.
	{"insert values", `INSERT INTO "users" ("name","age") VALUES ($1,$2) RETURNING "id"`, nil, l("users")},
	{"insert default values", `INSERT INTO t DEFAULT VALUES`, nil, l("t")},
	{"insert qualified", `INSERT INTO "public"."Logs" AS l (a) VALUES (1)`, nil, l("Logs")},
	{"insert select", `INSERT INTO archive (id, name) SELECT id, name FROM users WHERE deleted`, l("users"), l("archive")},
	{"insert on conflict do update", `INSERT INTO "users" ("id","name") VALUES ($1,$2) ON CONFLICT ("id") DO UPDATE SET "name"="excluded"."name", age = 3 RETURNING "id"`, nil, l("users")},
	{"insert select on conflict", `INSERT INTO t SELECT * FROM s ON CONFLICT (id) DO UPDATE SET a = excluded.a, b = excluded.b`, l("s"), l("t")},
	{"insert parenthesised select", `INSERT INTO t (SELECT * FROM s)`, l("s"), l("t")},
	{"gorm many2many upsert", `INSERT INTO "user_languages" ("user_id","language_id") VALUES ($1,$2),($3,$4) ON CONFLICT DO NOTHING`, nil, l("user_languages")},
	{"gorm locking", `SELECT * FROM "users" WHERE "users"."id" = $1 FOR UPDATE OF "users"`, l("users"), nil},
	{"gorm sub-query table", `SELECT * FROM (SELECT "name",AVG("age") FROM "users" GROUP BY "name") as u WHERE "age" > (SELECT AVG(age) FROM "pets")`, l("pets", "users"), nil},
	{"insert on conflict do nothing", `INSERT INTO t SELECT * FROM s ON CONFLICT ON CONSTRAINT t_pkey DO NOTHING`, l("s"), l("t")},
	{"gorm update", `UPDATE "users" SET "deleted_at"=$1 WHERE "users"."id" = $2 AND "users"."deleted_at" IS NULL`, nil, l("users")},
	{"update only", `UPDATE ONLY "Users" SET x = 1`, nil, l("Users")},
	{"update from", `UPDATE accounts a SET balance = a.balance + t.amount FROM transfers t, fees WHERE t.account_id = a.id`, l("fees", "transfers"), l("accounts")},
	{"update with sub-query", `UPDATE t SET (a, b) = (SELECT x, y FROM s WHERE s.id = t.id)`, l("s"), l("t")},
	{"gorm delete", `DELETE FROM "users" WHERE "users"."id" = $1`, nil, l("users")},
	{"delete using", `DELETE FROM ONLY orders o USING customers c, regions WHERE o.cid = c.id`, l("customers", "regions"), l("orders")},
	{"delete using join", `DELETE FROM t USING a JOIN b USING (id) WHERE t.id = a.id`, l("a", "b"), l("t")},
	{"merge", `MERGE INTO stock s USING deliveries d ON s.item = d.item
		WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty, updated = now()
		WHEN NOT MATCHED THEN INSERT (item, qty) VALUES (d.item, d.qty)`, l("deliveries"), l("stock")},
	{"merge using sub-query", `MERGE INTO t USING (SELECT * FROM s) AS src ON t.id = src.id WHEN MATCHED THEN DELETE`, l("s"), l("t")},
	{"truncate", `TRUNCATE TABLE ONLY a, public.b * RESTART IDENTITY CASCADE`, nil, l("a", "b")},
	{"truncate without table", `TRUNCATE x`, nil, l("x")},
	{"copy from stdin", `COPY t (a, b) FROM STDIN WITH (FORMAT csv)`, nil, l("t")},
	{"copy to stdout", `COPY public.t TO STDOUT`, l("t"), nil},
	{"copy query to stdout", `COPY (SELECT * FROM t WHERE x) TO STDOUT`, l("t"), nil},
	{"alter table", `ALTER TABLE IF EXISTS ONLY t ADD COLUMN c int`, nil, l("t")},
	{"alter table rename", `ALTER TABLE users_new RENAME TO users`, nil, l("users", "users_new")},
	{"drop table", `DROP TABLE IF EXISTS a, "B" CASCADE`, nil, l("*", "B", "a")},
	{"drop views", `DROP VIEW v1; DROP MATERIALIZED VIEW IF EXISTS v2`, nil, l("v1", "v2")},
	{"create or replace view", `CREATE OR REPLACE VIEW "v" AS SELECT * FROM t`, l("t"), l("v")},
	{"alter view rename", `ALTER VIEW v RENAME TO w`, nil, l("v", "w")},
	{"alter materialized view rename", `ALTER MATERIALIZED VIEW mv RENAME TO mv2`, nil, l("mv", "mv2")},
	{"create table", `CREATE TABLE t (a int REFERENCES u (id))`, nil, l("t")},
	{"create table as", `CREATE TABLE t AS SELECT * FROM s`, l("s"), l("t")},
	{"catalog relations are reads", `SELECT * FROM pg_catalog.pg_class, information_schema.tables`, l("pg_class", "tables"), nil},
	{"refresh materialized view", `REFRESH MATERIALIZED VIEW CONCURRENTLY mv WITH DATA`, nil, l("mv")},
	{"select into", `SELECT * INTO TEMP TABLE snap FROM users`, l("users"), l("snap")},
	{"delete in cte", `WITH d AS (DELETE FROM t WHERE x < 1 RETURNING *) INSERT INTO log SELECT * FROM d`, nil, l("log", "t")},
	{"update in cte", `WITH u AS (UPDATE t SET x = 1 RETURNING *) SELECT * FROM u`, nil, l("t")},
	{"prepared delete", `PREPARE p AS DELETE FROM t WHERE id = $1`, l("t"), l("t")},

	// Statements and clauses.
	{"two statements", `SELECT * FROM a; UPDATE b SET x = 1`, l("a"), l("b")},
	// A second statement must not hide behind the first one's SELECT (see
	// Select in classify.go).
	{"select then update", `SELECT pg_advisory_lock(1); UPDATE t SET a = 1`, nil, l("t")},
	{"union", `SELECT id FROM a UNION ALL SELECT id FROM b INTERSECT SELECT id FROM c EXCEPT SELECT id FROM d`, l("a", "b", "c", "d"), nil},
	{"for update of", `SELECT * FROM a JOIN b ON true FOR UPDATE OF a, b NOWAIT`, l("a", "b"), nil},
	{"for no key update", `SELECT * FROM a FOR NO KEY UPDATE SKIP LOCKED`, l("a"), nil},
	{"window", `SELECT row_number() OVER (PARTITION BY dept ORDER BY salary DESC), x FROM emp WINDOW w AS (PARTITION BY y)`, l("emp"), nil},
	{"group order limit", `SELECT a, b FROM t GROUP BY a, b HAVING count(*) > 1 ORDER BY a, b LIMIT 1 OFFSET 2`, l("t"), nil},
	{"duplicates removed", `SELECT * FROM a JOIN a a2 ON true WHERE EXISTS (SELECT 1 FROM a)`, l("a"), nil},
	{"unterminated string", `SELECT * FROM t WHERE x = 'abc`, l("t"), nil},
	{"empty", ``, nil, nil},
}

func TestTables(t *testing.T) {
	for _, tc := range tablesCases {
		t.Run(tc.name, func(t *testing.T) {
			read, written := Tables(PostgreSQL, tc.sql)
			if !slices.Equal(read, tc.read) || !slices.Equal(written, tc.written) {
				t.Errorf("Tables(%q)\n got read %q written %q\nwant read %q written %q",
					tc.sql, read, written, tc.read, tc.written)
			}
			if (read != nil && len(read) == 0) || (written != nil && len(written) == 0) {
				t.Errorf("empty lists must be nil")
			}
		})
	}
}
