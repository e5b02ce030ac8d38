package gormflight

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/testpg"
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
// come with the generations, in the same Redis round trip). The plugin
// does (a): (b) adds a query to both paths and, right after a write, finds
// the replica behind and goes to the primary anyway, or waits out the lag.
//
//	go test -run '^$' -bench Replica -benchmem -count 6 . > replica.txt
//	benchstat -filter /op:write -col /lsn replica.txt
//	benchstat -filter /op:fill -col /from replica.txt
//	benchstat -filter /op:fill-after-write -col /from replica.txt
//	benchstat -filter /op:lsn-query replica.txt
func BenchmarkReplica(b *testing.B) {
	e := newReplicaBench(b)
	b.Run("op=write/lsn=no", func(b *testing.B) {
		for i := range b.N {
			e.write(b, i)
		}
	})
	b.Run("op=write/lsn=yes", func(b *testing.B) {
		for i := range b.N {
			e.write(b, i)
			_ = walPosition(b, e.primary)
		}
	})
	// The queries (b) adds, alone: one on each path.
	b.Run("op=lsn-query/on=primary", func(b *testing.B) {
		for range b.N {
			_ = walPosition(b, e.primary)
		}
	})
	b.Run("op=lsn-query/on=replica", func(b *testing.B) {
		recorded := walPosition(b, e.primary)
		b.ResetTimer()
		for range b.N {
			_ = e.lsn.replayed(b, recorded)
		}
	})
	for _, fill := range []struct {
		from  string
		route func(b *testing.B, recorded string) *instance
	}{
		{"primary", func(*testing.B, string) *instance { return e.in }},
		{"replica", func(*testing.B, string) *instance { return e.naive }},
		{"replica+lsn", func(b *testing.B, recorded string) *instance { return e.lsn.orPrimary(b, recorded, e.naive, e.in) }},
	} {
		b.Run("op=fill/from="+fill.from, func(b *testing.B) {
			caughtUp(b, e.pair)
			recorded := walPosition(b, e.primary)
			b.ResetTimer()
			e.fills(b, func() { benchInvalidate(b, e.in) }, func() *instance { return fill.route(b, recorded) })
		})
	}
	// Right after a write, at the replica's delay: (a) fills from the
	// primary as always; (b) finds the replica behind and goes to the
	// primary, or waits for the replica.
	b.Run("op=fill-after-write/from=primary", func(b *testing.B) {
		e.fillsAfterWrite(b, func(string) *instance { return e.in })
	})
	b.Run("op=fill-after-write/from=replica+lsn", func(b *testing.B) {
		e.lsn.toPrimary = 0
		e.fillsAfterWrite(b, func(recorded string) *instance { return e.lsn.orPrimary(b, recorded, e.naive, e.in) })
		b.ReportMetric(float64(e.lsn.toPrimary)/float64(b.N), "primary-fills/op")
	})
	b.Run("op=fill-after-write/from=replica+lsn-wait", func(b *testing.B) {
		e.fillsAfterWrite(b, func(recorded string) *instance { e.lsn.await(b, recorded); return e.naive })
	})
}

// replicaBench is BenchmarkReplica's pair and instances: in fills the
// plugin's way, naive where dbresolver routes it (the replica); both
// share one prefix, and write and read item id.
type replicaBench struct {
	pair      *testpg.Pair
	in, naive *instance
	id        int64
	primary   *sql.DB // in's own pool, on the primary
	lsn       *replicaLSN
}

func newReplicaBench(b *testing.B) *replicaBench {
	b.Helper()
	pair := startReplica(b)
	prefix := testPrefix(b)
	e := &replicaBench{pair: pair, in: replicaInstance(b, pair, prefix, false), naive: replicaInstance(b, pair, prefix, true)}
	e.id = newRepItem(b, pair, e.in.db)
	var err error
	if e.primary, err = e.in.db.DB(); err != nil {
		b.Fatal(err)
	}
	replica, err := openDSN(b, pair.Replica).DB()
	if err != nil {
		b.Fatal(err)
	}
	e.lsn = &replicaLSN{replica: replica}
	// Open every pool the benchmarks use before the first is timed.
	e.write(b, 0)
	for _, in := range []*instance{e.in, e.naive} {
		e.fills(b, func() { benchInvalidate(b, e.in) }, func() *instance { return in })
	}
	_ = e.lsn.replayed(b, walPosition(b, e.primary))
	return e
}

// write sets item id's val to v through in: commit and bump.
func (e *replicaBench) write(b *testing.B, v int) {
	if err := e.in.db.Model(&repItem{ID: e.id}).Update("val", v).Error; err != nil {
		b.Fatal(err)
	}
}

// fillsAfterWrite times b.N fills, each right after a write whose WAL
// position route gets.
func (e *replicaBench) fillsAfterWrite(b *testing.B, route func(recorded string) *instance) {
	var recorded string
	i := 0
	e.fills(b, func() {
		i++
		e.write(b, i)
		recorded = walPosition(b, e.primary)
	}, func() *instance { return route(recorded) })
}

// fills times b.N cached reads of item id, each a fill: before each, with
// the timer stopped, prepare bumps the generation of gft_rep_item; route
// chooses the instance that fills (and runs, timed, what the choice
// costs). Every read must load from the database.
func (e *replicaBench) fills(b *testing.B, prepare func(), route func() *instance) {
	b.Helper()
	before := sumStats(e.in, e.naive).Loads
	for range b.N {
		b.StopTimer()
		prepare()
		b.StartTimer()
		var item repItem
		if err := route().db.Scopes(Cache(time.Minute)).First(&item, e.id).Error; err != nil {
			b.Fatal(err)
		}
	}
	if loads := sumStats(e.in, e.naive).Loads - before; loads != uint64(b.N) {
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
