package gormflight

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	_ "time/tzdata" // the session time zones below, wherever the tests run

	"github.com/gormflight/gormflight/internal/testdb"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
)

// Fidelity, differential: every query path and destination kind is run live
// (no scope), cached (first call: the flight's own entry) and cached again
// (a Redis hit: a decoded entry). Both cached results must deep-equal the
// live one, with the same RowsAffected and the same error. The tables are
// internal/testdb's.

func fidSetup(t *testing.T, db *gorm.DB) {
	t.Helper()
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	testdb.SetupFidelity(t, "postgres", sqlDB)
}

type fidPlain struct {
	ID          int64
	I2          int16
	I4          int32
	I8          int64
	Num         string
	F4          float32
	F8          float64
	Txt, Vc     string
	B           bool
	Tstz, Ts, D time.Time
	Tm, Iv, U   string
	Js, Jb      json.RawMessage
	By          []byte
	Ta, Ia      string
}

type fidPtr struct {
	ID          int64
	I2          *int16
	I4          *int32
	I8          *int64
	Num         *string
	F4          *float32
	F8          *float64
	Txt, Vc     *string
	B           *bool
	Tstz, Ts, D *time.Time
	Tm, Iv, U   *string
	Js          *string
	Jb, By      *[]byte
	Ta, Ia      *string
}

type fidNull struct {
	ID               int64
	I2               sql.NullInt16
	I4               sql.NullInt32
	I8               sql.NullInt64
	Num              sql.NullString
	F4, F8           sql.NullFloat64
	Txt              sql.NullString
	Vc               sql.Null[string]
	B                sql.NullBool
	Tstz, Ts, D      sql.NullTime
	Tm, Iv, U, Js    sql.NullString
	Jb, By           sql.Null[[]byte]
	Ta, Ia           sql.NullString
	Tstz2            sql.Null[time.Time] `gorm:"column:tstz;->"`
	WholeNumberAsF64 sql.NullFloat64     `gorm:"column:i8;->"`
}

// fidDecimal is a custom Scanner/Valuer: an exact decimal, canonicalised.
type fidDecimal struct {
	Rat   string
	Valid bool
}

func (d *fidDecimal) Scan(src any) error {
	s, _ := src.(string)
	r, ok := new(big.Rat).SetString(s)
	if src != nil && !ok {
		return fmt.Errorf("fidDecimal: cannot scan %#v", src)
	}
	if *d = (fidDecimal{Valid: ok}); ok {
		d.Rat = r.RatString()
	}
	return nil
}

func (d fidDecimal) Value() (driver.Value, error) {
	if !d.Valid {
		return nil, nil
	}
	return d.Rat, nil
}

// fidUUID is a custom Scanner/Valuer over the 16 bytes of a uuid.
type fidUUID [16]byte

func (u *fidUUID) Scan(src any) error {
	s, _ := src.(string)
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if src != nil && (err != nil || len(b) != 16) {
		return fmt.Errorf("fidUUID: cannot scan %#v", src)
	}
	*u = fidUUID{}
	copy(u[:], b)
	return nil
}

func (u fidUUID) Value() (driver.Value, error) { return hex.EncodeToString(u[:]), nil }

type fidDoc struct {
	A map[string]any `json:"a"`
	S string         `json:"s"`
}

type fidCustom struct {
	ID  int64
	Num fidDecimal
	U   fidUUID
	Js  fidDoc         `gorm:"serializer:json"`
	Jb  map[string]any `gorm:"serializer:json"`
}

type FidNums struct {
	I2 int16
	I4 *int32
	I8 sql.NullInt64
}

type FidMisc struct {
	Txt  string
	Vc   *string
	Tstz *time.Time
	D    time.Time
}

type fidEmbedded struct {
	ID      int64
	FidNums         // anonymous embedding
	Misc    FidMisc `gorm:"embedded"`
}

var fidAfterFinds atomic.Int64

type fidHooked struct {
	ID   int64
	Txt  *string
	I8   *int64
	Seen string `gorm:"-"`
}

func (h *fidHooked) AfterFind(*gorm.DB) error {
	h.Seen = "after-find ran"
	fidAfterFinds.Add(1)
	return nil
}

type fidOwner struct {
	ID    int64
	Name  string
	Born  *time.Time
	Items []fidItem `gorm:"foreignKey:OwnerID"`
}

type fidItem struct {
	ID      int64
	OwnerID *int64
	Label   string
	Price   fidDecimal
	Tags    *string
	Owner   *fidOwner `gorm:"foreignKey:OwnerID"`
}

func (fidPlain) TableName() string    { return "gft_fid_kinds" }
func (fidPtr) TableName() string      { return "gft_fid_kinds" }
func (fidNull) TableName() string     { return "gft_fid_kinds" }
func (fidCustom) TableName() string   { return "gft_fid_kinds" }
func (fidEmbedded) TableName() string { return "gft_fid_kinds" }
func (fidHooked) TableName() string   { return "gft_fid_kinds" }
func (fidOwner) TableName() string    { return "gft_fid_owner" }
func (fidItem) TableName() string     { return "gft_fid_item" }

// fidDifferential runs run live, then cached twice. lookups is how many cache
// lookups (hits+misses) one run makes; hits is how many of them the second
// cached run must find in Redis (0 for a query that fails: errors are never
// stored).
func fidDifferential[D any](t *testing.T, in *instance, lookups, hits int, run func(cache bool) (D, int64, error)) {
	t.Helper()
	live, liveRows, liveErr := run(false)
	for i, label := range []string{"cached", "cached (redis hit)"} {
		before := in.p.Stats()
		got, rows, err := run(true)
		after := in.p.Stats()
		if n := (after.Hits + after.Misses) - (before.Hits + before.Misses); n != uint64(lookups) {
			t.Errorf("%s: %d cache lookups, want %d (query not routed through the cache?)", label, n, lookups)
		}
		if i == 1 && (after.Hits-before.Hits != uint64(hits) || after.Misses-before.Misses != uint64(lookups-hits)) {
			t.Errorf("%s: hits +%d misses +%d, want hits +%d misses +%d (uncached +%d)", label,
				after.Hits-before.Hits, after.Misses-before.Misses, hits, lookups-hits, after.Uncached-before.Uncached)
		}
		if rows != liveRows {
			t.Errorf("%s: RowsAffected %d, live %d", label, rows, liveRows)
		}
		if (err == nil) != (liveErr == nil) || (err != nil && err.Error() != liveErr.Error()) {
			t.Errorf("%s: error %v, live error %v", label, err, liveErr)
			continue // the result of a failed call is no news
		}
		for _, target := range []error{gorm.ErrRecordNotFound, sql.ErrNoRows} {
			if errors.Is(err, target) != errors.Is(liveErr, target) {
				t.Errorf("%s: errors.Is(err, %v) = %v, live %v", label, target, errors.Is(err, target), errors.Is(liveErr, target))
			}
		}
		if diffs := fidDiff(live, got); len(diffs) > 0 {
			t.Errorf("%s result differs from live:\n\t%s", label, strings.Join(diffs, "\n\t"))
		}
	}
}

// check is differential for the common case: one lookup, a hit when stored.
func fidCheck[D any](t *testing.T, in *instance, run func(cache bool) (D, int64, error)) {
	t.Helper()
	fidDifferential(t, in, 1, 1, run)
}

// scoped returns in.db, opted into the cache when cache is set.
func fidScoped(in *instance, cache bool) *gorm.DB {
	if cache {
		return in.db.Scopes(Cache(time.Minute))
	}
	return in.db
}

// into adapts a GORM call filling a fresh *D to differential.
func fidInto[D any](in *instance, q func(db *gorm.DB, dest *D) *gorm.DB) func(bool) (D, int64, error) {
	return func(cache bool) (D, int64, error) {
		var d D
		r := q(fidScoped(in, cache), &d)
		return d, r.RowsAffected, r.Error
	}
}

type fidMaps = []map[string]any

type fidCase struct {
	name string
	run  func(*testing.T)
}

func fidRunCases(t *testing.T, cases ...fidCase) {
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

// dest is a case checking one GORM call into a fresh *D.
func fidDest[D any](name string, in *instance, q func(db *gorm.DB, d *D) *gorm.DB) fidCase {
	return fidCase{name, func(t *testing.T) { fidCheck(t, in, fidInto(in, q)) }}
}

func fidPluck[D any](in *instance, col string) fidCase {
	return fidDest(fmt.Sprintf("%s:%T", col, *new(D)), in, func(db *gorm.DB, d *D) *gorm.DB { return db.Model(&fidPlain{}).Order("id").Pluck(col, d) })
}

// fidDiff lists where got differs from want, by path, with both values.
func fidDiff(want, got any) []string {
	var out []string
	fidDiffValue("result", reflect.ValueOf(want), reflect.ValueOf(got), &out)
	return out
}

func fidShow(v reflect.Value) string {
	if !v.IsValid() {
		return "<missing>"
	}
	s := fmt.Sprintf("%#v", v)
	if tm, ok := v.Interface().(time.Time); ok {
		s = fmt.Sprintf("%s (loc %q %p)", tm.Format(time.RFC3339Nano), tm.Location(), tm.Location())
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func fidDiffValue(path string, a, b reflect.Value, out *[]string) {
	add := func() { *out = append(*out, fmt.Sprintf("%s: live %s, cached %s", path, fidShow(a), fidShow(b))) }
	switch {
	case len(*out) >= 25:
		return
	case !a.IsValid() || !b.IsValid():
		if a.IsValid() != b.IsValid() {
			add()
		}
		return
	case a.Type() != b.Type():
		add()
		return
	case reflect.DeepEqual(a.Interface(), b.Interface()):
		return
	}
	switch a.Kind() {
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			add()
			return
		}
		fidDiffValue(path, a.Elem(), b.Elem(), out)
	case reflect.Slice, reflect.Array:
		if a.Kind() == reflect.Slice && (a.IsNil() != b.IsNil() || a.Len() != b.Len()) {
			add()
			return
		}
		for i := range a.Len() {
			fidDiffValue(fmt.Sprintf("%s[%d]", path, i), a.Index(i), b.Index(i), out)
		}
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			add()
			return
		}
		for _, k := range a.MapKeys() {
			fidDiffValue(fmt.Sprintf("%s[%v]", path, k), a.MapIndex(k), b.MapIndex(k), out)
		}
	case reflect.Struct:
		if a.Type() == reflect.TypeFor[time.Time]() {
			add()
			return
		}
		for i := range a.NumField() {
			if f := a.Type().Field(i); f.IsExported() {
				fidDiffValue(path+"."+f.Name, a.Field(i), b.Field(i), out)
			}
		}
	default:
		add()
	}
}

// structPaths runs every single-model query path into destination type T.
func fidStructPaths[T any](t *testing.T, in *instance) {
	fidRunCases(t,
		fidDest("Find", in, func(db *gorm.DB, d *[]T) *gorm.DB { return db.Order("id").Find(d) }),
		fidDest("FindPtrSlice", in, func(db *gorm.DB, d *[]*T) *gorm.DB { return db.Order("id DESC").Find(d) }),
		fidDest("FindEmpty", in, func(db *gorm.DB, d *[]T) *gorm.DB { return db.Where("id < 0").Find(d) }),
		fidDest("First/1", in, func(db *gorm.DB, d *T) *gorm.DB { return db.First(d, 1) }),
		fidDest("First/2", in, func(db *gorm.DB, d *T) *gorm.DB { return db.First(d, 2) }),
		fidDest("First/3", in, func(db *gorm.DB, d *T) *gorm.DB { return db.First(d, 3) }),
		fidDest("FirstNotFound", in, func(db *gorm.DB, d *T) *gorm.DB { return db.First(d, 999) }),
		fidDest("Take", in, func(db *gorm.DB, d *T) *gorm.DB { return db.Where("id = ?", 2).Take(d) }),
		fidDest("TakeNotFound", in, func(db *gorm.DB, d *T) *gorm.DB { return db.Where("id > ?", 999).Take(d) }),
		fidDest("Last", in, func(db *gorm.DB, d *T) *gorm.DB { return db.Last(d) }),
		fidCase{"ScanRows", func(t *testing.T) {
			fidCheck(t, in, func(cache bool) ([]T, int64, error) {
				db := fidScoped(in, cache)
				rows, err := db.Model(new(T)).Order("id").Rows()
				if err != nil {
					return nil, 0, err
				}
				defer rows.Close()
				var out []T
				for rows.Next() {
					var r T
					if err := db.ScanRows(rows, &r); err != nil {
						return out, 0, err
					}
					out = append(out, r)
				}
				return out, int64(len(out)), rows.Err()
			})
		}},
	)
}

func TestFidelity(t *testing.T) {
	in := newInstances(t, 1, nil)[0]
	fidSetup(t, in.db)

	t.Run("Struct/plain", func(t *testing.T) { fidStructPaths[fidPlain](t, in) })
	t.Run("Struct/pointer", func(t *testing.T) { fidStructPaths[fidPtr](t, in) })
	t.Run("Struct/sqlNull", func(t *testing.T) { fidStructPaths[fidNull](t, in) })
	t.Run("Struct/customScannerSerializer", func(t *testing.T) { fidStructPaths[fidCustom](t, in) })
	t.Run("Struct/embedded", func(t *testing.T) { fidStructPaths[fidEmbedded](t, in) })
	t.Run("Struct/afterFindHook", func(t *testing.T) {
		fidStructPaths[fidHooked](t, in)
		// The hook's side effect, counted per call, must match too.
		fidCheck(t, in, func(cache bool) (int64, int64, error) {
			before := fidAfterFinds.Load()
			var rows []fidHooked
			r := fidScoped(in, cache).Order("id").Find(&rows)
			return fidAfterFinds.Load() - before, r.RowsAffected, r.Error
		})
	})

	t.Run("Maps", func(t *testing.T) {
		fidRunCases(t,
			fidDest("ModelFind", in, func(db *gorm.DB, d *fidMaps) *gorm.DB { return db.Model(&fidPlain{}).Order("id").Find(d) }),
			fidDest("ModelNull", in, func(db *gorm.DB, d *fidMaps) *gorm.DB { return db.Model(&fidNull{}).Order("id").Find(d) }),
			fidDest("TableFind", in, func(db *gorm.DB, d *fidMaps) *gorm.DB { return db.Table("gft_fid_kinds").Order("id").Find(d) }),
			fidDest("RawScan", in, func(db *gorm.DB, d *fidMaps) *gorm.DB {
				return db.Raw("SELECT * FROM gft_fid_kinds ORDER BY id").Scan(d)
			}),
			fidDest("RawFind", in, func(db *gorm.DB, d *fidMaps) *gorm.DB {
				return db.Raw("SELECT * FROM gft_fid_kinds ORDER BY id").Find(d)
			}),
			fidDest("RawExprCols", in, func(db *gorm.DB, d *fidMaps) *gorm.DB {
				return db.Raw("SELECT i8 * 2 AS x, num::text || '!' AS y, ta[3] AS z, NULL AS n FROM gft_fid_kinds ORDER BY id").Scan(d)
			}),
			fidDest("RawEmpty", in, func(db *gorm.DB, d *fidMaps) *gorm.DB {
				return db.Raw("SELECT * FROM gft_fid_kinds WHERE id < 0").Scan(d)
			}),
			fidDest("SingleMap", in, func(db *gorm.DB, d *map[string]any) *gorm.DB {
				return db.Table("gft_fid_kinds").Where("id = ?", 1).Take(d)
			}),
		)
	})

	t.Run("Count", func(t *testing.T) {
		m := func(db *gorm.DB) *gorm.DB { return db.Model(&fidPlain{}) }
		fidRunCases(t,
			fidDest("all", in, func(db *gorm.DB, n *int64) *gorm.DB { return m(db).Count(n) }),
			fidDest("where", in, func(db *gorm.DB, n *int64) *gorm.DB { return m(db).Where("i8 IS NOT NULL").Count(n) }),
			fidDest("none", in, func(db *gorm.DB, n *int64) *gorm.DB { return m(db).Where("id < 0").Count(n) }),
			fidDest("distinct", in, func(db *gorm.DB, n *int64) *gorm.DB { return m(db).Distinct("b").Count(n) }),
			fidDest("table", in, func(db *gorm.DB, n *int64) *gorm.DB {
				return db.Table("gft_fid_item").Where("owner_id = ?", 1).Count(n)
			}),
		)
	})

	t.Run("Pluck", func(t *testing.T) {
		fidRunCases(t,
			fidPluck[[]sql.NullInt64](in, "i8"), fidPluck[[]*string](in, "num"), fidPluck[[]*float32](in, "f4"),
			fidPluck[[]*time.Time](in, "tstz"), fidPluck[[]sql.NullTime](in, "ts"), fidPluck[[]sql.NullTime](in, "d"),
			fidPluck[[][]byte](in, "by"), fidPluck[[]json.RawMessage](in, "jb"), fidPluck[[]*string](in, "ta"),
			fidPluck[[]sql.NullBool](in, "b"), fidPluck[[]fidUUID](in, "u"), fidPluck[[]fidDecimal](in, "num"),
			fidPluck[[]int64](in, "i8"), // NULL into int64: the same Scan error
			fidDest("nonNull", in, func(db *gorm.DB, d *[]int64) *gorm.DB {
				return db.Model(&fidPlain{}).Where("i8 IS NOT NULL").Order("id").Pluck("i8", d)
			}),
		)
	})

	type summary struct {
		ID    int64
		Txt   *string
		Total *float64
		When  sql.NullTime
	}
	sel := "id, txt, i8 + i4 AS total, tstz AS \"when\""
	t.Run("Scan", func(t *testing.T) {
		fidRunCases(t,
			fidDest("StructOne", in, func(db *gorm.DB, d *summary) *gorm.DB {
				return db.Table("gft_fid_kinds").Select(sel).Where("id = ?", 1).Scan(d)
			}),
			fidDest("StructNone", in, func(db *gorm.DB, d *summary) *gorm.DB {
				return db.Table("gft_fid_kinds").Select(sel).Where("id = ?", 999).Scan(d)
			}),
			fidDest("Slice", in, func(db *gorm.DB, d *[]summary) *gorm.DB { return db.Model(&fidPlain{}).Select(sel).Order("id").Scan(d) }),
			fidDest("ModelIntoOtherStruct", in, func(db *gorm.DB, d *[]fidNull) *gorm.DB { return db.Model(&fidPlain{}).Order("id").Scan(d) }),
			fidDest("RawStructs", in, func(db *gorm.DB, d *[]fidPtr) *gorm.DB {
				return db.Raw("SELECT * FROM gft_fid_kinds WHERE id <> ? ORDER BY id", 999).Scan(d)
			}),
			fidDest("RawFindStructs", in, func(db *gorm.DB, d *[]fidCustom) *gorm.DB {
				return db.Raw("SELECT * FROM gft_fid_kinds ORDER BY id").Find(d)
			}),
			fidDest("RawScalar", in, func(db *gorm.DB, d *int64) *gorm.DB { return db.Raw("SELECT sum(i8) FROM gft_fid_kinds").Scan(d) }),
			fidDest("RawTime", in, func(db *gorm.DB, d *time.Time) *gorm.DB {
				return db.Raw("SELECT tstz FROM gft_fid_kinds WHERE id = 1").Scan(d)
			}),
			fidDest("RawScanTypeError", in, func(db *gorm.DB, d *[]struct{ Txt int64 }) *gorm.DB {
				return db.Raw("SELECT txt FROM gft_fid_kinds WHERE id = 1").Scan(d)
			}),
			fidCase{"SQLError", func(t *testing.T) {
				fidDifferential(t, in, 1, 0, fidInto(in, func(db *gorm.DB, d *[]fidPlain) *gorm.DB { return db.Where("no_such_column = 1").Find(d) }))
			}},
			fidDest("FirstOrInitMissing", in, func(db *gorm.DB, d *fidPlain) *gorm.DB {
				return db.Where(fidPlain{ID: 999}).Attrs(fidPlain{Txt: "init"}).FirstOrInit(d)
			}),
			fidDest("FirstOrInitFound", in, func(db *gorm.DB, d *fidPlain) *gorm.DB { return db.Where(fidPlain{ID: 1}).FirstOrInit(d) }),
			fidCase{"FindInBatches", func(t *testing.T) {
				fidDifferential(t, in, 2, 2, func(cache bool) ([][]fidPtr, int64, error) {
					var all [][]fidPtr
					var batch []fidPtr
					r := fidScoped(in, cache).FindInBatches(&batch, 2, func(*gorm.DB, int) error {
						all = append(all, append([]fidPtr(nil), batch...))
						return nil
					})
					return all, r.RowsAffected, r.Error
				})
			}},
		)
	})

	t.Run("Row", func(t *testing.T) {
		type vars struct {
			I8   sql.NullInt64
			Num  *string
			Tstz *time.Time
			Ts   sql.NullTime
			By   []byte
			Ia   sql.NullString
			F8   *float64
		}
		for _, c := range []struct {
			name, col string
			id, hits  int
		}{{"1", "f8", 1, 1}, {"2", "f8", 2, 1}, {"3", "f8", 3, 1}, {"none", "f8", 999, 1}, {"badColumn", "no_such_column", 1, 0}} {
			t.Run(c.name, func(t *testing.T) {
				fidDifferential(t, in, 1, c.hits, func(cache bool) (vars, int64, error) {
					var v vars
					q := fidScoped(in, cache).Table("gft_fid_kinds").Select("i8, num, tstz, ts, by, ia, "+c.col).Where("id = ?", c.id)
					err := q.Row().Scan(&v.I8, &v.Num, &v.Tstz, &v.Ts, &v.By, &v.Ia, &v.F8)
					return v, 0, err
				})
				fidDifferential(t, in, 1, c.hits, func(cache bool) (fidRaw, int64, error) {
					return fidRawRows(fidScoped(in, cache), "SELECT i8, num, "+c.col+" FROM gft_fid_kinds WHERE id = ?", c.id)
				})
			})
		}
	})

	t.Run("RowsDriverValues", func(t *testing.T) {
		// Scanning into *any exposes the driver values themselves, and
		// ColumnTypes what the driver reports about each column.
		fidCheck(t, in, func(cache bool) (fidRaw, int64, error) {
			return fidRawRows(fidScoped(in, cache), "SELECT * FROM gft_fid_kinds ORDER BY id")
		})
	})
	t.Run("SpecialValues", func(t *testing.T) {
		// NaN != NaN for DeepEqual: compare float bits instead.
		fidCheck(t, in, func(cache bool) ([]string, int64, error) {
			raw, n, err := fidRawRows(fidScoped(in, cache), `SELECT 'NaN'::float8, '-Infinity'::float8, '-0'::float8, 'NaN'::real,
				'NaN'::numeric, 'infinity'::timestamptz, '-infinity'::timestamp, 'infinity'::date, ''::text, ''::bytea, '""'::jsonb`)
			var out []string
			for _, row := range raw.Values {
				for _, v := range row {
					if f, ok := v.(float64); ok {
						v = fmt.Sprintf("float64 bits %#x", math.Float64bits(f))
					}
					out = append(out, fmt.Sprintf("%T %#v", v, v))
				}
			}
			return out, n, err
		})
	})

	t.Run("Repro", func(t *testing.T) {
		// Minimal reproductions of the two replay discrepancies most cases
		// above hit: a NULL column fails the cached call; an empty bytea
		// comes back as a nil []byte.
		fidRunCases(t,
			fidDest("NullColumn", in, func(db *gorm.DB, d *sql.NullInt64) *gorm.DB { return db.Raw("SELECT NULL::bigint AS n").Scan(d) }),
			fidDest("EmptyBytea", in, func(db *gorm.DB, d *struct{ B []byte }) *gorm.DB { return db.Raw("SELECT ''::bytea AS b").Scan(d) }),
		)
	})

	t.Run("Preload", func(t *testing.T) {
		fidDifferential(t, in, 2, 2, fidInto(in, func(db *gorm.DB, d *[]fidOwner) *gorm.DB {
			return db.Preload("Items", func(db *gorm.DB) *gorm.DB { return db.Order("id") }).Order("id").Find(d)
		}))
	})
	t.Run("PreloadNested", func(t *testing.T) {
		fidDifferential(t, in, 3, 3, fidInto(in, func(db *gorm.DB, d *[]fidOwner) *gorm.DB {
			return db.Preload("Items", func(db *gorm.DB) *gorm.DB { return db.Order("id") }).Preload("Items.Owner").Order("id").Find(d)
		}))
	})
	fidRunCases(t,
		fidDest("Joins", in, func(db *gorm.DB, d *[]fidItem) *gorm.DB { return db.Joins("Owner").Order("gft_fid_item.id").Find(d) }),
		fidDest("JoinsFirst", in, func(db *gorm.DB, d *fidItem) *gorm.DB {
			return db.Joins("Owner").Where("\"Owner\".name = ?", "Bob").First(d)
		}),
	)

	t.Run("Generics", func(t *testing.T) { fidGenericsPaths(t, in) })

	// With TimeZone in the DSN, gorm.io/driver/postgres scans timestamp
	// columns into time.LoadLocation(TimeZone); with the simple protocol
	// timestamptz arrives as text and gets a fixed zone. CET is an IANA
	// zone whose winter abbreviation is its own name.
	for _, tz := range []struct {
		zone   string
		simple bool
	}{{"Asia/Kolkata", false}, {"Asia/Kolkata", true}, {"CET", false}} {
		t.Run(fmt.Sprintf("SessionTimeZone/%s/simpleProtocol=%v", tz.zone, tz.simple), func(t *testing.T) {
			tin := fidTZInstance(t, tz.zone, tz.simple)
			fidCheck(t, tin, fidInto(tin, func(db *gorm.DB, d *[]fidPlain) *gorm.DB { return db.Order("id").Find(d) }))
			fidCheck(t, tin, fidInto(tin, func(db *gorm.DB, d *fidMaps) *gorm.DB { return db.Table("gft_fid_kinds").Order("id").Find(d) }))
			fidCheck(t, tin, func(cache bool) (fidRaw, int64, error) {
				return fidRawRows(fidScoped(tin, cache), "SELECT * FROM gft_fid_kinds ORDER BY id")
			})
			// The zone's rules must survive: six months on, live and cached
			// times are in the same zone (CET: CEST in summer).
			fidCheck(t, tin, func(cache bool) (string, int64, error) {
				var r fidPlain
				q := fidScoped(tin, cache).First(&r, 1)
				name, off := r.Ts.AddDate(0, 6, 0).Zone()
				return fmt.Sprintf("%s %d", name, off), q.RowsAffected, q.Error
			})
		})
	}
}

type fidRaw struct {
	Columns [][]any // what *sql.ColumnType reports, column by column
	Values  [][]any
}

// rawRows reads a Raw query through Rows() into *any destinations.
func fidRawRows(db *gorm.DB, query string, args ...any) (fidRaw, int64, error) {
	var out fidRaw
	rows, err := db.Raw(query, args...).Rows()
	if err != nil {
		return out, 0, err
	}
	defer rows.Close()
	cts, err := rows.ColumnTypes()
	if err != nil {
		return out, 0, err
	}
	for _, c := range cts {
		null, nullOK := c.Nullable()
		length, lengthOK := c.Length()
		prec, scale, decOK := c.DecimalSize()
		out.Columns = append(out.Columns, []any{c.Name(), c.DatabaseTypeName(), c.ScanType(), null, nullOK, length, lengthOK, prec, scale, decOK})
	}
	for rows.Next() {
		vals := make([]any, len(cts))
		ptrs := make([]any, len(cts))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return out, 0, err
		}
		out.Values = append(out.Values, vals)
	}
	return out, int64(len(out.Values)), rows.Err()
}

// fidCacheStmt is Cache adapted to the generics API, whose Scopes take a
// *gorm.Statement. (Scopes on the *gorm.DB passed to gorm.G are dropped:
// G starts every query from a NewDB session.)
func fidCacheStmt(s *gorm.Statement) { Cache(time.Minute)(s.DB) }

// fidCacheClause opts a whole gorm.G[T](db, fidCacheClause{}) in, Raw
// included (ExecInterface has no Scopes): db.Clauses calls ModifyStatement.
type fidCacheClause struct{}

func (fidCacheClause) ModifyStatement(s *gorm.Statement) { fidCacheStmt(s) }
func (fidCacheClause) Build(clause.Builder)              {}

// fidG is gorm.G[T], opted in through fidCacheClause when cache is set.
func fidG[T any](in *instance, cache bool) gorm.Interface[T] {
	if cache {
		return gorm.G[T](in.db, fidCacheClause{})
	}
	return gorm.G[T](in.db)
}

// gcase checks a generics call making lookups cache lookups. The generics
// API reports no RowsAffected.
func fidGCase[R any](name string, in *instance, lookups int, f func(cache bool) (R, error)) fidCase {
	return fidCase{name, func(t *testing.T) {
		fidDifferential(t, in, lookups, lookups, func(cache bool) (R, int64, error) { r, err := f(cache); return r, 0, err })
	}}
}

func fidGenericsPaths(t *testing.T, in *instance) {
	ctx := context.Background()
	fidRunCases(t,
		fidGCase("FindWithScopes", in, 1, func(cache bool) ([]fidPtr, error) {
			q := gorm.G[fidPtr](in.db).Where("id > ?", 0)
			if cache {
				q = q.Scopes(fidCacheStmt)
			}
			return q.Order("id").Find(ctx)
		}),
		fidGCase("Find", in, 1, func(c bool) ([]fidPlain, error) { return fidG[fidPlain](in, c).Order("id").Find(ctx) }),
		fidGCase("First", in, 1, func(c bool) (fidNull, error) { return fidG[fidNull](in, c).First(ctx) }),
		fidGCase("FirstNotFound", in, 1, func(c bool) (fidPtr, error) { return fidG[fidPtr](in, c).Where("id > ?", 999).First(ctx) }),
		fidGCase("Take", in, 1, func(c bool) (fidCustom, error) { return fidG[fidCustom](in, c).Where("id = ?", 3).Take(ctx) }),
		fidGCase("Last", in, 1, func(c bool) (fidEmbedded, error) { return fidG[fidEmbedded](in, c).Last(ctx) }),
		fidGCase("Count", in, 1, func(c bool) (int64, error) { return fidG[fidPlain](in, c).Where("b IS NOT NULL").Count(ctx, "*") }),
		fidGCase("ScanMaps", in, 1, func(c bool) (m fidMaps, err error) {
			err = fidG[fidPlain](in, c).Order("id").Scan(ctx, &m)
			return
		}),
		fidGCase("RawFind", in, 1, func(c bool) ([]fidCustom, error) {
			return fidG[fidCustom](in, c).Raw("SELECT * FROM gft_fid_kinds ORDER BY id").Find(ctx)
		}),
		fidGCase("Preload", in, 2, func(c bool) ([]fidOwner, error) {
			order := func(db gorm.PreloadBuilder) error { db.Order("id"); return nil }
			return fidG[fidOwner](in, c).Preload("Items", order).Order("id").Find(ctx)
		}),
		fidGCase("Joins", in, 1, func(c bool) ([]fidItem, error) {
			return fidG[fidItem](in, c).Joins(clause.LeftJoin.Association("Owner"), nil).Order("gft_fid_item.id").Find(ctx)
		}),
	)
}

// fidTZInstance is an instance whose PostgreSQL session runs in time zone tz.
func fidTZInstance(t *testing.T, tz string, simple bool) *instance {
	dsn := testDSN()
	if strings.Contains(dsn, "://") {
		t.Skip("needs a key=value GORMFLIGHT_PG_DSN to add TimeZone")
	}
	db := openHandle(t, postgres.New(postgres.Config{DSN: dsn + " TimeZone=" + tz, PreferSimpleProtocol: simple}),
		&gorm.Config{Logger: logger.Discard})
	p, err := New(testConfig(openRedis(t, ""), testPrefix(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := db.Use(p); err != nil {
		t.Fatal(err)
	}
	return &instance{db: db, p: p}
}
