package dialect

import "testing"

func TestChangesSession(t *testing.T) {
	type eff = Effect
	for _, c := range []struct {
		sql  string
		want Effect
	}{
		{"SELECT 1", eff{}},
		{"SELECT * FROM settings WHERE set = 1", eff{}},
		{"SET LOCAL search_path TO a", eff{}},
		{"set local app.tenant = 'a'", eff{}},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", eff{}},
		{"SET CONSTRAINTS ALL DEFERRED", eff{}},
		{"UPDATE t SET a = 1", eff{}},
		{"DISCARD PLANS", eff{}},
		{"SELECT 'set_config(' AS s", eff{}},
		{"SELECT temp, temporary FROM weather", eff{}},
		{"CREATE TABLE t (id int)", eff{}},
		{"RESET search_path", eff{}},
		{"SET search_path TO a", eff{Adds: AspSettings}},
		{"  set SESSION search_path = a", eff{Adds: AspSettings}},
		{"SELECT set_config('app.tenant', $1, false)", eff{Adds: AspSettings}},
		{"SELECT set_config('app.tenant', 'a', true)", eff{Adds: AspSettings}}, // is_local is not read
		{"SELECT 1; SET search_path TO a", eff{Adds: AspSettings}},
		{"SET ROLE tenant_a", eff{Adds: AspRole}},
		{"SET SESSION ROLE tenant_a", eff{Adds: AspRole}},
		{"SET SESSION AUTHORIZATION tenant_a", eff{Adds: AspRole}},
		{"SELECT set_config('role', 'r', false)", eff{Adds: AspRole}},
		{`SELECT "set_config"('ROLE', 'r', false)`, eff{Adds: AspRole}},
		{"SELECT set_config($1, $2, false)", eff{Adds: AspUnknown}},
		{"CREATE TEMP TABLE t (id int)", eff{Adds: AspTemp}},
		{"create or replace temporary view v AS SELECT 1", eff{Adds: AspTemp}},
		{"CREATE LOCAL TEMP TABLE t (id int)", eff{Adds: AspTemp}},
		{"SELECT * INTO TEMP t FROM u", eff{Adds: AspTemp}},
		{"DO $$ BEGIN PERFORM 1; END $$", eff{Adds: AspUnknown}},
		{"CALL p()", eff{Adds: AspUnknown}},
		{"EXECUTE plan(1)", eff{Adds: AspUnknown}},
		{"RESET ALL", eff{Clears: AspSettings}},
		{"RESET ROLE", eff{Clears: AspRole}},
		{"RESET SESSION AUTHORIZATION", eff{Clears: AspRole}},
		{"DISCARD TEMP", eff{Clears: AspTemp}},
		{"DISCARD ALL", eff{Clears: AspAll}},
		{"SET search_path TO a; RESET ALL", eff{Clears: AspSettings}},
		{"SET ROLE r; RESET ALL", eff{Adds: AspRole, Clears: AspSettings}}, // RESET ALL keeps the role
		{"SET ROLE r; DISCARD ALL", eff{Clears: AspAll}},
	} {
		checkChangesSession(t, &Postgres, c.sql, c.want)
	}
}

func TestChangesSessionDialects(t *testing.T) {
	type eff = Effect
	for _, c := range []struct {
		d    *Dialect
		sql  string
		want Effect
	}{
		{&MySQL, "SELECT 1", eff{}},
		{&MySQL, "UPDATE t SET a = 1", eff{}},
		{&MySQL, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", eff{}},
		{&MySQL, "SET STATEMENT max_statement_time = 1 FOR SELECT 1", eff{}},
		{&MySQL, "SET LOCAL sql_mode = ''", eff{Adds: AspSettings}}, // LOCAL is SESSION in MySQL
		{&MySQL, "SET NAMES utf8mb4", eff{Adds: AspSettings}},
		{&MySQL, "set @@session.time_zone = '+02:00'", eff{Adds: AspSettings}},
		{&MySQL, "SET @tenant = 'a'", eff{Adds: AspSettings}},
		{&MySQL, "SELECT @tenant := 'a'", eff{Adds: AspSettings}},
		{&MySQL, "SELECT 'a' INTO @tenant", eff{Adds: AspSettings}},
		{&MySQL, "SELECT @tenant", eff{}},
		{&MySQL, "USE other", eff{Adds: AspSettings}},
		{&MySQL, "SET ROLE r", eff{Adds: AspRole}},
		{&MySQL, "CREATE TEMPORARY TABLE t (id int)", eff{Adds: AspTemp}},
		{&MySQL, "CREATE OR REPLACE TEMPORARY TABLE t (id int)", eff{Adds: AspTemp}},
		{&MySQL, "CREATE TABLE temp (id int)", eff{}},
		{&MySQL, "CALL p()", eff{Adds: AspUnknown}},
		{&MySQL, "EXECUTE s", eff{Adds: AspUnknown}},
		{&MySQL, "RESET QUERY CACHE", eff{}},
		{&MySQL, "SET FOREIGN_KEY_CHECKS = 0", eff{}}, // GORM's migrator: changes no read
		{&MySQL, "SET foreign_key_checks = (0), max_recursive_iterations = 1", eff{Adds: AspSettings}},
		{&MySQL, "SET foreign_key_checks = 0, unique_checks = 0", eff{}},
		{&MySQL, "SET SESSION foreign_key_checks = 1, unique_checks = 0", eff{}},
		{&MySQL, "SET foreign_key_checks = 0, time_zone = '+02:00'", eff{Adds: AspSettings}},
		{&MySQL, "SET autocommit = 0", eff{Adds: AspSettings | AspTx}},
		{&MySQL, "SET @@session.autocommit = 0", eff{Adds: AspSettings | AspTx}},
		{&MySQL, "SET unique_checks = 1 + 0, autocommit = 0", eff{Adds: AspSettings | AspTx}},
		{&MySQL, "SET autocommit = ON", eff{Adds: AspSettings | AspTx}}, // nothing ends AspTx
		{&MySQL, "START TRANSACTION", eff{Adds: AspTx}},
		{&MySQL, "BEGIN", eff{Adds: AspTx}},
		{&MySQL, "COMMIT AND CHAIN", eff{}},
		{&MySQL, "ROLLBACK TO SAVEPOINT s", eff{}},
		{&MySQL, "SET GLOBAL foreign_key_checks = 0", eff{Adds: AspSettings}},
		{&MySQL, "BEGIN NOT ATOMIC SELECT 1; END", eff{Adds: AspUnknown}},
		{&MySQL, "IF 1 THEN SELECT 1; END IF", eff{Adds: AspUnknown}},
		{&MySQL, "SET STATEMENT max_statement_time = 1 FOR CREATE TEMPORARY TABLE t (id int)", eff{Adds: AspTemp}},
		{&MySQL, "SET STATEMENT max_statement_time = 1 FOR USE other", eff{Adds: AspSettings}},
		{&SQLite, "SAVEPOINT s", eff{Adds: AspTx}},
		{&SQLite, "BEGIN IMMEDIATE", eff{Adds: AspTx}},
		{&SQLite, "RELEASE s", eff{}},
		{&SQLite, "CREATE TRIGGER t AFTER DELETE ON u BEGIN SELECT 1; END", eff{}},
		{&Postgres, "BEGIN", eff{Adds: AspTx}},
		{&Postgres, "START TRANSACTION ISOLATION LEVEL SERIALIZABLE", eff{Adds: AspTx}},
		{&Postgres, "BEGIN; UPDATE t SET a = 1; COMMIT", eff{Adds: AspTx}},
		{&Postgres, "ROLLBACK TO SAVEPOINT s", eff{}},
		{&SQLite, "SELECT 1", eff{}},
		{&SQLite, "PRAGMA table_info(t)", eff{}},
		{&SQLite, "PRAGMA foreign_keys = ON", eff{}},
		{&SQLite, "PRAGMA case_sensitive_like = 1", eff{Adds: AspSettings}},
		{&SQLite, "pragma main.reverse_unordered_selects(true)", eff{Adds: AspSettings}},
		{&SQLite, "ATTACH 'x.db' AS aux", eff{Adds: AspSettings}},
		{&SQLite, "DETACH aux", eff{Adds: AspSettings}},
		{&SQLite, "CREATE TEMP TABLE t (id)", eff{Adds: AspTemp}},
		{&SQLite, "CREATE TEMPORARY VIEW v AS SELECT 1", eff{Adds: AspTemp}},
		{&SQLite, "CREATE TABLE temp.t (id)", eff{Adds: AspTemp}},
		{&SQLite, `CREATE TABLE "temp".t (id)`, eff{Adds: AspTemp}},
		{&SQLite, "CREATE TABLE t (temp int)", eff{}},
		{&SQLite, "SELECT temp FROM t", eff{}},
	} {
		checkChangesSession(t, c.d, c.sql, c.want)
	}
}

// checkChangesSession checks d.ChangesSession(query) worked out alone,
// then from the statement's remembered analysis (a cached read's path).
func checkChangesSession(t *testing.T, d *Dialect, query string, want Effect) {
	t.Helper()
	analyses.Invalidate(analysisKey{d.SQL, query})
	if got := d.ChangesSession(query); got != want {
		t.Errorf("%s: ChangesSession(%q) = %+v, want %+v", d.Name, query, got, want)
	}
	if got := d.Analysis(query).Session; got != want {
		t.Errorf("%s: Analysis(%q).Session = %+v, want %+v", d.Name, query, got, want)
	}
	if got := d.ChangesSession(query); got != want {
		t.Errorf("%s: ChangesSession(%q) once analysed = %+v, want %+v", d.Name, query, got, want)
	}
}
