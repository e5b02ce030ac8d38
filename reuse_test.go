package gormflight

import (
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"
)

// A *gorm.DB chain is reused (GORM runs every statement of a chain built
// from a session with no new instance, as db.Connection's, on one
// Statement), or cloned (Session) after a cached read swapped its pool:
// each statement is still decided on its own.

// TestReusedStatementReadsItsSession: on a dedicated connection, a chain
// that read tenant A's schema, then ran SET search_path to B's, reads B's
// rows. The chain's pool was swapped by its first read, and a swapped pool
// used to be kept with the session it had read then: the second read was
// served A's rows from the cache.
func TestReusedStatementReadsItsSession(t *testing.T) {
	in := newInstance(t, testConfig(openRedis(t, ""), testPrefix(t)))
	f := newTenSchemas(t, in.db)
	truth := f.truth(t)
	var ra, rb []idName
	err := in.db.Connection(func(tx *gorm.DB) error {
		defer tx.Exec("RESET ALL")
		if err := tx.Exec("SET search_path TO " + quotedIdent(f.schemas["a"])).Error; err != nil {
			return err
		}
		q := tx.Scopes(Cache(time.Minute)).Table(f.table).Select("id", "name").Order("id")
		if err := q.Find(&ra).Error; err != nil {
			return err
		}
		if err := q.Exec("SET search_path TO " + quotedIdent(f.schemas["b"])).Error; err != nil {
			return err
		}
		return q.Find(&rb).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := renderRows(ra); got != truth["a"] {
		t.Errorf("in tenant a's schema the chain read %s, want %s", got, truth["a"])
	}
	if got := renderRows(rb); got != truth["b"] {
		t.Errorf("after SET search_path to tenant b's schema the chain read %s, want %s (tenant a's: %s)", got, truth["b"], truth["a"])
	}
}

// TestNewDBSessionOfCachedChainReadsLive: a session with NewDB drops the
// chain's settings, Cache's among them, and reads the database, though it
// keeps the chain's swapped pool. A row changed behind the plugin's back
// (through a handle without it) shows the difference: the cached entry
// still holds the old name.
func TestNewDBSessionOfCachedChainReadsLive(t *testing.T) {
	in := newInstance(t, testConfig(openRedis(t, ""), testPrefix(t)))
	live := openDB(t)
	tbl := "gftreuse_live_" + randHex(5)
	adminExec(t, live, "CREATE TABLE "+tbl+" (id bigint PRIMARY KEY, name text)")
	dropAtEnd(t, live, "DROP TABLE "+tbl)
	adminExec(t, live, "INSERT INTO "+tbl+" VALUES (1, 'old')")

	chain := in.db.Scopes(Cache(time.Hour)).Table(tbl).Select("id", "name")
	var cached []idName
	if err := chain.Find(&cached).Error; err != nil {
		t.Fatal(err)
	}
	if _, ok := chain.Statement.ConnPool.(*cachedPool); !ok {
		t.Fatalf("the chain's pool is %T after a cached read, want *cachedPool", chain.Statement.ConnPool)
	}
	adminExec(t, live, "UPDATE "+tbl+" SET name = 'new' WHERE id = 1") // no bump: live has no plugin

	var again, fresh []idName
	if err := chain.Find(&again).Error; err != nil {
		t.Fatal(err)
	}
	if err := chain.Session(&gorm.Session{NewDB: true}).Table(tbl).Select("id", "name").Find(&fresh).Error; err != nil {
		t.Fatal(err)
	}
	if renderRows(again) != "[1:old]" {
		t.Errorf("the cached chain read %s again, want its entry [1:old]", renderRows(again))
	}
	if renderRows(fresh) != "[1:new]" {
		t.Errorf("a NewDB session of the chain, without Cache, read %s, want the database's [1:new]", renderRows(fresh))
	}
}

// TestSessionsOfCachedChainConcurrently: Session clones of a chain whose
// pool a cached read swapped, used by several goroutines at once, as
// GORM allows. Each statement gets a pool of its own: under -race, a pool
// the clones shared was written by each of their reads.
func TestSessionsOfCachedChainConcurrently(t *testing.T) {
	in := newInstance(t, testConfig(openRedis(t, ""), testPrefix(t)))
	base := in.db.Scopes(Cache(time.Minute))
	var n int
	if err := base.Raw("SELECT 1 AS n").Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	if _, ok := base.Statement.ConnPool.(*cachedPool); !ok {
		t.Fatalf("the chain's pool is %T after a cached read, want *cachedPool", base.Statement.ConnPool)
	}
	shared := base.Session(&gorm.Session{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				want := g*1000 + i
				var got int
				if err := shared.Raw("SELECT ?::int + 0 AS n", want).Scan(&got).Error; err != nil {
					t.Error(err)
					return
				}
				if got != want {
					t.Errorf("read %d, want %d", got, want)
				}
			}
		})
	}
	wg.Wait()
}
