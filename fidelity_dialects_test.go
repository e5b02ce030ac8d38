package gormflight

import (
	"database/sql"
	"encoding/json"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/testdb"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Fidelity on MariaDB and SQLite, as TestFidelity on PostgreSQL: every query
// path run live, cached and cached again (a Redis hit) must give the same
// values, column types, RowsAffected and errors. MariaDB is read through
// both of its protocols (a statement without arguments is sent as text,
// one with arguments is prepared: binary) and with parseTime on and off.

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
		sqlDB, err := live.DB()
		if err != nil {
			t.Fatal(err)
		}
		testdb.SetupFidelity(t, "mysql", sqlDB)
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
		sqlDB, err := in.db.DB()
		if err != nil {
			t.Fatal(err)
		}
		testdb.SetupFidelity(t, "sqlite", sqlDB)
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
