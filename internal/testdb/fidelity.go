package testdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
)

// The fidelity tables: every column kind each database returns, with its
// extremes, a row of NULLs and a row of zero values. SetupFidelity fills
// them; a test process running beside another sees the old rows or the
// new, never none.

// FidelityTables are the table SetupFidelity fills on each database.
var FidelityTables = map[string]string{"postgres": "gft_fid_kinds", "mysql": "gft_fid_my1", "sqlite": "gft_fid_lite"}

// fidelityPostgres is PostgreSQL's fidelity schema and rows (gft_fid_owner
// and gft_fid_item too, for package gormflight's relation paths).
const fidelityPostgres = `
CREATE TABLE IF NOT EXISTS gft_fid_kinds (
	id bigint PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, num numeric, f4 real,
	f8 double precision, txt text, vc varchar(40), b boolean, tstz timestamptz,
	ts timestamp, d date, tm time, iv interval, u uuid, js json, jb jsonb,
	by bytea, ta text[], ia integer[]);
CREATE TABLE IF NOT EXISTS gft_fid_owner (id bigint PRIMARY KEY, name text NOT NULL, born timestamptz);
CREATE TABLE IF NOT EXISTS gft_fid_item (id bigint PRIMARY KEY, owner_id bigint, label text NOT NULL, price numeric, tags text[]);
DELETE FROM gft_fid_kinds; DELETE FROM gft_fid_item; DELETE FROM gft_fid_owner;
INSERT INTO gft_fid_kinds VALUES
 (1, -12345, -2147483648, 9007199254740993, -12345678901234567890.123456789, -1.25,
  0.1, 'héllo, 世界 🎉 "q" \ end', 'varchar ✓', true, '2024-02-29 13:14:15.123456+02',
  '1999-12-31 23:59:59.999999', '2000-02-29', '23:59:59.654321', '1 year 2 mons 3 days 04:05:06.789',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a":{"b":[1,2.5,{"c":null}]},"s":"ü"}',
  '{"a":{"b":[1,2.5,{"c":null}]},"s":"ü","n":9007199254740993}', '\x00ff00fe7f',
  '{"a","NULL",NULL,"b c"}', '{1,NULL,-3}'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL),
 (3, 0, 0, 0, 0, 0, 0, '', '', false, '1800-01-01 00:00:00+00', '1970-01-01 00:00:00',
  '1970-01-01', '00:00:00', '0', '00000000-0000-0000-0000-000000000000', '{}', '{}', '',
  '{}', '{}');
INSERT INTO gft_fid_owner VALUES (1, 'Ada', '1815-12-10 08:00:00.5+00'), (2, 'Bob', NULL), (3, 'Zoë', '2021-03-28 01:30:00.000001+00');
INSERT INTO gft_fid_item VALUES (1, 1, 'a', 1.10, '{x,y}'), (2, 1, 'b', 2.20, NULL),
 (3, 2, 'c', -0.5, '{}'), (4, NULL, 'orphan', 0, '{NULL}');`

// fidelityMySQL is MariaDB's: the table, then its rows (the zero date
// included, which the default sql_mode accepts).
var fidelityMySQL = []string{
	`CREATE TABLE IF NOT EXISTS gft_fid_my1 (
	id bigint PRIMARY KEY, ti tinyint, si smallint, mi mediumint, i int, bi bigint,
	ubi bigint unsigned, dec1 decimal(30,10), f float, d double, b1 bool, bit8 bit(8),
	vc varchar(64), tx text, bl blob, bin binary(4), vb varbinary(8),
	dt datetime(6), ts timestamp(6) NULL, da date, tm time(6), yr year,
	js json, en enum('a','b'), st set('x','y')) DEFAULT CHARSET = utf8mb4`,
	`DELETE FROM gft_fid_my1`,
	`INSERT INTO gft_fid_my1 VALUES
	(1, -128, -32768, -8388608, -2147483648, -9223372036854775808,
	 18446744073709551615, -12345678901234567890.1234567890, -1.25, 0.1, true, b'10100101',
	 'héllo, 世界 🎉', 'quote '' backslash \\ end', x'00ff00', x'01020304', x'',
	 '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.654321', '2000-02-29', '-838:59:59.000000', 2155,
	 '{"a":[1,2.5,null],"s":"ü","n":9007199254740993}', 'b', 'x,y'),
	(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
	(3, 0, 0, 0, 0, 0, 0, 0, 0, 0, false, b'0', '', '', '', x'00000000', '',
	 '0000-00-00 00:00:00', NULL, '1000-01-01', '00:00:00', 1901, '{}', 'a', '')`,
}

// fidelitySQLite is SQLite's: every storage class, the types its driver
// parses by declared type, and a column whose values change class from row
// to row (SQLite keeps a value's class, not its column's).
var fidelitySQLite = []string{
	`CREATE TABLE gft_fid_lite (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB,
	n NUMERIC, bo BOOLEAN, dt DATETIME, da DATE, ts TIMESTAMP, dyn)`,
	`INSERT INTO gft_fid_lite VALUES
	(1, 9223372036854775807, 1e308, 'héllo, 世界 🎉 ''q'' \ end', x'00ff00', 12.5, 1,
	 '2024-02-29 13:14:15.123456789+02:00', '2000-02-29', '2024-02-29T13:14:15Z', 42),
	(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
	(3, -9223372036854775808, -0.0, '', x'', 0, 0, '1970-01-01 00:00:00', '1970-01-01', '1970-01-01', 'text'),
	(4, 0, 0.5, 'x', x'01', '007', 0, '2024-01-01', '2024-01-01', '2024-01-01', x'0102'),
	(5, 0, 0.5, 'y', x'02', 1e3, 1, '2024-01-01', '2024-01-01', '2024-01-01', 2.5)`,
}

// SetupFidelity fills the fidelity tables of db, a database of kind name.
func SetupFidelity(t testing.TB, name string, db *sql.DB) {
	t.Helper()
	var err error
	switch name {
	case "postgres":
		err = inTx(db, "SELECT pg_advisory_xact_lock(727, 5)", fidelityPostgres) // package gormflight's schema lock of fidelity
	case "mysql":
		err = mysqlFidelity(db)
	default:
		for _, s := range fidelitySQLite {
			if _, err = db.Exec(s); err != nil {
				break
			}
		}
	}
	if err != nil {
		t.Fatalf("fidelity schema on %s: %v", name, err)
	}
}

// inTx runs statements in one transaction.
func inTx(db *sql.DB, statements ...string) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	for _, s := range statements {
		if _, err := tx.Exec(s); err != nil {
			return errors.Join(fmt.Errorf("%.60s: %w", s, err), tx.Rollback())
		}
	}
	return tx.Commit()
}

// mysqlFidelity makes MariaDB's table under a named lock, then replaces its
// rows in one transaction.
func mysqlFidelity(db *sql.DB) error {
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var got int
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK('gft_schema', 60)").Scan(&got); err != nil || got != 1 {
		return fmt.Errorf("GET_LOCK('gft_schema'): %d, %w", got, err)
	}
	defer conn.ExecContext(ctx, "SELECT RELEASE_LOCK('gft_schema')")
	if _, err := conn.ExecContext(ctx, fidelityMySQL[0]); err != nil {
		return err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, s := range fidelityMySQL[1:] {
		if _, err := tx.Exec(s); err != nil {
			return errors.Join(err, tx.Rollback())
		}
	}
	return tx.Commit()
}
