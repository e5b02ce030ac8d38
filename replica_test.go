package gormflight

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/testdb"
	"github.com/gormflight/gormflight/internal/testpg"
	"gorm.io/gorm"
)

// Read replicas, on a real one that lags: a PostgreSQL primary and a
// streaming replica of the test's own (internal/testpg), the replica
// replaying each commit no sooner than replicaDelay after it. Instances
// use gorm.io/plugin/dbresolver with the primary as source and the replica
// as replica, so every plain read runs on the replica. A write bumps its
// tables' generations; an instance that misses right after must not fill
// from the replica, which has not replayed the write yet, or it stores
// older rows under the new generation for every instance.

// replicaDelay is the replica's recovery_min_apply_delay: long enough that
// the replica is certain to be behind a write when the next statements
// run, short enough to wait out.
const replicaDelay = 500 * time.Millisecond

// repItem is a row of gft_rep_item, the table the replica tests write.
type repItem struct {
	ID  int64
	Val int64
}

func (repItem) TableName() string { return "gft_rep_item" }

// replicaSchema is what the primary gets, and the replica with it: the
// recording function, gft_rep_item and the linearizability registers.
func replicaSchema() []string {
	return slices.Concat(testdb.RecordingSQL["postgres"],
		[]string{`CREATE TABLE gft_rep_item (id bigserial PRIMARY KEY, val bigint NOT NULL)`},
		testdb.LinSchema)
}

// startReplica starts a primary and its lagging replica with the replica
// tests' schema, stopped when t ends.
func startReplica(t testing.TB) *testpg.Pair {
	t.Helper()
	openRedis(t, "") // without Redis, skip before starting servers
	pair := testpg.StartReplicated(t, replicaDelay)
	db := openDSN(t, pair.Primary)
	for _, s := range replicaSchema() {
		if err := db.Exec(s).Error; err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return pair
}

// replicaInstance is an application instance on pair: its handle on the
// primary, dbresolver sending writes to the primary and reads to the
// replica. whereRouted injects the defect the plugin prevents: cached
// queries fill where dbresolver routed them, on the replica.
func replicaInstance(t testing.TB, pair *testpg.Pair, prefix string, whereRouted bool) *instance {
	t.Helper()
	db := openDSN(t, pair.Primary)
	p, err := New(testConfig(openRedis(t, ""), prefix))
	if err != nil {
		t.Fatal(err)
	}
	p.fillWhereRouted = whereRouted
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	for _, u := range []gorm.Plugin{p, resolverOn(t, pair.Primary, pair.Replica)} {
		if err := db.Use(u); err != nil {
			t.Fatalf("db.Use(%s): %v", u.Name(), err)
		}
	}
	return &instance{db: db, p: p}
}

// caughtUp waits until the replica has replayed what the primary wrote so
// far, so that rows just created are there to read.
func caughtUp(t testing.TB, pair *testpg.Pair) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := pair.CaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
}

// newRepItem creates a row of gft_rep_item with val 0 through db and waits
// for the replica to have it.
func newRepItem(t testing.TB, pair *testpg.Pair, db *gorm.DB) int64 {
	t.Helper()
	item := repItem{}
	if err := db.Create(&item).Error; err != nil {
		t.Fatal(err)
	}
	caughtUp(t, pair)
	return item.ID
}

// replicaVal reads item id's val uncached: dbresolver runs it on the
// replica.
func replicaVal(t testing.TB, db *gorm.DB, id int64) int64 {
	t.Helper()
	var item repItem
	if err := db.First(&item, id).Error; err != nil {
		t.Fatal(err)
	}
	return item.Val
}

func TestReadReplica(t *testing.T) {
	pair := startReplica(t)
	t.Run("LagIsReal", func(t *testing.T) { testReplicaLags(t, pair) })
	t.Run("ReadAfterWrite", func(t *testing.T) { testReplicaReadAfterWrite(t, pair) })
	t.Run("Linearizability", func(t *testing.T) {
		ins := make([]*instance, 3)
		prefix := testPrefix(t)
		for i := range ins {
			ins[i] = replicaInstance(t, pair, prefix, false)
		}
		testdb.LinRun(t, replicaClients(t, pair, ins), 8, 300)
	})
	// The same history with fills from the replica must be caught. The
	// replica replays nothing while a history runs, so that however slow
	// the machine, it is behind every write of the history.
	t.Run("CheckerCatchesFillFromReplica", func(t *testing.T) {
		testdb.LinControlOf(t, "FillFromReplica", func(t *testing.T, injected bool) []testdb.LinClient {
			prefix := testPrefix(t)
			ins := []*instance{replicaInstance(t, pair, prefix, injected), replicaInstance(t, pair, prefix, injected)}
			clients := replicaClients(t, pair, ins)
			pair.PauseReplay(t)
			return clients
		})
	})
}

// The replica really lags: a plain read through dbresolver right after a
// write returns the row as it was before the write.
func testReplicaLags(t *testing.T, pair *testpg.Pair) {
	in := replicaInstance(t, pair, testPrefix(t), false)
	id := newRepItem(t, pair, in.db)
	for i := int64(1); i <= 3; i++ {
		if err := in.db.Model(&repItem{ID: id}).Update("val", i).Error; err != nil {
			t.Fatal(err)
		}
		wrote := time.Now()
		got := replicaVal(t, in.db, id)
		lag, err := pair.Lag(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got != i-1 {
			t.Errorf("write %d: an uncached read through dbresolver right after it returned val=%d, want the old %d: the replica does not lag", i, got, i-1)
		}
		waitFor(t, "the replica to replay the write", waitTimeout, func() bool { return replicaVal(t, in.db, id) == i })
		t.Logf("write %d: the replica read val=%d right after it, %d bytes and %v behind; it replayed the write %v after the write returned",
			i, got, lag.Bytes, lag.Time.Round(time.Millisecond), time.Since(wrote).Round(time.Millisecond))
	}
}

// Read-after-write across instances: once a write has returned on A, a
// cached read on B misses and fills with the new row, every time, while
// the replica its reads are routed to still has the old one; A then hits
// B's entry. PostgreSQL counts one fill per write.
func testReplicaReadAfterWrite(t *testing.T, pair *testpg.Pair) {
	prefix := testPrefix(t)
	a, b := replicaInstance(t, pair, prefix, false), replicaInstance(t, pair, prefix, false)
	id := newRepItem(t, pair, a.db)
	tag := uniqueTag(t)
	read := func(in *instance) int64 {
		t.Helper()
		var row struct{ ID, Val, Rec int64 }
		err := in.db.Scopes(Cache(time.Minute)).
			Raw("SELECT id, val, gft_record(?, 0) AS rec FROM gft_rep_item WHERE id = ?", tag, id).Scan(&row).Error
		if err != nil {
			t.Fatal(err)
		}
		return row.Val
	}
	if v := read(b); v != 0 {
		t.Fatalf("the first cached read returned val=%d, want 0", v)
	}
	const writes = 40
	behind := 0
	for i := int64(1); i <= writes; i++ {
		if err := a.db.Model(&repItem{ID: id}).Update("val", i).Error; err != nil {
			t.Fatal(err)
		}
		if v := read(b); v != i {
			t.Errorf("write %d: B's cached read after it returned val=%d", i, v)
		}
		if replicaVal(t, b.db, id) < i {
			behind++ // the replica had still not replayed the write B read
		}
		if v := read(a); v != i {
			t.Errorf("write %d: A's cached read after B's returned val=%d", i, v)
		}
	}
	t.Logf("the replica was behind the write after B's read at %d of %d writes", behind, writes)
	if behind == 0 {
		t.Errorf("the replica had replayed every write by the time B had read: the test showed nothing")
	}
	if n := calls(t, openDSN(t, pair.Primary), tag); n != writes+1 {
		t.Errorf("the primary ran the cached query %d times, want %d: one fill per write (B's miss), A's reads hits", n, writes+1)
	}
}

// replicaClients makes fresh registers on pair's primary, waits for the
// replica to have them and returns the instances' clients.
func replicaClients(t *testing.T, pair *testpg.Pair, ins []*instance) []testdb.LinClient {
	t.Helper()
	regs := linRegs{base: testdb.LinBase()}
	statements, args := testdb.LinRegisterRows(regs.base)
	for i, s := range statements {
		if err := ins[0].db.Exec(s, args[i]...).Error; err != nil {
			t.Fatal(err)
		}
	}
	caughtUp(t, pair)
	clients := make([]testdb.LinClient, len(ins))
	for i, in := range ins {
		clients[i] = regs.client(in, nil)
	}
	return clients
}
