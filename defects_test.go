package gormflight

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"gorm.io/gorm"
)

// Regression tests for defects found by using the plugin as a user would
// (issue 7). Each failed before its fix.

// What a caller does to the rows it receives never changes what the next
// caller gets: GORM's MapColumns renames the column slice it is handed in
// place, and a replayed entry is shared by a flight's callers and the memo.
func TestReplayColumnsAreCallersOwn(t *testing.T) {
	in := newInstances(t, 1, nil)[0]
	const q = "SELECT 7 AS id, 'gopher' AS name"
	type row struct {
		ID    int
		Name  string
		Title string
	}
	read := func(db *gorm.DB) row {
		t.Helper()
		var r row
		if err := db.Raw(q).Scan(&r).Error; err != nil {
			t.Fatal(err)
		}
		return r
	}
	cached := func() *gorm.DB { return in.db.Scopes(Cache(time.Minute)) }
	if got := read(cached()); got.Name != "gopher" {
		t.Fatalf("first read: %+v", got)
	}
	// A hit, with the column renamed for this caller only.
	if got := read(cached().MapColumns(map[string]string{"name": "title"})); got.Title != "gopher" || got.Name != "" {
		t.Fatalf("MapColumns read: %+v, want Title set and Name empty", got)
	}
	if got := read(cached()); got.Name != "gopher" || got.Title != "" {
		t.Fatalf("a later plain hit scanned %+v: the rename leaked into the shared entry", got)
	}
	if in.p.Stats().Hits < 2 {
		t.Fatalf("expected the later reads to be hits, stats %+v", in.p.Stats())
	}
}

// The longest TTL, with a jitter that would overflow a time.Duration, is
// stored with an expiry Redis accepts, and the next read is a hit.
func TestLongestTTLIsStored(t *testing.T) {
	in := newInstances(t, 1, func(c *Config) { c.TTLJitter = 5 })[0]
	tag := uniqueTag(t)
	for i := 0; i < 2; i++ {
		var n int
		if err := in.db.Scopes(Cache(MaxTTL)).Raw("SELECT gft_record(?, 0) AS n", tag).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
	}
	if got := calls(t, in.db, tag); got != 1 {
		t.Fatalf("the query ran %d times, want 1 (the second read a hit)", got)
	}
	if s := in.p.Stats(); s.RedisErrors != 0 || s.Hits != 1 {
		t.Fatalf("stats %+v, want 1 hit and no Redis errors", s)
	}
}

// gftMixed is a model whose table name needs quoting: its generation must
// be the one reads of GORM's (quoted) SQL are keyed by.
type gftMixed struct {
	ID int64
	V  int64
}

func (gftMixed) TableName() string { return "GftAdvMixed" }

// A write announces and bumps the table under the name reads are keyed by,
// whatever shape the statement gives it: a mixed-case TableName and a table
// expression with an alias. Shown with an explicit transaction in
// db.Connection, whose announcement alone protects the table until COMMIT:
// another instance that reads between the UPDATE and the COMMIT must not
// store the pre-commit rows under the bumped generation.
func TestWriteAnnouncesTheTableReadsUse(t *testing.T) {
	pg := openDB(t)
	for _, ddl := range []string{
		`DROP TABLE IF EXISTS "GftAdvMixed"`,
		`CREATE TABLE "GftAdvMixed" (id bigint PRIMARY KEY, v bigint NOT NULL)`,
	} {
		if err := pg.Exec(ddl).Error; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { pg.Exec(`DROP TABLE IF EXISTS "GftAdvMixed"`) })
	ins := newInstances(t, 2, nil)
	w, r := ins[0], ins[1]

	cases := []struct {
		name   string
		update func(tx *gorm.DB, id, v int64) error
	}{
		{"TableName", func(tx *gorm.DB, id, v int64) error {
			return tx.Model(&gftMixed{ID: id}).Update("v", v).Error
		}},
		{"Table with alias", func(tx *gorm.DB, id, v int64) error {
			return tx.Table(`"GftAdvMixed" m`).Where("m.id = ?", id).Update("v", v).Error
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := int64(i + 1)
			if err := pg.Create(&gftMixed{ID: id, V: 1}).Error; err != nil {
				t.Fatal(err)
			}
			read := func(in *instance) int64 {
				t.Helper()
				var m gftMixed
				if err := in.db.Scopes(Cache(time.Minute)).First(&m, id).Error; err != nil {
					t.Fatal(err)
				}
				return m.V
			}
			if got := read(r); got != 1 {
				t.Fatalf("prime: v=%d", got)
			}
			err := w.db.Connection(func(c *gorm.DB) error {
				tx := c.Begin()
				if err := tc.update(tx, id, 5); err != nil {
					tx.Rollback()
					return err
				}
				// Between the UPDATE and its COMMIT: the old row, which must
				// not be stored under the generation the UPDATE bumped.
				if got := read(r); got != 1 {
					t.Errorf("read before COMMIT: v=%d, want the committed 1", got)
				}
				return tx.Commit().Error
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := read(r); got != 5 {
				t.Fatalf("cached read after COMMIT returned: v=%d, live 5", got)
			}
		})
	}
}

// gftTok is the table of TestLostAnnouncementEndsOnItsOwn.
type gftTok struct {
	ID int64
	V  int64
}

func (gftTok) TableName() string { return "gft_def_tok" }

// An announcement nobody ends (a writer that died between announcing and
// bumping, or a transaction the plugin cannot follow) ends with its own
// lifetime, however often other writes to the table come and go: each
// token has its own deadline, and other writes do not renew it.
func TestLostAnnouncementEndsOnItsOwn(t *testing.T) {
	pg := openDB(t)
	for _, ddl := range []string{
		`CREATE TABLE IF NOT EXISTS gft_def_tok (id bigint PRIMARY KEY, v bigint NOT NULL)`,
		`INSERT INTO gft_def_tok VALUES (1, 0) ON CONFLICT (id) DO NOTHING`,
	} {
		if err := pg.Exec(ddl).Error; err != nil {
			t.Fatal(err)
		}
	}
	const lifetime = time.Second
	for _, held := range []bool{false, true} {
		t.Run(fmt.Sprintf("held=%v", held), func(t *testing.T) {
			ins := newInstances(t, 3, func(c *Config) { c.LoadTimeout = lifetime })
			lost, w, r := ins[0], ins[1], ins[2]
			if a := lost.p.engine.Announce(context.Background(), []string{"gft_def_tok"}, held); len(a.Tables()) != 1 {
				t.Fatal("the lost write's announcement failed")
			}
			read := func() {
				t.Helper()
				var row gftTok
				if err := r.db.Scopes(Cache(time.Minute)).First(&row, 1).Error; err != nil {
					t.Fatal(err)
				}
			}
			// Steady writes, one every 300 ms, beside the reads: before each
			// token had its own deadline, each renewed the lost one.
			const writes = 40 // 12 s: many times the lost token's lifetime
			done := make(chan struct{})
			writerDone := make(chan error, 1)
			go func() {
				tick := time.NewTicker(300 * time.Millisecond)
				defer tick.Stop()
				for i := 0; i < writes; i++ {
					if err := w.db.Model(&gftTok{ID: 1}).Update("v", gorm.Expr("v + 1")).Error; err != nil {
						writerDone <- err
						return
					}
					select {
					case <-done:
						writerDone <- nil
						return
					case <-tick.C:
					}
				}
				writerDone <- nil
			}()
			hit := false
			for !hit {
				hits := r.p.Stats().Hits
				read()
				hit = r.p.Stats().Hits > hits
				select {
				case err := <-writerDone:
					if err != nil {
						t.Fatal(err)
					}
					if !hit {
						t.Fatalf("during %d writes over %v, reads never hit: the lost announcement (lifetime %v) never ended", writes, writes*300*time.Millisecond, lifetime)
					}
					return
				default:
				}
			}
			close(done)
			if err := <-writerDone; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// DDL changes what names return: a replaced or renamed view, a table
// created after a catalog read. Another instance's next cached read must
// answer as the database does.
func TestDDLInvalidates(t *testing.T) {
	ins := newInstances(t, 2, nil)
	w, r := ins[0], ins[1]
	sfx := randHex(5)
	base, va, vb, created := "gft_ddl_b"+sfx, "gft_ddl_va"+sfx, "gft_ddl_vb"+sfx, "gft_ddl_new"+sfx
	admin := openDB(t)
	dropAtEnd(t, admin, "DROP VIEW IF EXISTS "+va, "DROP VIEW IF EXISTS "+vb, "DROP TABLE IF EXISTS "+base, "DROP TABLE IF EXISTS "+created)
	adminExec(t, admin, "CREATE TABLE "+base+" (id int PRIMARY KEY, v text NOT NULL)")
	adminExec(t, admin, "INSERT INTO "+base+" VALUES (1, 'one'), (2, 'two')")
	adminExec(t, admin, "CREATE VIEW "+va+" AS SELECT id, v FROM "+base+" WHERE id = 1")

	cached := func(q string) (string, error) {
		var vs []string
		err := r.db.Scopes(Cache(time.Minute)).Raw(q).Scan(&vs).Error
		return fmt.Sprint(vs), err
	}
	expect := func(what, q, want string) {
		t.Helper()
		for i := 0; i < 2; i++ { // the second read would be a hit
			got, err := cached(q)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if got != want {
				t.Fatalf("%s (read %d): got %s, want %s", what, i+1, got, want)
			}
		}
	}

	t.Run("CREATE OR REPLACE VIEW", func(t *testing.T) {
		q := "SELECT v FROM " + va + " ORDER BY id"
		expect("before", q, "[one]")
		err := w.db.Migrator().CreateView(va, gorm.ViewOption{Replace: true, Query: w.db.Table(base).Select("id, v")})
		if err != nil {
			t.Fatal(err)
		}
		expect("after the view was replaced", q, "[one two]")
	})
	t.Run("ALTER VIEW RENAME", func(t *testing.T) {
		q := "SELECT v FROM " + va + " ORDER BY id"
		expect("before", q, "[one two]")
		if err := w.db.Exec("ALTER VIEW " + va + " RENAME TO " + vb).Error; err != nil {
			t.Fatal(err)
		}
		if got, err := cached(q); err == nil {
			t.Fatalf("after the rename, a read of the old name got %s, want the database's error", got)
		}
	})
	t.Run("catalog read after CREATE TABLE", func(t *testing.T) {
		q := "SELECT table_name FROM information_schema.tables WHERE table_name = '" + created + "'"
		expect("before", q, "[]")
		if err := w.db.Exec("CREATE TABLE " + created + " (id int)").Error; err != nil {
			t.Fatal(err)
		}
		expect("after CREATE TABLE", q, "["+created+"]")
		if !w.db.Migrator().HasTable(created) || !r.db.Scopes(Cache(time.Minute)).Migrator().HasTable(created) {
			t.Fatal("HasTable does not see the new table")
		}
	})
}

// A statement's announcement belongs to that statement: db.Connection
// runs every statement on one GORM Statement, and the reads after a write
// there must not bump the written table again, which made every other
// instance miss.
func TestAnnouncementNotReappliedByLaterStatements(t *testing.T) {
	ins := newInstances(t, 2, nil)
	a, b := ins[0], ins[1]
	pg := openDB(t)
	adminExec(t, pg, `CREATE TABLE IF NOT EXISTS gft_def_tok (id bigint PRIMARY KEY, v bigint NOT NULL)`)
	adminExec(t, pg, `INSERT INTO gft_def_tok VALUES (1, 0) ON CONFLICT (id) DO NOTHING`)
	tag := uniqueTag(t)
	read := func() {
		t.Helper()
		var n int
		if err := b.db.Scopes(Cache(time.Minute)).Raw("SELECT gft_record(?, 0) AS n FROM gft_def_tok WHERE id = 1", tag).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
	}
	err := a.db.Connection(func(c *gorm.DB) error {
		// A write outside a transaction announces itself on the statement.
		if err := c.Exec("UPDATE gft_def_tok SET v = v + 1 WHERE id = 1").Error; err != nil {
			return err
		}
		read() // fills after the write
		before := calls(t, pg, tag)
		for i := 0; i < 3; i++ {
			var one int
			if err := c.Raw("SELECT 1").Scan(&one).Error; err != nil {
				return err
			}
		}
		read()
		if n := calls(t, pg, tag) - before; n != 0 {
			t.Errorf("reads on the connection after its write invalidated the table again: B's next read ran the query %d times, want a hit", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A statement that writes, run through the row processor (Rows(), Row(),
// and Raw(...).Scan, which reads through Rows) used to be bumped as soon as
// its result was opened. PostgreSQL commits it only once the client has
// read a result too large for the socket's buffers, so a read in between
// (here A's own, with Local) stored the row from before the write under the
// write's new generation: after the write had returned and its rows were
// closed, A's near cache and B's reads from Redis still served it.
func TestRowsWriteBumpedAfterItCompletes(t *testing.T) {
	const pad = 20000 // rows of 1 kB: more than loopback's socket buffers
	for _, via := range []string{"Rows", "Row"} {
		t.Run(via, func(t *testing.T) {
			r := newLocalRig(t, nil)
			r.warm(t, r.a, time.Hour, "v0")
			q := r.a.db.Raw("WITH u AS (UPDATE "+r.table+" SET v = 'v1' WHERE id = 1 RETURNING v) "+
				"SELECT u.v, repeat('x', 1000) AS pad FROM u, generate_series(1, ?)", pad)
			var first string
			var read int
			if via == "Rows" {
				rows, err := q.Rows()
				if err != nil {
					t.Fatal(err)
				}
				_ = r.read(t, r.a, time.Hour) // between opening the result and reading it
				for rows.Next() {
					var v, p string
					if err := rows.Scan(&v, &p); err != nil {
						t.Fatal(err)
					}
					if read == 0 {
						first = v
					}
					read++
				}
				if err := errors.Join(rows.Err(), rows.Close()); err != nil {
					t.Fatal(err)
				}
			} else {
				row := q.Row()
				_ = r.read(t, r.a, time.Hour)
				var p string
				if err := row.Scan(&first, &p); err != nil {
					t.Fatal(err)
				}
				read = pad // Row reads one, and closes the rest
			}
			if first != "v1" || read != pad {
				t.Fatalf("the write's own result: %d rows, the first %q; want %d, v1", read, first, pad)
			}
			var truth string
			if err := r.a.db.Raw("SELECT v FROM " + r.table + " WHERE id = 1").Scan(&truth).Error; err != nil || truth != "v1" {
				t.Fatalf("read without the cache after the write: %q, %v; want v1", truth, err)
			}
			if v := r.read(t, r.a, time.Hour); v != "v1" {
				t.Errorf("A (Local) after its own write completed: %q, want v1", v)
			}
			if v := r.read(t, r.b, 0); v != "v1" {
				t.Errorf("B (from Redis) after A's write completed: %q, want v1", v)
			}
		})
	}
}

// A CALL that writes and returns several result sets, run through Rows(),
// keeps them all: only a statement with one result set is read into memory
// before Rows() returns (an entry holds one); a CALL runs as GORM runs it,
// announced as held.
func TestRowsCallKeepsResultSets(t *testing.T) {
	in := mysqlTestDB.instances(t, 1, nil)[0]
	table := "gft_call_" + randHex(4)
	adminExec(t, in.db, "CREATE TABLE "+table+" (id int PRIMARY KEY, v varchar(20) NOT NULL)")
	dropAtEnd(t, in.db, "DROP PROCEDURE IF EXISTS "+table+"_p", "DROP TABLE IF EXISTS "+table)
	adminExec(t, in.db, "INSERT INTO "+table+" VALUES (1, 'a'), (2, 'b')")
	adminExec(t, in.db, "CREATE PROCEDURE "+table+"_p() BEGIN UPDATE "+table+" SET v = 'c' WHERE id = 1; "+
		"SELECT id FROM "+table+" WHERE id = 1; SELECT v FROM "+table+" WHERE id = 2; END")
	rows, err := in.db.Raw("CALL " + table + "_p()").Rows()
	if err != nil {
		t.Fatal(err)
	}
	var sets [][]string
	for {
		var set []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			set = append(set, s)
		}
		sets = append(sets, set)
		if !rows.NextResultSet() {
			break
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	if len(sets) < 2 || !slices.Equal(sets[0], []string{"1"}) || !slices.Equal(sets[1], []string{"b"}) {
		t.Errorf("result sets %q, want [[1] [b]], then the CALL's status", sets)
	}
}
