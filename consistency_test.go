package gormflight

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/gormflight/gormflight/internal/dialect"
	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/sqlscan"
	"github.com/gormflight/gormflight/internal/testdb"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
)

// Consistency tests: a cached read never returns data older than a write
// that returned before the read started. Interleavings are forced with the
// engine's seam and with channels, never with sleeps; database executions
// are counted by PostgreSQL (gft_record), not by the plugin.

// ---------------------------------------------------------------------------
// Schema and models

const consSchemaSQL = `
CREATE SEQUENCE IF NOT EXISTS gft_cons_ids;
CREATE TABLE IF NOT EXISTS gft_cons_item (
	id bigint PRIMARY KEY DEFAULT nextval('gft_cons_ids'),
	grp bigint NOT NULL DEFAULT 0,
	val bigint NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS gft_cons_item_grp ON gft_cons_item (grp);
CREATE TABLE IF NOT EXISTS gft_cons_tag (
	id bigint PRIMARY KEY DEFAULT nextval('gft_cons_ids'),
	grp bigint NOT NULL DEFAULT 0,
	name text NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS gft_cons_item_tags (
	item_id bigint NOT NULL,
	tag_id bigint NOT NULL,
	PRIMARY KEY (item_id, tag_id));
CREATE TABLE IF NOT EXISTS gft_cons_note (
	id bigint PRIMARY KEY DEFAULT nextval('gft_cons_ids'),
	item_id bigint,
	body text NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS gft_cons_note_item ON gft_cons_note (item_id);
CREATE TABLE IF NOT EXISTS gft_cons_soft (
	id bigint PRIMARY KEY DEFAULT nextval('gft_cons_ids'),
	grp bigint NOT NULL DEFAULT 0,
	val bigint NOT NULL DEFAULT 0,
	deleted_at timestamptz);
CREATE TABLE IF NOT EXISTS gft_cons_trunc (id bigint, val bigint);`

var consSchemaSetup = schemaOnce{lock: schemaLockConsistency}

func consSchema(t testing.TB, db *gorm.DB) {
	t.Helper()
	err := consSchemaSetup.do(db, func(tx *gorm.DB) error {
		return tx.Exec(consSchemaSQL).Error
	})
	if err != nil {
		t.Fatalf("consistency schema: %v", err)
	}
}

// consSchemaOf is the consistency schema for MariaDB and SQLite, which
// number rows by auto-increment (autoIncrement: the key word), with text
// columns MariaDB can index and a time type of the driver's (the SQLite
// driver parses a column declared DATETIME, not DATETIME(6)).
func consSchemaOf(autoIncrement, datetime string) []string {
	id := "id " + autoIncrement
	return []string{
		`CREATE TABLE IF NOT EXISTS gft_cons_item (` + id + `, grp bigint NOT NULL DEFAULT 0, val bigint NOT NULL DEFAULT 0)`,
		`CREATE TABLE IF NOT EXISTS gft_cons_tag (` + id + `, grp bigint NOT NULL DEFAULT 0, name varchar(255) NOT NULL DEFAULT '')`,
		`CREATE TABLE IF NOT EXISTS gft_cons_item_tags (item_id bigint NOT NULL, tag_id bigint NOT NULL, PRIMARY KEY (item_id, tag_id))`,
		`CREATE TABLE IF NOT EXISTS gft_cons_note (` + id + `, item_id bigint, body varchar(255) NOT NULL DEFAULT '')`,
		`CREATE TABLE IF NOT EXISTS gft_cons_soft (` + id + `, grp bigint NOT NULL DEFAULT 0, val bigint NOT NULL DEFAULT 0, deleted_at ` + datetime + ` NULL)`,
		`CREATE TABLE IF NOT EXISTS gft_cons_trunc (id bigint, val bigint)`,
	}
}

// consSchemaOn sets the consistency schema up on d's database.
func consSchemaOn(t testing.TB, d *testDB, db *gorm.DB) {
	t.Helper()
	switch d.name {
	case "postgres":
		consSchema(t, db)
	case "mysql":
		d.setup(t, db, schemaLockConsistency, consSchemaOf("bigint AUTO_INCREMENT PRIMARY KEY", "datetime(6)")...)
	default:
		d.setup(t, db, schemaLockConsistency, consSchemaOf("INTEGER PRIMARY KEY AUTOINCREMENT", "datetime")...)
	}
}

type consItem struct {
	ID    int64
	Grp   int64
	Val   int64
	Tags  []consTag  `gorm:"many2many:gft_cons_item_tags;joinForeignKey:ItemID;joinReferences:TagID"`
	Notes []consNote `gorm:"foreignKey:ItemID"`
}

func (consItem) TableName() string { return "gft_cons_item" }

type consTag struct {
	ID   int64
	Grp  int64
	Name string
}

func (consTag) TableName() string { return "gft_cons_tag" }

type consNote struct {
	ID     int64
	ItemID *int64
	Body   string
}

func (consNote) TableName() string { return "gft_cons_note" }

type consSoft struct {
	ID        int64
	Grp       int64
	Val       int64
	DeletedAt gorm.DeletedAt
}

func (consSoft) TableName() string { return "gft_cons_soft" }

// consInstances returns n instances sharing a prefix, with the schema in place.
func consInstances(t *testing.T, n int, mod func(*Config)) []*instance {
	t.Helper()
	return consInstancesOn(t, &postgresTestDB, n, mod)
}

// consInstancesOn is consInstances on d's database.
func consInstancesOn(t *testing.T, d *testDB, n int, mod func(*Config)) []*instance {
	t.Helper()
	ins := d.instances(t, n, mod)
	consSchemaOn(t, d, ins[0].db)
	return ins
}

// consNextID returns a number no other test (or process) gets: row ids and
// groups come from one PostgreSQL sequence. On the other databases it is
// random, below the auto-increment ids' range.
func consNextID(t testing.TB, db *gorm.DB) int64 {
	t.Helper()
	if db.Dialector.Name() != "postgres" {
		return 1<<40 + mathrand.Int64N(1<<50)
	}
	var id int64
	if err := db.Session(&gorm.Session{NewDB: true}).Raw("SELECT nextval('gft_cons_ids')").Scan(&id).Error; err != nil {
		t.Fatal(err)
	}
	return id
}

// consNewItem inserts an item of group grp with val and returns its id.
func consNewItem(t testing.TB, db *gorm.DB, grp, val int64) int64 {
	t.Helper()
	it := consItem{Grp: grp, Val: val}
	if err := db.Create(&it).Error; err != nil {
		t.Fatal(err)
	}
	if it.ID == 0 {
		t.Fatal("Create returned no id")
	}
	return it.ID
}

const consNotFound = "not found"

// consFirst is the basic cached read: First by primary key.
func consFirst(id int64) func(db *gorm.DB) (string, error) {
	return func(db *gorm.DB) (string, error) {
		var it consItem
		err := db.Scopes(Cache(time.Minute)).First(&it, id).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return consNotFound, nil
		}
		return fmt.Sprintf("val=%d", it.Val), err
	}
}

// consCountedSQL reads one item; PostgreSQL records each execution under tag.
const consCountedSQL = "SELECT id, val, gft_record(?, 0) AS n FROM gft_cons_item WHERE id = ?"

func consCounted(tag string, id int64) func(db *gorm.DB) (string, error) {
	return func(db *gorm.DB) (string, error) {
		var r struct {
			ID, Val int64
			N       int
		}
		err := db.Scopes(Cache(time.Minute)).Raw(consCountedSQL, tag, id).Scan(&r).Error
		if err != nil {
			return "", err
		}
		if r.ID == 0 {
			return consNotFound, nil
		}
		return fmt.Sprintf("val=%d", r.Val), nil
	}
}

// consExpect runs read on in and fails the test unless it returns want.
func consExpect(t testing.TB, what string, in *instance, read func(*gorm.DB) (string, error), want string) {
	t.Helper()
	got, err := read(in.db)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != want {
		t.Errorf("%s: got %q, want %q", what, got, want)
	}
}

// consReadAfterWrite primes read on a, checks that b is then served from
// the cache (a hit), writes with write (through a's GORM handle) and checks
// that both a and b read the new value at once.
func consReadAfterWrite(t *testing.T, a, b *instance, read func(*gorm.DB) (string, error), write func(*gorm.DB) error, before, after string) {
	t.Helper()
	consExpect(t, "A before the write (prime)", a, read, before)
	hits := b.p.Stats().Hits
	consExpect(t, "B before the write", b, read, before)
	if b.p.Stats().Hits == hits {
		t.Errorf("B's read before the write was not served from the cache (Hits stayed %d): the test would prove nothing", hits)
	}
	inv := a.p.Stats().Invalidations
	if err := write(a.db); err != nil {
		t.Fatalf("write: %v", err)
	}
	if a.p.Stats().Invalidations == inv {
		t.Errorf("the write bumped no generation (Invalidations stayed %d)", inv)
	}
	consExpect(t, "A after the write", a, read, after)
	consExpect(t, "B after the write", b, read, after)
}

// ---------------------------------------------------------------------------
// 1. Read after write, for every kind of write.

func TestConsistencyReadAfterWrite(t *testing.T) {
	forEachDB(t, testReadAfterWrite)
}

func testReadAfterWrite(t *testing.T, d *testDB) {
	// item: one item with val 1 in a group of its own.
	item := func(t *testing.T) (a, b *instance, grp, id int64) {
		ins := consInstancesOn(t, d, 2, nil)
		a, b = ins[0], ins[1]
		grp = consNextID(t, a.db)
		id = consNewItem(t, a.db, grp, 1)
		return a, b, grp, id
	}

	t.Run("Update", func(t *testing.T) {
		a, b, _, id := item(t)
		consReadAfterWrite(t, a, b, consFirst(id), func(db *gorm.DB) error {
			return db.Model(&consItem{ID: id}).Update("val", 2).Error
		}, "val=1", "val=2")
	})
	t.Run("Save", func(t *testing.T) {
		a, b, grp, id := item(t)
		consReadAfterWrite(t, a, b, consFirst(id), func(db *gorm.DB) error {
			return db.Save(&consItem{ID: id, Grp: grp, Val: 2}).Error
		}, "val=1", "val=2")
	})
	t.Run("UpdatesMap", func(t *testing.T) {
		a, b, _, id := item(t)
		consReadAfterWrite(t, a, b, consFirst(id), func(db *gorm.DB) error {
			return db.Model(&consItem{ID: id}).Updates(map[string]any{"val": 2}).Error
		}, "val=1", "val=2")
	})
	t.Run("UpdateColumn", func(t *testing.T) {
		a, b, _, id := item(t)
		consReadAfterWrite(t, a, b, consFirst(id), func(db *gorm.DB) error {
			return db.Model(&consItem{ID: id}).UpdateColumn("val", 2).Error
		}, "val=1", "val=2")
	})
	t.Run("UpdateColumns", func(t *testing.T) {
		a, b, _, id := item(t)
		consReadAfterWrite(t, a, b, consFirst(id), func(db *gorm.DB) error {
			return db.Model(&consItem{ID: id}).UpdateColumns(consItem{Val: 2}).Error
		}, "val=1", "val=2")
	})
	t.Run("SkipDefaultTransaction", func(t *testing.T) {
		a, b, _, id := item(t)
		consReadAfterWrite(t, a, b, consFirst(id), func(db *gorm.DB) error {
			return db.Session(&gorm.Session{SkipDefaultTransaction: true}).Model(&consItem{ID: id}).Update("val", 2).Error
		}, "val=1", "val=2")
	})
	t.Run("TableQualifiedUpdate", func(t *testing.T) {
		a, b, _, id := item(t)
		consReadAfterWrite(t, a, b, consFirst(id), func(db *gorm.DB) error {
			return db.Table(d.qualified(t, db, "gft_cons_item")).Where("id = ?", id).Update("val", 2).Error
		}, "val=1", "val=2")
	})
	t.Run("UpsertOnConflict", func(t *testing.T) {
		a, b, grp, id := item(t)
		consReadAfterWrite(t, a, b, consFirst(id), func(db *gorm.DB) error {
			return db.Clauses(clause.OnConflict{UpdateAll: true}).Create(&consItem{ID: id, Grp: grp, Val: 2}).Error
		}, "val=1", "val=2")
	})
	t.Run("CreateInBatches", func(t *testing.T) {
		a, b, grp, _ := item(t)
		read := func(db *gorm.DB) (string, error) {
			var n int64
			err := db.Scopes(Cache(time.Minute)).Model(&consItem{}).Where("grp = ?", grp).Count(&n).Error
			return fmt.Sprintf("count=%d", n), err
		}
		consReadAfterWrite(t, a, b, read, func(db *gorm.DB) error {
			return db.CreateInBatches([]consItem{{Grp: grp}, {Grp: grp}, {Grp: grp}}, 2).Error
		}, "count=1", "count=4")
	})
	t.Run("Delete", func(t *testing.T) {
		a, b, _, id := item(t)
		consReadAfterWrite(t, a, b, consFirst(id), func(db *gorm.DB) error {
			return db.Delete(&consItem{ID: id}).Error
		}, "val=1", consNotFound)
	})
	t.Run("CreateSeenByFind", func(t *testing.T) {
		a, b, grp, _ := item(t)
		read := func(db *gorm.DB) (string, error) {
			var items []consItem
			err := db.Scopes(Cache(time.Minute)).Where("grp = ?", grp).Order("id").Find(&items).Error
			vals := make([]string, len(items))
			for i, it := range items {
				vals[i] = strconv.FormatInt(it.Val, 10)
			}
			return "[" + strings.Join(vals, " ") + "]", err
		}
		consReadAfterWrite(t, a, b, read, func(db *gorm.DB) error {
			return db.Create(&consItem{Grp: grp, Val: 7}).Error
		}, "[1]", "[1 7]")
	})
	t.Run("CreateSeenByCount", func(t *testing.T) {
		a, b, grp, _ := item(t)
		read := func(db *gorm.DB) (string, error) {
			var n int64
			err := db.Scopes(Cache(time.Minute)).Model(&consItem{}).Where("grp = ?", grp).Count(&n).Error
			return fmt.Sprintf("count=%d", n), err
		}
		consReadAfterWrite(t, a, b, read, func(db *gorm.DB) error {
			return db.Create(&[]consItem{{Grp: grp, Val: 7}, {Grp: grp, Val: 8}}).Error
		}, "count=1", "count=3")
	})
	t.Run("SoftDelete", func(t *testing.T) {
		ins := consInstancesOn(t, d, 2, nil)
		a, b := ins[0], ins[1]
		s := consSoft{Grp: consNextID(t, a.db), Val: 1}
		if err := a.db.Create(&s).Error; err != nil {
			t.Fatal(err)
		}
		// The whole row, deleted_at (NULL while live) included; GORM adds
		// "deleted_at IS NULL" to the scoped read.
		read := func(db *gorm.DB) (string, error) {
			var got consSoft
			err := db.Scopes(Cache(time.Minute)).First(&got, s.ID).Error
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return consNotFound, nil
			}
			return fmt.Sprintf("val=%d", got.Val), err
		}
		unscoped := func(db *gorm.DB) (string, error) {
			var got consSoft
			err := db.Scopes(Cache(time.Minute)).Unscoped().First(&got, s.ID).Error
			return fmt.Sprintf("val=%d deleted=%v", got.Val, got.DeletedAt.Valid), err
		}
		consExpect(t, "A unscoped before (prime)", a, unscoped, "val=1 deleted=false")
		consReadAfterWrite(t, a, b, read, func(db *gorm.DB) error {
			return db.Delete(&consSoft{ID: s.ID}).Error
		}, "val=1", consNotFound)
		consExpect(t, "B unscoped after", b, unscoped, "val=1 deleted=true")
	})
	t.Run("ExecUpdate", func(t *testing.T) {
		a, b, _, id := item(t)
		consReadAfterWrite(t, a, b, consFirst(id), func(db *gorm.DB) error {
			return db.Exec("UPDATE gft_cons_item SET val = ? WHERE id = ?", 2, id).Error
		}, "val=1", "val=2")
	})
	// The writes of each dialect's own SQL, run with Exec (and Raw for
	// those that return rows): each sets the item's val to 2, or deletes it.
	for _, w := range consDialectWrites[d.name] {
		t.Run(w.name, func(t *testing.T) {
			a, b, grp, id := item(t)
			consReadAfterWrite(t, a, b, consFirst(id), func(db *gorm.DB) error {
				args := []any{id}
				if strings.Count(w.sql, "?") == 2 {
					args = []any{id, grp}
				}
				if w.raw {
					var n int64
					return db.Raw(w.sql, args...).Scan(&n).Error
				}
				return db.Exec(w.sql, args...).Error
			}, "val=1", cmp.Or(w.after, "val=2"))
		})
	}
	t.Run("ExecTruncate", func(t *testing.T) {
		truncate := "TRUNCATE gft_cons_trunc"
		if d.name == "sqlite" {
			truncate = "DELETE FROM gft_cons_trunc" // SQLite's truncate
		}
		ins := consInstancesOn(t, d, 2, nil)
		a, b := ins[0], ins[1]
		if err := a.db.Exec(truncate).Error; err != nil {
			t.Fatal(err)
		}
		if err := a.db.Exec("INSERT INTO gft_cons_trunc (id, val) VALUES (1, 1), (2, 2), (3, 3)").Error; err != nil {
			t.Fatal(err)
		}
		read := func(db *gorm.DB) (string, error) {
			var n int64
			err := db.Scopes(Cache(time.Minute)).Raw("SELECT count(*) FROM gft_cons_trunc").Scan(&n).Error
			return fmt.Sprintf("count=%d", n), err
		}
		consReadAfterWrite(t, a, b, read, func(db *gorm.DB) error {
			return db.Exec(truncate).Error
		}, "count=3", "count=0")
	})
	t.Run("Many2ManyAppend", func(t *testing.T) {
		a, b, grp, id := item(t)
		tag := consTag{Grp: grp, Name: "red"}
		if err := a.db.Create(&tag).Error; err != nil {
			t.Fatal(err)
		}
		preload := func(db *gorm.DB) (string, error) {
			var it consItem
			err := db.Scopes(Cache(time.Minute)).Preload("Tags").First(&it, id).Error
			names := make([]string, len(it.Tags))
			for i, tg := range it.Tags {
				names[i] = tg.Name
			}
			return "tags=" + strings.Join(names, ","), err
		}
		joins := func(db *gorm.DB) (string, error) {
			var n int64
			err := db.Scopes(Cache(time.Minute)).Model(&consItem{}).
				Joins("JOIN gft_cons_item_tags it ON it.item_id = gft_cons_item.id").
				Where("gft_cons_item.id = ?", id).Count(&n).Error
			return fmt.Sprintf("joined=%d", n), err
		}
		count := func(db *gorm.DB) (string, error) {
			var n int64
			err := db.Scopes(Cache(time.Minute)).Raw("SELECT count(*) FROM gft_cons_item_tags WHERE item_id = ?", id).Scan(&n).Error
			return fmt.Sprintf("links=%d", n), err
		}
		for _, r := range []struct {
			read          func(*gorm.DB) (string, error)
			before, after string
		}{{preload, "tags=", "tags=red"}, {joins, "joined=0", "joined=1"}, {count, "links=0", "links=1"}} {
			consExpect(t, "prime", a, r.read, r.before)
			consExpect(t, "B before", b, r.read, r.before)
		}
		if err := a.db.Model(&consItem{ID: id}).Association("Tags").Append(&tag); err != nil {
			t.Fatal(err)
		}
		for _, r := range []struct {
			read  func(*gorm.DB) (string, error)
			after string
		}{{preload, "tags=red"}, {joins, "joined=1"}, {count, "links=1"}} {
			consExpect(t, "A after Append", a, r.read, r.after)
			consExpect(t, "B after Append", b, r.read, r.after)
		}
		// Replace, Delete and Clear write the join table too.
		blue := consTag{Grp: grp, Name: "blue"}
		if err := a.db.Create(&blue).Error; err != nil {
			t.Fatal(err)
		}
		consExpect(t, "B before Replace", b, preload, "tags=red")
		if err := a.db.Model(&consItem{ID: id}).Association("Tags").Replace(&blue); err != nil {
			t.Fatal(err)
		}
		consExpect(t, "B after Replace", b, preload, "tags=blue")
		consExpect(t, "B after Replace (count)", b, count, "links=1")
		if err := a.db.Model(&consItem{ID: id}).Association("Tags").Delete(&blue); err != nil {
			t.Fatal(err)
		}
		consExpect(t, "B after Delete", b, preload, "tags=")
		consExpect(t, "B after Delete (joins)", b, joins, "joined=0")
		if err := a.db.Model(&consItem{ID: id}).Association("Tags").Append(&tag, &blue); err != nil {
			t.Fatal(err)
		}
		consExpect(t, "B after Append of two", b, count, "links=2")
		if err := a.db.Model(&consItem{ID: id}).Association("Tags").Clear(); err != nil {
			t.Fatal(err)
		}
		consExpect(t, "B after Clear", b, count, "links=0")
		consExpect(t, "A after Clear", a, preload, "tags=")
	})
	t.Run("HasManyAppend", func(t *testing.T) {
		a, b, _, id := item(t)
		preload := func(db *gorm.DB) (string, error) {
			var it consItem
			err := db.Scopes(Cache(time.Minute)).Preload("Notes", func(db *gorm.DB) *gorm.DB { return db.Order("id") }).First(&it, id).Error
			bodies := make([]string, len(it.Notes))
			for i, n := range it.Notes {
				bodies[i] = n.Body
			}
			return "notes=" + strings.Join(bodies, ","), err
		}
		consReadAfterWrite(t, a, b, preload, func(db *gorm.DB) error {
			return db.Model(&consItem{ID: id}).Association("Notes").Append(&consNote{Body: "first"})
		}, "notes=", "notes=first")
		// An existing note moved to the item: an UPDATE of the note's foreign key.
		other := consNote{Body: "moved"}
		if err := a.db.Create(&other).Error; err != nil {
			t.Fatal(err)
		}
		consReadAfterWrite(t, a, b, preload, func(db *gorm.DB) error {
			return db.Model(&consItem{ID: id}).Association("Notes").Append(&other)
		}, "notes=first", "notes=first,moved")
	})
	t.Run("JoinInvalidatedByWriteToOtherTable", func(t *testing.T) {
		a, b, grp, id := item(t)
		tag := consTag{Grp: grp, Name: "before"}
		if err := a.db.Create(&tag).Error; err != nil {
			t.Fatal(err)
		}
		read := func(db *gorm.DB) (string, error) {
			var r struct {
				Val  int64
				Name string
			}
			err := db.Scopes(Cache(time.Minute)).Raw(
				"SELECT i.val, t.name FROM gft_cons_item i JOIN gft_cons_tag t ON t.grp = i.grp WHERE i.id = ?", id).Scan(&r).Error
			return fmt.Sprintf("%d/%s", r.Val, r.Name), err
		}
		consReadAfterWrite(t, a, b, read, func(db *gorm.DB) error {
			return db.Model(&consTag{ID: tag.ID}).Update("name", "after").Error
		}, "1/before", "1/after")
	})
	t.Run("Aggregate", func(t *testing.T) {
		a, b, grp, id := item(t)
		consNewItem(t, a.db, grp, 10)
		read := func(db *gorm.DB) (string, error) {
			var r struct{ S, M int64 }
			err := db.Scopes(Cache(time.Minute)).Raw("SELECT sum(val) AS s, max(val) AS m FROM gft_cons_item WHERE grp = ?", grp).Scan(&r).Error
			return fmt.Sprintf("sum=%d max=%d", r.S, r.M), err
		}
		consReadAfterWrite(t, a, b, read, func(db *gorm.DB) error {
			return db.Model(&consItem{ID: id}).Update("val", 100).Error
		}, "sum=11 max=10", "sum=110 max=100")
	})
}

// consDialectWrites are writes in each dialect's own SQL, for
// testReadAfterWrite. A statement with two parameters takes (id, grp), one
// with one takes id; each sets the item's val to 2 unless after says what
// it leaves.
var consDialectWrites = map[string][]struct {
	name, sql string
	raw       bool   // returns rows: run with Raw and scanned
	after     string // default "val=2"
}{
	"postgres": {
		{name: "ExecWriteInCTE", sql: "WITH u AS (UPDATE gft_cons_item SET val = 2 WHERE id = ? RETURNING id) SELECT count(*) FROM u"},
		{name: "RawWriteInCTEScanned", sql: "WITH u AS (UPDATE gft_cons_item SET val = 2 WHERE id = ? RETURNING id) SELECT count(*) FROM u", raw: true},
		{name: "InsertOnConflict", sql: "INSERT INTO gft_cons_item (id, grp, val) VALUES (?, ?, 2) ON CONFLICT (id) DO UPDATE SET val = excluded.val"},
	},
	"mysql": {
		{name: "OnDuplicateKeyUpdate", sql: "INSERT INTO gft_cons_item (id, grp, val) VALUES (?, ?, 2) ON DUPLICATE KEY UPDATE val = VALUES(val)"},
		{name: "Replace", sql: "REPLACE gft_cons_item (id, grp, val) VALUES (?, ?, 2)"},
		{name: "Backticks", sql: "UPDATE `gft_cons_item` SET `val` = 2 WHERE `id` = ?"},
		{name: "ExecutableComment", sql: "UPDATE /*! gft_cons_item */ SET val = 2 WHERE id = ?"},
		{name: "HashComment", sql: "UPDATE # a comment\ngft_cons_item SET val = 2 WHERE id = ?"},
		{name: "MultiTableUpdate", sql: "UPDATE (SELECT ? AS id) AS x JOIN gft_cons_item AS i ON i.id = x.id SET i.val = 2"},
		{name: "MultiTableDelete", sql: "DELETE i FROM gft_cons_item AS i JOIN (SELECT ? AS id) AS x ON x.id = i.id", after: consNotFound},
	},
	"sqlite": {
		{name: "InsertOrReplace", sql: "INSERT OR REPLACE INTO gft_cons_item (id, grp, val) VALUES (?, ?, 2)"},
		{name: "Replace", sql: "REPLACE INTO gft_cons_item (id, grp, val) VALUES (?, ?, 2)"},
		{name: "Upsert", sql: "INSERT INTO gft_cons_item (id, grp, val) VALUES (?, ?, 2) ON CONFLICT (id) DO UPDATE SET val = excluded.val"},
		{name: "UpdateOrIgnoreBrackets", sql: "UPDATE OR IGNORE [gft_cons_item] SET val = 2 WHERE id = ?"},
		{name: "Backticks", sql: "UPDATE main.`gft_cons_item` SET val = 2 WHERE id = ?"},
		{name: "DeleteReturning", sql: "DELETE FROM gft_cons_item WHERE id = ? RETURNING id", raw: true, after: consNotFound},
	},
}

// ---------------------------------------------------------------------------
// 2. Transactions.

var errConsRollback = errors.New("consistency test: roll back")

func TestConsistencyTransactions(t *testing.T) {
	t.Run("UncommittedNotVisible", func(t *testing.T) {
		ins := consInstances(t, 3, nil)
		a, b, c := ins[0], ins[1], ins[2]
		id := consNewItem(t, a.db, consNextID(t, a.db), 1)
		tag := uniqueTag(t)
		consExpect(t, "B prime", b, consFirst(id), "val=1")

		written, proceed := make(chan struct{}), make(chan struct{})
		var once sync.Once
		release := func() { once.Do(func() { close(proceed) }) }
		t.Cleanup(release)
		done := make(chan error, 1)
		go func() {
			done <- a.db.Transaction(func(tx *gorm.DB) error {
				if err := tx.Model(&consItem{ID: id}).Update("val", 2).Error; err != nil {
					return err
				}
				// Inside the transaction a cached read bypasses the cache
				// and sees the transaction's own write.
				var it consItem
				if err := tx.Scopes(Cache(time.Minute)).First(&it, id).Error; err != nil {
					return err
				}
				if it.Val != 2 {
					t.Errorf("read inside the transaction got val=%d, want its own write 2", it.Val)
				}
				close(written)
				<-proceed
				return nil
			})
		}()
		select {
		case <-written:
		case err := <-done:
			t.Fatalf("transaction ended early: %v", err)
		}
		inv := a.p.Stats().Invalidations
		// A hit of the entry cached before, a read on the writer's own
		// instance, and a miss that fills from the database while the row
		// is written but not committed: none may see the new value.
		consExpect(t, "B during the transaction (hit)", b, consFirst(id), "val=1")
		consExpect(t, "A outside the transaction", a, consFirst(id), "val=1")
		consExpect(t, "C during the transaction (miss, fills)", c, consCounted(tag, id), "val=1")
		consExpect(t, "B during the transaction (hit of C's fill)", b, consCounted(tag, id), "val=1")
		if got := calls(t, a.db, tag); got != 1 {
			t.Errorf("PostgreSQL ran the counted query %d times during the transaction, want 1", got)
		}
		if got := a.p.Stats().Invalidations; got != inv {
			t.Errorf("Invalidations went from %d to %d before the commit", inv, got)
		}
		release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := a.p.Stats().Invalidations; got == inv {
			t.Errorf("the commit bumped no generation")
		}
		for i, in := range ins {
			consExpect(t, fmt.Sprintf("instance %d after the commit", i), in, consFirst(id), "val=2")
			consExpect(t, fmt.Sprintf("instance %d after the commit (counted)", i), in, consCounted(tag, id), "val=2")
		}
		if got := calls(t, a.db, tag); got != 2 {
			t.Errorf("PostgreSQL ran the counted query %d times, want 2 (one fill before, one after the commit)", got)
		}
	})

	t.Run("BeginCommit", func(t *testing.T) {
		ins := consInstances(t, 2, nil)
		a, b := ins[0], ins[1]
		id := consNewItem(t, a.db, consNextID(t, a.db), 1)
		id2 := consNewItem(t, a.db, consNextID(t, a.db), 1)
		consExpect(t, "B prime", b, consFirst(id), "val=1")
		consExpect(t, "B prime 2", b, consFirst(id2), "val=1")
		tx := a.db.Begin()
		if tx.Error != nil {
			t.Fatal(tx.Error)
		}
		if err := tx.Model(&consItem{ID: id}).Update("val", 2).Error; err != nil {
			_ = tx.Rollback()
			t.Fatal(err)
		}
		if err := tx.Exec("UPDATE gft_cons_item SET val = ? WHERE id = ?", 3, id2).Error; err != nil {
			_ = tx.Rollback()
			t.Fatal(err)
		}
		consExpect(t, "B before Commit", b, consFirst(id), "val=1")
		consExpect(t, "A before Commit", a, consFirst(id2), "val=1")
		if err := tx.Commit().Error; err != nil {
			t.Fatal(err)
		}
		for i, in := range ins {
			consExpect(t, fmt.Sprintf("instance %d after Commit", i), in, consFirst(id), "val=2")
			consExpect(t, fmt.Sprintf("instance %d after Commit (Exec)", i), in, consFirst(id2), "val=3")
		}
	})

	t.Run("NestedSavepoints", func(t *testing.T) {
		ins := consInstances(t, 2, nil)
		a, b := ins[0], ins[1]
		grp := consNextID(t, a.db)
		id := consNewItem(t, a.db, grp, 1)
		id2 := consNewItem(t, a.db, grp, 1)
		consExpect(t, "B prime", b, consFirst(id), "val=1")
		consExpect(t, "B prime 2", b, consFirst(id2), "val=1")
		inv := a.p.Stats().Invalidations
		err := a.db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Transaction(func(tx2 *gorm.DB) error {
				return tx2.Model(&consItem{ID: id}).Update("val", 2).Error
			}); err != nil {
				return err
			}
			// The inner transaction released its savepoint; nothing is
			// committed yet.
			if got := a.p.Stats().Invalidations; got != inv {
				t.Errorf("the inner transaction bumped generations (%d -> %d) before the outer commit", inv, got)
			}
			consExpect(t, "B after the inner commit", b, consFirst(id), "val=1")
			// A nested transaction rolled back to its savepoint.
			if err := tx.Transaction(func(tx2 *gorm.DB) error {
				if err := tx2.Model(&consItem{ID: id2}).Update("val", 99).Error; err != nil {
					return err
				}
				return errConsRollback
			}); !errors.Is(err, errConsRollback) {
				return fmt.Errorf("inner rollback: %v", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := a.p.Stats().Invalidations; got == inv {
			t.Errorf("the outer commit bumped no generation")
		}
		for i, in := range ins {
			consExpect(t, fmt.Sprintf("instance %d after the outer commit", i), in, consFirst(id), "val=2")
			consExpect(t, fmt.Sprintf("instance %d: row written in a rolled-back savepoint", i), in, consFirst(id2), "val=1")
		}
	})

	t.Run("RolledBack", func(t *testing.T) {
		ins := consInstances(t, 2, nil)
		a, b := ins[0], ins[1]
		id := consNewItem(t, a.db, consNextID(t, a.db), 1)
		tag := uniqueTag(t)
		consExpect(t, "B prime", b, consCounted(tag, id), "val=1")
		inv := a.p.Stats().Invalidations
		err := a.db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Model(&consItem{ID: id}).Update("val", 2).Error; err != nil {
				return err
			}
			return errConsRollback
		})
		if !errors.Is(err, errConsRollback) {
			t.Fatalf("Transaction: %v", err)
		}
		tx := a.db.Begin()
		if err := tx.Exec("UPDATE gft_cons_item SET val = 3 WHERE id = ?", id).Error; err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback().Error; err != nil {
			t.Fatal(err)
		}
		if got := a.p.Stats().Invalidations; got != inv {
			t.Errorf("rolled-back transactions bumped generations: Invalidations %d -> %d", inv, got)
		}
		hits := b.p.Stats().Hits
		consExpect(t, "B after the rollbacks", b, consCounted(tag, id), "val=1")
		consExpect(t, "A after the rollbacks", a, consCounted(tag, id), "val=1")
		if got := b.p.Stats().Hits; got != hits+1 {
			t.Errorf("B's read after the rollbacks was not a hit (Hits %d -> %d)", hits, got)
		}
		if got := calls(t, a.db, tag); got != 1 {
			t.Errorf("PostgreSQL ran the query %d times, want 1: the rollbacks should leave the entry valid", got)
		}
	})

	t.Run("PrepareStmt", func(t *testing.T) {
		ins := consInstances(t, 1, nil)
		b := ins[0]
		p := consPreparedInstance(t, testConfig(openRedis(t, ""), b.p.cfg.Prefix))
		id := consNewItem(t, b.db, consNextID(t, b.db), 1)

		// Outside a transaction.
		consReadAfterWrite(t, p, b, consFirst(id), func(db *gorm.DB) error {
			return db.Model(&consItem{ID: id}).Update("val", 2).Error
		}, "val=1", "val=2")
		consReadAfterWrite(t, p, b, consFirst(id), func(db *gorm.DB) error {
			return db.Exec("UPDATE gft_cons_item SET val = ? WHERE id = ?", 3, id).Error
		}, "val=2", "val=3")

		// Inside a transaction: invisible until the commit, then at once.
		for _, write := range []struct {
			name string
			do   func(tx *gorm.DB, v int64) error
		}{
			{"Update", func(tx *gorm.DB, v int64) error { return tx.Model(&consItem{ID: id}).Update("val", v).Error }},
			{"Exec", func(tx *gorm.DB, v int64) error {
				return tx.Exec("UPDATE gft_cons_item SET val = ? WHERE id = ?", v, id).Error
			}},
		} {
			before := p.p.Stats().Invalidations
			var want int64
			consExpect(t, write.name+": P prime", p, consFirst(id), "val=3")
			err := p.db.Transaction(func(tx *gorm.DB) error {
				want = 4
				if err := write.do(tx, want); err != nil {
					return err
				}
				consExpect(t, write.name+": B before the commit", b, consFirst(id), "val=3")
				consExpect(t, write.name+": P before the commit", p, consFirst(id), "val=3")
				if got := p.p.Stats().Invalidations; got != before {
					t.Errorf("%s: generations bumped before the commit (%d -> %d)", write.name, before, got)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if p.p.Stats().Invalidations == before {
				t.Errorf("%s: the commit bumped no generation", write.name)
			}
			consExpect(t, write.name+": B after the commit", b, consFirst(id), fmt.Sprintf("val=%d", want))
			consExpect(t, write.name+": P after the commit", p, consFirst(id), fmt.Sprintf("val=%d", want))
			// Reset for the next round.
			if err := p.db.Model(&consItem{ID: id}).Update("val", 3).Error; err != nil {
				t.Fatal(err)
			}
		}
		// Prepared writes outside a transaction in a Session too.
		sess := p.db.Session(&gorm.Session{PrepareStmt: true})
		consReadAfterWrite(t, p, b, consFirst(id), func(*gorm.DB) error {
			return sess.Model(&consItem{ID: id}).Update("val", 5).Error
		}, "val=3", "val=5")
	})

	t.Run("PrepareStmtSession", func(t *testing.T) {
		// PrepareStmt turned on per session, on a handle opened without it.
		ins := consInstances(t, 2, nil)
		a, b := ins[0], ins[1]
		id := consNewItem(t, a.db, consNextID(t, a.db), 1)
		consExpect(t, "B prime", b, consFirst(id), "val=1")
		sess := a.db.Session(&gorm.Session{PrepareStmt: true})
		inv := a.p.Stats().Invalidations
		err := sess.Transaction(func(tx *gorm.DB) error {
			if err := tx.Model(&consItem{ID: id}).Update("val", 2).Error; err != nil {
				return err
			}
			consExpect(t, "B before the commit", b, consFirst(id), "val=1")
			if got := a.p.Stats().Invalidations; got != inv {
				t.Errorf("generations bumped before the commit (%d -> %d)", inv, got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		consExpect(t, "A after the commit", a, consFirst(id), "val=2")
		consExpect(t, "B after the commit", b, consFirst(id), "val=2")
	})
}

// consPreparedInstance is newInstance on a GORM handle opened with
// PrepareStmt: true.
func consPreparedInstance(t *testing.T, cfg Config) *instance {
	t.Helper()
	db := openDBWith(t, &gorm.Config{Logger: logger.Discard, PrepareStmt: true})
	consSchema(t, db)
	return installPlugin(t, db, cfg)
}

// ---------------------------------------------------------------------------
// Seam holds: stop one fill at a point until the test releases it.

type consHold struct {
	point   string
	armed   atomic.Bool
	reached chan string // the held fill's entry key
	release chan struct{}
	once    sync.Once
}

// consHoldAt makes the next fill of in that reaches point wait there. It
// must be called before in runs any query.
func consHoldAt(t *testing.T, in *instance, point string) *consHold {
	h := &consHold{point: point, reached: make(chan string, 1), release: make(chan struct{})}
	h.armed.Store(true)
	in.p.engine.SetSeam(func(p, k string) {
		if p == h.point && h.armed.CompareAndSwap(true, false) {
			h.reached <- k
			<-h.release
		}
	})
	// Registered after the instance, so it runs before Close waits for
	// the held flight.
	t.Cleanup(h.letGo)
	return h
}

func (h *consHold) letGo() { h.once.Do(func() { close(h.release) }) }

// wait returns the entry key of the held fill once it is at the point.
func (h *consHold) wait(t *testing.T, errc <-chan consResult) string {
	t.Helper()
	select {
	case k := <-h.reached:
		return k
	case r := <-errc:
		t.Fatalf("the read returned (%q, %v) without reaching %q", r.val, r.err, h.point)
	case <-time.After(30 * time.Second):
		t.Fatalf("no fill reached %q", h.point)
	}
	return ""
}

type consResult struct {
	val string
	err error
}

func consGo(in *instance, read func(*gorm.DB) (string, error)) <-chan consResult {
	ch := make(chan consResult, 1)
	go func() {
		v, err := read(in.db)
		ch <- consResult{v, err}
	}()
	return ch
}

// consGen returns a table's generation under in's prefix ("" if missing).
func consGen(t testing.TB, in *instance, table string) string {
	t.Helper()
	v, err := in.p.cfg.Redis.Get(context.Background(), in.p.engine.GenKey(table)).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func consGenInt(t testing.TB, in *instance, table string) int64 {
	t.Helper()
	v := consGen(t, in, table)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("generation of %s is %q: %v", table, v, err)
	}
	return n
}

// consStamp returns the stamp of the value stored under an entry key,
// without the generation of sqlscan.AllTables that every stamp starts with
// ("*" sorts before every table name): for the one-table reads of these
// tests, the generation of their table.
func consStamp(t testing.TB, in *instance, entryKey string) (stamp string, raw string) {
	t.Helper()
	v, err := in.p.cfg.Redis.Get(context.Background(), entryKey).Result()
	if errors.Is(err, redis.Nil) {
		return "", ""
	}
	if err != nil {
		t.Fatal(err)
	}
	i := strings.IndexByte(v, engine.StampSep)
	if i < 0 {
		t.Fatalf("stored value without stamp: %q", v)
	}
	_, stamp, ok := strings.Cut(v[:i], ",")
	if !ok {
		t.Fatalf("stamp %q lacks the generation of %q", v[:i], sqlscan.AllTables)
	}
	return stamp, v
}

// ---------------------------------------------------------------------------
// 3. A slow fill racing a write.

func TestConsistencySlowFillVersusWrite(t *testing.T) {
	type writer struct {
		name  string
		write func(t *testing.T, b *instance, plain *gorm.DB, id int64)
	}
	writers := []writer{
		{"GORMUpdateOnB", func(t *testing.T, b *instance, _ *gorm.DB, id int64) {
			if err := b.db.Model(&consItem{ID: id}).Update("val", 2).Error; err != nil {
				t.Fatal(err)
			}
		}},
		{"PlainWritePlusInvalidate", func(t *testing.T, b *instance, plain *gorm.DB, id int64) {
			if err := plain.Exec("UPDATE gft_cons_item SET val = 2 WHERE id = ?", id).Error; err != nil {
				t.Fatal(err)
			}
			if err := b.p.Invalidate(context.Background(), "gft_cons_item"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, w := range writers {
		// The fill read the old row and waits to store it; the write
		// commits and bumps meanwhile. The stored entry carries the old
		// stamp and must never be served.
		t.Run("HeldAfterLoad/"+w.name, func(t *testing.T) {
			ins := consInstances(t, 3, nil)
			a, b, c := ins[0], ins[1], ins[2]
			plain := openDB(t)
			id := consNewItem(t, a.db, consNextID(t, a.db), 1)
			tag := uniqueTag(t)
			read := consCounted(tag, id)
			h := consHoldAt(t, a, engine.SeamLoaded)

			resA := consGo(a, read)
			k := h.wait(t, resA)
			genOld := consGenInt(t, a, "gft_cons_item")
			w.write(t, b, plain, id)
			genNew := consGenInt(t, a, "gft_cons_item")
			if genNew <= genOld {
				t.Fatalf("the write did not advance the generation: %d -> %d", genOld, genNew)
			}
			h.letGo()
			if r := <-resA; r.err != nil || r.val != "val=1" {
				t.Errorf("A's held read returned (%q, %v), want val=1 (it loaded before the write)", r.val, r.err)
			}
			stamp, _ := consStamp(t, a, k)
			if stamp != strconv.FormatInt(genOld, 10) {
				t.Errorf("A stored its entry with stamp %q, want the old generation %d", stamp, genOld)
			}
			consExpect(t, "B after A stored", b, read, "val=2")
			consExpect(t, "C after A stored", c, read, "val=2")
			consExpect(t, "A after A stored", a, read, "val=2")
			if got := calls(t, a.db, tag); got != 2 {
				t.Errorf("PostgreSQL ran the query %d times, want 2 (A's held fill, then one refill)", got)
			}
			stamp, _ = consStamp(t, a, k)
			if stamp != strconv.FormatInt(genNew, 10) {
				t.Errorf("after the refill the entry's stamp is %q, want %d", stamp, genNew)
			}
		})

		// The fill read the generations and waits to query; the write
		// commits and bumps meanwhile. The fill then reads the new row
		// under the old stamp: a needless miss later, never a wrong value.
		t.Run("HeldAfterStamp/"+w.name, func(t *testing.T) {
			ins := consInstances(t, 3, nil)
			a, b, c := ins[0], ins[1], ins[2]
			plain := openDB(t)
			id := consNewItem(t, a.db, consNextID(t, a.db), 1)
			tag := uniqueTag(t)
			read := consCounted(tag, id)
			h := consHoldAt(t, a, engine.SeamStamped)

			resA := consGo(a, read)
			k := h.wait(t, resA)
			genOld := consGenInt(t, a, "gft_cons_item")
			w.write(t, b, plain, id)
			h.letGo()
			if r := <-resA; r.err != nil || r.val != "val=2" {
				t.Errorf("A's held read returned (%q, %v), want val=2 (it queried after the write)", r.val, r.err)
			}
			stamp, _ := consStamp(t, a, k)
			if stamp != strconv.FormatInt(genOld, 10) {
				t.Errorf("A stored its entry with stamp %q, want the generation it read first, %d", stamp, genOld)
			}
			consExpect(t, "B after A stored", b, read, "val=2")
			consExpect(t, "C after A stored", c, read, "val=2")
			consExpect(t, "A after A stored", a, read, "val=2")
			if got := calls(t, a.db, tag); got != 2 {
				t.Errorf("PostgreSQL ran the query %d times, want 2 (A's held fill, then one refill)", got)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 4. A generation key lost from Redis.

func TestConsistencyGenerationDeleted(t *testing.T) {
	ins := consInstances(t, 2, nil)
	a, b := ins[0], ins[1]
	id := consNewItem(t, a.db, consNextID(t, a.db), 1)
	tag := uniqueTag(t)
	read := consCounted(tag, id)
	ctx := context.Background()

	consExpect(t, "prime", a, read, "val=1")
	// Bump a few times so the generation is a bumped value.
	for v := 2; v <= 4; v++ {
		if err := a.db.Model(&consItem{ID: id}).Update("val", v).Error; err != nil {
			t.Fatal(err)
		}
	}
	consExpect(t, "fill after the bumps", a, read, "val=4")
	consExpect(t, "hit", b, read, "val=4")
	if got := calls(t, a.db, tag); got != 2 {
		t.Fatalf("PostgreSQL ran the query %d times, want 2", got)
	}
	genOld := consGenInt(t, a, "gft_cons_item")

	if err := a.p.cfg.Redis.Del(ctx, a.p.engine.GenKey("gft_cons_item")).Err(); err != nil {
		t.Fatal(err)
	}
	consExpect(t, "read after DEL", b, read, "val=4")
	if got := calls(t, a.db, tag); got != 3 {
		t.Errorf("after the generation was deleted PostgreSQL ran the query %d times in all, want 3 (a miss)", got)
	}
	genNew := consGenInt(t, a, "gft_cons_item")
	if genNew <= genOld {
		t.Errorf("the re-created generation %d is not greater than the lost one %d", genNew, genOld)
	}
	consExpect(t, "hit after the refill", a, read, "val=4")
	if got := calls(t, a.db, tag); got != 3 {
		t.Errorf("PostgreSQL ran the query %d times in all, want 3 (the refill is served)", got)
	}
	// A write after the loss still invalidates.
	if err := a.db.Model(&consItem{ID: id}).Update("val", 5).Error; err != nil {
		t.Fatal(err)
	}
	consExpect(t, "after a later write", b, read, "val=5")
	t.Logf("generation before DEL %d, re-created %d (+%d)", genOld, genNew, genNew-genOld)
}

// ---------------------------------------------------------------------------
// 5. fill.lua never replaces an entry computed under newer generations.

func TestConsistencyFillNeverOverwritesNewer(t *testing.T) {
	t.Run("EndToEnd", func(t *testing.T) {
		// A short lock so B takes the key over from the held filler quickly.
		ins := consInstances(t, 3, func(c *Config) { c.LockExpiry = 200 * time.Millisecond })
		a, b, c := ins[0], ins[1], ins[2]
		id := consNewItem(t, a.db, consNextID(t, a.db), 1)
		tag := uniqueTag(t)
		read := consCounted(tag, id)
		h := consHoldAt(t, a, engine.SeamLoaded)

		resA := consGo(a, read)
		k := h.wait(t, resA)
		genOld := consGenInt(t, a, "gft_cons_item")
		if err := b.db.Model(&consItem{ID: id}).Update("val", 2).Error; err != nil {
			t.Fatal(err)
		}
		genNew := consGenInt(t, a, "gft_cons_item")
		// B fills the same key under the new generation while A still holds
		// its old result (A's lock expires: A stopped extending it).
		consExpect(t, "B fills under the new generation", b, read, "val=2")
		stampB, rawB := consStamp(t, a, k)
		if stampB != strconv.FormatInt(genNew, 10) {
			t.Fatalf("B stored stamp %q, want %d", stampB, genNew)
		}
		h.letGo()
		if r := <-resA; r.err != nil || r.val != "val=1" {
			t.Errorf("A's held read returned (%q, %v), want val=1", r.val, r.err)
		}
		stampAfter, rawAfter := consStamp(t, a, k)
		if rawAfter != rawB {
			t.Errorf("A's late store (stamp %d) replaced B's newer entry: stamp %q -> %q", genOld, stampB, stampAfter)
		}
		consExpect(t, "C after both stores", c, read, "val=2")
		if got := calls(t, a.db, tag); got != 2 {
			t.Errorf("PostgreSQL ran the query %d times, want 2 (A's and B's fills; C hits B's entry)", got)
		}
		t.Logf("B: lock takeovers %d, waits %d", b.p.Stats().LockTakeovers, b.p.Stats().Waits)
	})
}

// ---------------------------------------------------------------------------
// 6. Round trips of a hit.

func TestConsistencyHitRoundTrips(t *testing.T) {
	rdb := openRedis(t, "")
	trips := &roundTrips{}
	rdb.AddHook(trips)
	in := newInstance(t, testConfig(rdb, testPrefix(t)))
	consSchema(t, in.db)
	grp := consNextID(t, in.db)
	id := consNewItem(t, in.db, grp, 1)
	tg := consTag{Grp: grp, Name: "t"}
	if err := in.db.Create(&tg).Error; err != nil {
		t.Fatal(err)
	}
	if err := in.db.Model(&consItem{ID: id}).Association("Tags").Append(&tg); err != nil {
		t.Fatal(err)
	}
	join3 := func(db *gorm.DB) (string, error) {
		var r struct {
			Val  int64
			Name string
		}
		err := db.Scopes(Cache(time.Minute)).Raw(`SELECT i.val, t.name FROM gft_cons_item i
			JOIN gft_cons_item_tags it ON it.item_id = i.id
			JOIN gft_cons_tag t ON t.id = it.tag_id WHERE i.id = ?`, id).Scan(&r).Error
		return fmt.Sprintf("%d/%s", r.Val, r.Name), err
	}
	for _, c := range []struct {
		name   string
		tables int
		read   func(*gorm.DB) (string, error)
		want   string
	}{
		{"OneTable", 1, consFirst(id), "val=1"},
		{"ThreeTables", 3, join3, "1/t"},
	} {
		consExpect(t, c.name+" prime", in, c.read, c.want)
		primed := trips.take()
		hits := in.p.Stats().Hits
		consExpect(t, c.name+" hit", in, c.read, c.want)
		got := trips.take()
		if in.p.Stats().Hits != hits+1 {
			t.Errorf("%s: the second read was not a hit", c.name)
		}
		if len(got) != 1 {
			t.Errorf("%s: a hit made %d Redis round trips %v, want 1", c.name, len(got), got)
		} else if want := "pipeline[script get pttl exists mget]"; got[0] != want {
			// The mark that tells the server has not restarted since the
			// prefix was recovered there (internal/engine/restart.go), the
			// entry and its time to live (for the memo), then the
			// writers and held keys of every table and of
			// sqlscan.AllTables, in one EXISTS, and their generations, in
			// one MGET (a single Redis node: stamps.go).
			t.Errorf("%s: the hit's round trip was %q, want %q", c.name, got[0], want)
		}
		// The entry is now remembered decoded: the next hit fetches only
		// the stored value's head.
		consExpect(t, c.name+" hit on the memo", in, c.read, c.want)
		again := trips.take()
		if want := "pipeline[script getrange pttl exists mget]"; len(again) != 1 || again[0] != want {
			t.Errorf("%s: a hit on a remembered entry made round trips %q, want [%q]", c.name, again, want)
		}
		t.Logf("%s: miss %d round trips %v; hit %v; hit on the memo %v", c.name, len(primed), primed, got, again)
	}
}

// ---------------------------------------------------------------------------
// 7. Invalidate after writes made outside GORM, and how it names tables.

func TestConsistencyInvalidate(t *testing.T) {
	ins := consInstances(t, 2, nil)
	a, b := ins[0], ins[1]
	id := consNewItem(t, a.db, consNextID(t, a.db), 0)
	sqlDB, err := a.db.DB()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	val := int64(0)
	// plainWrite changes the row behind GORM's back: no generation moves.
	plainWrite := func() {
		t.Helper()
		val++
		if _, err := sqlDB.ExecContext(ctx, "UPDATE gft_cons_item SET val = $1 WHERE id = $2", val, id); err != nil {
			t.Fatal(err)
		}
	}
	cur := func() string { return fmt.Sprintf("val=%d", val) }

	consExpect(t, "prime", b, consFirst(id), cur())
	for _, c := range []struct {
		name        string
		invalidates bool
		genKey      string // the generation the name bumps
	}{
		{"gft_cons_item", true, "gft_cons_item"},
		{"GFT_CONS_ITEM", true, "gft_cons_item"},
		{"public.gft_cons_item", true, "gft_cons_item"},
		{`"public"."gft_cons_item"`, true, "gft_cons_item"},
		{`other_schema.GFT_Cons_Item`, true, "gft_cons_item"},
		{`"gft_cons_item"`, true, "gft_cons_item"},
		{`"public"."GFT_CONS_ITEM"`, false, "GFT_CONS_ITEM"},
		{`"Gft_cons_item"`, false, "Gft_cons_item"},
	} {
		stale := cur()
		plainWrite()
		// Without an invalidation the cache still serves the old row.
		consExpect(t, c.name+": before Invalidate", b, consFirst(id), stale)
		if got := dialect.Postgres.NormTable(c.name); got != c.genKey {
			t.Errorf("normTable(%q) = %q, want %q", c.name, got, c.genKey)
		}
		gen := consGen(t, a, c.genKey)
		if err := a.p.Invalidate(ctx, c.name); err != nil {
			t.Fatalf("Invalidate(%q): %v", c.name, err)
		}
		if got := consGen(t, a, c.genKey); got == gen {
			t.Errorf("Invalidate(%q) did not bump %q", c.name, c.genKey)
		}
		if c.invalidates {
			consExpect(t, c.name+": after Invalidate (B)", b, consFirst(id), cur())
			consExpect(t, c.name+": after Invalidate (A)", a, consFirst(id), cur())
		} else {
			// A quoted name keeps its case and names another table.
			consExpect(t, c.name+": after Invalidate of another table", b, consFirst(id), stale)
			if err := a.p.Invalidate(ctx, "gft_cons_item"); err != nil {
				t.Fatal(err)
			}
			consExpect(t, c.name+": after Invalidate(gft_cons_item)", b, consFirst(id), cur())
		}
	}
	// Several names at once, duplicates included.
	stale := cur()
	plainWrite()
	consExpect(t, "before a multi-table Invalidate", b, consFirst(id), stale)
	inv := a.p.Stats().Invalidations
	if err := a.p.Invalidate(ctx, "gft_cons_tag", "GFT_CONS_ITEM", "public.gft_cons_item"); err != nil {
		t.Fatal(err)
	}
	if got := a.p.Stats().Invalidations - inv; got != 2 {
		t.Errorf("Invalidate of 2 distinct tables (3 names) counted %d invalidations, want 2", got)
	}
	consExpect(t, "after a multi-table Invalidate", b, consFirst(id), cur())
}

// ---------------------------------------------------------------------------
// 8. The bump fails: Redis is down when the write commits.

func TestConsistencyBumpFailure(t *testing.T) {
	addr, stop, restart := startRedis(t)
	in := newInstance(t, testConfig(openRedis(t, addr), testPrefix(t)))
	consSchema(t, in.db)
	id := consNewItem(t, in.db, consNextID(t, in.db), 1)
	tag := uniqueTag(t)
	read := consCounted(tag, id)

	consExpect(t, "prime", in, read, "val=1")
	consExpect(t, "hit", in, read, "val=1")
	if got := calls(t, in.db, tag); got != 1 {
		t.Fatalf("PostgreSQL ran the query %d times, want 1", got)
	}

	stop()
	before := in.p.Stats()
	if err := in.db.Model(&consItem{ID: id}).Update("val", 2).Error; err != nil {
		t.Fatalf("the write failed because Redis is down: %v", err)
	}
	after := in.p.Stats()
	if after.InvalidationErrors <= before.InvalidationErrors {
		t.Errorf("InvalidationErrors stayed %d after a bump against a dead Redis", after.InvalidationErrors)
	}
	// The table is dirty: this instance reads it from the database.
	consExpect(t, "read while Redis is down", in, read, "val=2")
	consExpect(t, "read again while Redis is down", in, read, "val=2")
	if got := calls(t, in.db, tag); got != 3 {
		t.Errorf("PostgreSQL ran the query %d times, want 3 (two uncached reads while dirty)", got)
	}
	if got := in.p.Stats().Fallbacks - after.Fallbacks; got != 2 {
		t.Errorf("Fallbacks increased by %d, want 2", got)
	}

	inv := in.p.Stats().Invalidations
	restart()
	if !eventually(waitTimeout, func() bool { return in.p.Stats().Invalidations != inv }) {
		t.Fatalf("the background retry never bumped the dirty table (stats %+v)", in.p.Stats())
	}
	if !in.p.engine.Dirty([]string{"gft_cons_item"}) {
		t.Logf("gft_cons_item is clean again")
	} else {
		t.Errorf("gft_cons_item is still dirty after the retry bumped it")
	}
	consExpect(t, "prime after recovery", in, read, "val=2")
	hits := in.p.Stats().Hits
	consExpect(t, "hit after recovery", in, read, "val=2")
	if got := in.p.Stats().Hits; got != hits+1 {
		t.Errorf("no hit after recovery (Hits %d -> %d)", hits, got)
	}
	if got := calls(t, in.db, tag); got != 4 {
		t.Errorf("PostgreSQL ran the query %d times, want 4 (one refill after recovery)", got)
	}
	// And writes invalidate normally again.
	if err := in.db.Model(&consItem{ID: id}).Update("val", 3).Error; err != nil {
		t.Fatal(err)
	}
	consExpect(t, "after a write once recovered", in, read, "val=3")
	t.Logf("stats: %+v", in.p.Stats())
}

// ---------------------------------------------------------------------------
// 9. The window between a write's commit and its bump.

// consBumpGate holds the first pipeline that bumps a generation (the
// gen_bump script) on the client it hooks, until released.
type consBumpGate struct {
	passHook
	armed   atomic.Bool
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *consBumpGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if runsScript(cmds, engine.ScriptGenBump) && g.armed.CompareAndSwap(true, false) {
			close(g.reached)
			<-g.release
		}
		return next(ctx, cmds)
	}
}

func (g *consBumpGate) letGo() { g.once.Do(func() { close(g.release) }) }

// A write's bump runs after its commit, before it returns. In between, a
// miss reads the new row from the database; a hit of another query's older
// entry must not answer after it, or two reads would see new-then-old while
// the write is in progress. The write announced itself before committing, so
// every query of the table reads the database in that window, and the
// history is linearizable across queries.
func TestConsistencyCommitToBumpWindow(t *testing.T) {
	prefix := testPrefix(t)
	wrdb := openRedis(t, "")
	gate := &consBumpGate{reached: make(chan struct{}), release: make(chan struct{})}
	wrdb.AddHook(gate)
	w := newInstance(t, testConfig(wrdb, prefix))
	r1 := newInstance(t, testConfig(openRedis(t, ""), prefix))
	r2 := newInstance(t, testConfig(openRedis(t, ""), prefix))
	consSchema(t, w.db)
	id := consNewItem(t, w.db, consNextID(t, w.db), 1)
	tag := uniqueTag(t)
	t.Cleanup(gate.letGo)

	consExpect(t, "R1 prime", r1, consFirst(id), "val=1")
	epoch := time.Now()
	now := func() int64 { return time.Since(epoch).Nanoseconds() }
	var ops []porcupine.Operation
	read := func(client int, q string, in *instance, rd func(*gorm.DB) (string, error)) string {
		call := now()
		v, err := rd(in.db)
		ret := now()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseInt(strings.TrimPrefix(v, "val="), 10, 64)
		ops = append(ops, testdb.LinReadOp(client, 0, q, call, ret, n))
		return v
	}
	ops = append(ops, testdb.LinWriteOp(3, 0, 1, -2, -1))
	read(1, "First", r1, consFirst(id))

	gate.armed.Store(true)
	wCall := now()
	done := make(chan error, 1)
	go func() { done <- w.db.Model(&consItem{ID: id}).Update("val", 2).Error }()
	select {
	case <-gate.reached:
	case err := <-done:
		t.Fatalf("the write returned (%v) without bumping", err)
	}
	// Committed, not yet bumped.
	fresh := read(2, "counted", r2, consCounted(tag, id)) // a miss: fills from the database
	stale := read(1, "First", r1, consFirst(id))          // a hit of the entry from before
	own := read(4, "First", w, consFirst(id))             // the writer's own instance
	gate.letGo()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wRet := now()
	ops = append(ops, testdb.LinWriteOp(0, 0, 2, wCall, wRet))
	after1 := read(1, "First", r1, consFirst(id))
	after2 := read(2, "counted", r2, consCounted(tag, id))

	if after1 != "val=2" || after2 != "val=2" {
		t.Errorf("after the write returned: R1 %q, R2 %q, want val=2 (the documented contract)", after1, after2)
	}
	if fresh != "val=2" {
		t.Errorf("a miss after the commit read %q from the database, want val=2", fresh)
	}
	perQuery := porcupine.CheckOperationsTimeout(testdb.LinQueryModel(), testdb.LinPerQuery(ops), 10*time.Second)
	perRegister := porcupine.CheckOperationsTimeout(testdb.LinModel(), ops, 10*time.Second)
	t.Logf("during the commit-to-bump window: a miss read %s, then a later hit of another query read %s (on the writer's own instance: %s); porcupine per query: %s, per register across queries: %s",
		fresh, stale, own, perQuery, perRegister)
	if perQuery != porcupine.Ok {
		t.Errorf("porcupine per query: %s, want %s", perQuery, porcupine.Ok)
	}
	if stale != "val=2" || own != "val=2" {
		t.Errorf("after a read of the committed row, R1 read %q and the writer's instance %q, want val=2", stale, own)
	}
	if perRegister != porcupine.Ok {
		t.Errorf("porcupine per register across queries: %s, want %s", perRegister, porcupine.Ok)
	}
}

// ---------------------------------------------------------------------------
// 10. NULLs through the cache.

// A cached read of a row holding a NULL must return what the uncached read
// returns. The soft-delete model is the everyday case: every live row has
// deleted_at NULL.
func TestConsistencyCachedReadOfNull(t *testing.T) {
	in := consInstances(t, 1, nil)[0]
	s := consSoft{Grp: consNextID(t, in.db), Val: 1}
	if err := in.db.Create(&s).Error; err != nil {
		t.Fatal(err)
	}
	t.Run("SoftDeleteModel", func(t *testing.T) {
		var want, got consSoft
		if err := in.db.First(&want, s.ID).Error; err != nil {
			t.Fatalf("uncached: %v", err)
		}
		if err := in.db.Scopes(Cache(time.Minute)).First(&got, s.ID).Error; err != nil {
			t.Fatalf("cached First of a live soft-delete row (deleted_at NULL): %v", err)
		}
		if got != want {
			t.Errorf("cached %+v, uncached %+v", got, want)
		}
	})
	t.Run("RawNull", func(t *testing.T) {
		var r struct {
			A *int64
			B string
		}
		if err := in.db.Scopes(Cache(time.Minute)).Raw("SELECT NULL::bigint AS a, 'x' AS b").Scan(&r).Error; err != nil {
			t.Fatalf("cached SELECT NULL::bigint: %v", err)
		}
		if r.A != nil || r.B != "x" {
			t.Errorf("got %+v, want {A:nil B:x}", r)
		}
	})
}
