package gormflight

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// What keeping fills off a lagging replica costs, on the pair of
// TestReadReplica, for the two designs:
//
//	(a) every fill runs on a dbresolver source (the plugin, readFromSource);
//	(b) each write records the primary's WAL position after its commit,
//	    and a fill runs on the replica only once the replica has replayed
//	    that far (pg_last_wal_replay_lsn() >= recorded), waiting for it or
//	    going to the primary otherwise.
//
// (b) exists here only, as a prototype: its write reads
// pg_current_wal_lsn() after the commit (one more query; storing the
// position would ride on the bump's script), and its fill asks the replica
// how far it has replayed (one more query; the recorded position would
// come with the generations, in the same Redis round trip).
//
//	go test -run '^$' -bench Replica -benchmem -count 6 . > replica.txt
//	benchstat -filter /op:write -col /lsn replica.txt
//	benchstat -filter /op:fill -col /from replica.txt
//	benchstat -filter /op:fill-after-write -col /from replica.txt
func BenchmarkReplica(b *testing.B) {
	pair := startReplica(b)
	prefix := testPrefix(b)
	in := replicaInstance(b, pair, prefix, false)
	naive := replicaInstance(b, pair, prefix, true) // fills on the replica
	both := []*instance{in, naive}
	id := newRepItem(b, pair, in.db)
	primary, err := in.db.DB()
	if err != nil {
		b.Fatal(err)
	}
	replica := openDSN(b, pair.Replica)
	replicaDB, err := replica.DB()
	if err != nil {
		b.Fatal(err)
	}
	write := func(b *testing.B, v int) {
		if err := in.db.Model(&repItem{ID: id}).Update("val", v).Error; err != nil {
			b.Fatal(err)
		}
	}
	// Open every pool the benchmarks use before the first is timed.
	write(b, 0)
	benchFills(b, both, id, func() { benchInvalidate(b, in) }, func() *instance { return in })
	benchFills(b, both, id, func() { benchInvalidate(b, in) }, func() *instance { return naive })
	_ = lsnCheck(replicaDB).replayed(b, walPosition(b, primary))
	b.Run("op=write/lsn=no", func(b *testing.B) {
		for i := range b.N {
			write(b, i)
		}
	})
	b.Run("op=write/lsn=yes", func(b *testing.B) {
		for i := range b.N {
			write(b, i)
			_ = walPosition(b, primary)
		}
	})
	lsn := lsnCheck(replicaDB)
	for _, fill := range []struct {
		from string
		run  func(b *testing.B, recorded string) *instance
	}{
		{"primary", func(*testing.B, string) *instance { return in }},
		{"replica", func(*testing.B, string) *instance { return naive }},
		{"replica+lsn", func(b *testing.B, recorded string) *instance { return lsn.orPrimary(b, recorded, naive, in) }},
	} {
		b.Run("op=fill/from="+fill.from, func(b *testing.B) {
			caughtUp(b, pair)
			recorded := walPosition(b, primary)
			b.ResetTimer()
			benchFills(b, both, id, func() { benchInvalidate(b, in) }, func() *instance { return fill.run(b, recorded) })
		})
	}
	// Right after a write, at the replica's delay: (b) goes to the primary,
	// or waits for the replica.
	var recorded string
	after := func(i int) func() {
		return func() { write(b, i); recorded = walPosition(b, primary) }
	}
	b.Run("op=fill-after-write/from=replica+lsn", func(b *testing.B) {
		i := 0
		benchFills(b, both, id, func() { i++; after(i)() }, func() *instance { return lsn.orPrimary(b, recorded, naive, in) })
		b.ReportMetric(float64(lsn.toPrimary)/float64(b.N), "primary-fills/op")
		lsn.toPrimary = 0
	})
	b.Run("op=fill-after-write/from=replica+lsn-wait", func(b *testing.B) {
		i := 0
		benchFills(b, both, id, func() { i++; after(i)() }, func() *instance { lsn.await(b, recorded); return naive })
	})
}

// benchFills times b.N cached reads of item id, each a fill: before each,
// with the timer stopped, prepare bumps the generation of gft_rep_item;
// route chooses the instance of ins that fills (and runs, timed, what the
// choice costs). Every read must load from the database.
func benchFills(b *testing.B, ins []*instance, id int64, prepare func(), route func() *instance) {
	b.Helper()
	before := sumStats(ins...).Loads
	for range b.N {
		b.StopTimer()
		prepare()
		b.StartTimer()
		var item repItem
		if err := route().db.Scopes(Cache(time.Minute)).First(&item, id).Error; err != nil {
			b.Fatal(err)
		}
	}
	if loads := sumStats(ins...).Loads - before; loads != uint64(b.N) {
		b.Errorf("%d loads for %d reads: not every read was a fill", loads, b.N)
	}
}

// benchInvalidate bumps gft_rep_item's generation, so that the next cached
// read of it misses.
func benchInvalidate(b *testing.B, in *instance) {
	if err := in.p.Invalidate(context.Background(), "gft_rep_item"); err != nil {
		b.Fatal(err)
	}
}

// walPosition returns the primary's WAL position now: after a commit, at
// or past its commit record.
func walPosition(b *testing.B, primary *sql.DB) string {
	var lsn string
	if err := primary.QueryRow("SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		b.Fatal(err)
	}
	return lsn
}

// replicaLSN is design (b)'s check on the replica.
type replicaLSN struct {
	replica   *sql.DB
	toPrimary int // fills orPrimary sent to the primary
}

func lsnCheck(replica *sql.DB) *replicaLSN { return &replicaLSN{replica: replica} }

// replayed reports whether the replica has replayed the WAL up to recorded.
func (r *replicaLSN) replayed(b *testing.B, recorded string) bool {
	var ok bool
	if err := r.replica.QueryRow("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", recorded).Scan(&ok); err != nil {
		b.Fatal(err)
	}
	return ok
}

// orPrimary returns onReplica when the replica has replayed up to
// recorded, onPrimary otherwise.
func (r *replicaLSN) orPrimary(b *testing.B, recorded string, onReplica, onPrimary *instance) *instance {
	if r.replayed(b, recorded) {
		return onReplica
	}
	r.toPrimary++
	return onPrimary
}

// await polls the replica until it has replayed up to recorded.
func (r *replicaLSN) await(b *testing.B, recorded string) {
	deadline := time.Now().Add(waitTimeout)
	for !r.replayed(b, recorded) {
		if time.Now().After(deadline) {
			b.Fatalf("the replica has not replayed %s in %v", recorded, waitTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}
