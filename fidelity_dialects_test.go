package gormflight

import (
	"database/sql"
	"encoding/json"
	"testing"
	"time"

	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Fidelity on MariaDB and SQLite, as TestFidelity on PostgreSQL: every query
// path run live, cached and cached again (a Redis hit) must give the same
// values, column types, RowsAffected and errors. MariaDB is read through
// both of its protocols (a statement without arguments is sent as text,
// one with arguments is prepared: binary) and with parseTime on and off.

// fidMySQLSchema is every column kind MariaDB returns, with its extremes, a
// row of NULLs and a row of zero values (the zero date included, which the
// default sql_mode accepts).
var fidMySQLSchema = []string{
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

type fidMy struct {
	ID          int64
	Ti          int8
	Si          int16
	Mi, I       int32
	Bi          int64
	Ubi         uint64
	Dec1        string
	F           float32
	D           float64
	B1          bool
	Bit8        []byte
	Vc, Tx      string
	Bl, Bin, Vb []byte
	Dt, Ts, Da  time.Time
	Tm          string
	Yr          int16
	Js          json.RawMessage
	En, St      string
}

func (fidMy) TableName() string { return "gft_fid_my1" }

// fidMyText is fidMy without parseTime: DATETIME, TIMESTAMP and DATE come
// as text. (A time.Time field fails to scan them, and GORM then leaves the
// fields after the failing column as its pool of scan values holds them:
// no result to compare.)
type fidMyText struct {
	ID         int64
	Ubi        uint64
	Bit8       []byte
	Dt, Ts, Da string
	Tm         []byte
	Yr         string
	En, St     string
}

func (fidMyText) TableName() string { return "gft_fid_my1" }

type fidMyTextNull struct {
	ID  int64
	Ubi sql.Null[uint64]
	Dt  sql.NullString
	Ts  *[]byte
	Yr  *string
}

func (fidMyTextNull) TableName() string { return "gft_fid_my1" }

type fidMyNull struct {
	ID   int64
	Ubi  sql.Null[uint64]
	Dec1 sql.NullString
	F    sql.NullFloat64
	Bit8 *[]byte
	Dt   sql.NullTime
	Tm   *string
	Js   *json.RawMessage
	Yr   sql.NullInt16
}

func (fidMyNull) TableName() string { return "gft_fid_my1" }

// fidSQLiteSchema is every storage class SQLite returns, the types its
// driver parses by declared type, and a column whose values change class
// from row to row (SQLite keeps a value's class, not its column's).
var fidSQLiteSchema = []string{
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

type fidLite struct {
	ID         int64
	I          int64
	R          float64
	T          string
	B          []byte
	N          float64
	Bo         bool
	Dt, Da, Ts time.Time
}

func (fidLite) TableName() string { return "gft_fid_lite" }

type fidLiteNull struct {
	ID int64
	I  sql.NullInt64
	T  *string
	B  *[]byte
	Dt sql.NullTime
}

func (fidLiteNull) TableName() string { return "gft_fid_lite" }

func TestFidelityDialects(t *testing.T) {
	t.Run("mysql", func(t *testing.T) {
		d := &mysqlTestDB
		live := d.open(t)
		d.setup(t, live, schemaLockFidelity, fidMySQLSchema...)
		t.Run("parseTime", func(t *testing.T) { fidDialectPaths[fidMy, fidMyNull](t, d.instances(t, 1, nil)[0], "gft_fid_my1") })
		t.Run("noParseTime", func(t *testing.T) {
			db, err := gorm.Open(mysql.Open(testMySQLDSN()), &gorm.Config{Logger: logger.Discard})
			if err != nil {
				t.Fatal(err)
			}
			in := installPlugin(t, closeWhenDone(t, db), testConfig(openRedis(t, ""), testPrefix(t)))
			fidDialectPaths[fidMyText, fidMyTextNull](t, in, "gft_fid_my1")
		})
	})
	t.Run("sqlite", func(t *testing.T) {
		d := &sqliteTestDB
		in := d.instances(t, 1, nil)[0]
		d.setup(t, in.db, schemaLockFidelity, fidSQLiteSchema...)
		fidDialectPaths[fidLite, fidLiteNull](t, in, "gft_fid_lite")
	})
}

// fidDialectPaths runs every query path on table, read into T (plain
// fields), N (nullable fields), maps and raw rows.
func fidDialectPaths[T, N any](t *testing.T, in *instance, table string) {
	t.Run("Struct", func(t *testing.T) { fidStructPaths[T](t, in) })
	t.Run("StructNull", func(t *testing.T) { fidStructPaths[N](t, in) })
	all := "SELECT * FROM " + table + " ORDER BY id"
	fidRunCases(t,
		fidDest("ModelMaps", in, func(db *gorm.DB, d *fidMaps) *gorm.DB { return db.Model(new(T)).Order("id").Find(d) }),
		fidDest("TableMaps", in, func(db *gorm.DB, d *fidMaps) *gorm.DB { return db.Table(table).Order("id").Find(d) }),
		fidDest("RawMapsText", in, func(db *gorm.DB, d *fidMaps) *gorm.DB { return db.Raw(all).Scan(d) }),
		fidDest("RawMapsBinary", in, func(db *gorm.DB, d *fidMaps) *gorm.DB {
			return db.Raw("SELECT * FROM "+table+" WHERE id > ? ORDER BY id", 0).Scan(d)
		}),
		fidDest("SingleMap", in, func(db *gorm.DB, d *map[string]any) *gorm.DB { return db.Table(table).Where("id = ?", 1).Take(d) }),
		fidDest("Count", in, func(db *gorm.DB, n *int64) *gorm.DB { return db.Model(new(T)).Where("id > ?", 1).Count(n) }),
		fidDest("PluckID", in, func(db *gorm.DB, d *[]int64) *gorm.DB { return db.Model(new(T)).Order("id").Pluck("id", d) }),
		fidDest("RawScalar", in, func(db *gorm.DB, d *sql.NullInt64) *gorm.DB {
			return db.Raw("SELECT count(*) FROM "+table+" WHERE id <> ?", 2).Scan(d)
		}),
		fidCase{"RawRowsText", func(t *testing.T) {
			fidCheck(t, in, func(cache bool) (fidRaw, int64, error) { return fidRawRows(fidScoped(in, cache), all) })
		}},
		fidCase{"RawRowsBinary", func(t *testing.T) {
			fidCheck(t, in, func(cache bool) (fidRaw, int64, error) {
				return fidRawRows(fidScoped(in, cache), "SELECT * FROM "+table+" WHERE id >= ? ORDER BY id", 1)
			})
		}},
	)
}
