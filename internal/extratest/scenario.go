package extratest

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/gormflight/gormflight"
	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/testdb"
	"github.com/gormflight/gormflight/observe"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
)

// Played is what Play did, for the adapters' tests to find in what they
// exported.
type Played struct {
	// Outcomes are the statements' outcomes, in the order of the steps;
	// within step 2, A's load and B's wait end in either order.
	Outcomes []observe.Outcome
	// Tags are the argument values of the reads: no span, attribute or
	// label may hold them.
	Tags []string
	// A and B are the two instances.
	A, B *Instance
}

// Play runs, on two instances that report to obs, with ctx:
//
//  1. a cold read on A (load), then the same read on B (hit);
//  2. another cold read on A, whose store is held until B's read of it
//     waits (A: load; B: wait);
//  3. a read in a transaction on A (bypass);
//  4. a read that fails in SQLite on A (load, with the error).
//
// It checks that SQLite ran each cached read once.
func Play(t *testing.T, ctx context.Context, r *Rig, obs observe.Observer) Played {
	t.Helper()
	hold := testdb.NewHoldHook(t, storesEntry)
	a, b := r.Instance(t, obs, hold), r.Instance(t, obs, nil)
	p := Played{A: a, B: b, Tags: []string{testdb.Unique("extra-hit-"), testdb.Unique("extra-wait-")}}
	must(t, a.Read(ctx, p.Tags[0]))
	must(t, b.Read(ctx, p.Tags[0]))
	hold.Arm()
	errs := make(chan error, 2)
	go func() { errs <- a.Read(ctx, p.Tags[1]) }()
	<-hold.Held()
	go func() { errs <- b.Read(ctx, p.Tags[1]) }()
	testdb.WaitFor(t, "B to wait for A's load", func() bool { return b.P.Stats().Waits == 1 })
	hold.Release()
	must(t, <-errs)
	must(t, <-errs)
	must(t, a.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var v string
		return tx.Scopes(gormflight.Cache(time.Minute)).Raw("SELECT v FROM " + Table + " WHERE id = 1").Scan(&v).Error
	}))
	var n int64
	err := a.DB.WithContext(ctx).Scopes(gormflight.Cache(time.Minute)).Raw("SELECT abs(?) FROM "+Table+" WHERE id = 1", int64(math.MinInt64)).Scan(&n).Error
	if err == nil {
		t.Fatal("abs of the smallest integer did not fail")
	}
	for _, tag := range p.Tags {
		if c := Calls(t, tag); c != 1 {
			t.Errorf("SQLite ran the read %s %d times, want 1", tag, c)
		}
	}
	p.Outcomes = []observe.Outcome{observe.Load, observe.Hit, observe.Load, observe.Wait, observe.Bypass, observe.Load}
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// storesEntry matches the round trip that stores a loaded entry.
func storesEntry(cmds []redis.Cmder) bool {
	return slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return engine.ScriptOf(c) == engine.ScriptFill })
}

// Count returns how many of outcomes are o.
func Count(outcomes []observe.Outcome, o observe.Outcome) int {
	n := 0
	for _, x := range outcomes {
		if x == o {
			n++
		}
	}
	return n
}
