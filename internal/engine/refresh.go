package engine

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Refresh ahead of expiry. A hit on an entry close to its expiry starts one
// background refresh for the whole cluster and is answered at once with the
// entry it found, so that no caller waits for a hot key's reload.
//
// "Close" is decided the XFetch way (Vattani et al., VLDB 2015): the stored
// value records how long its load took (Δ), and a hit refreshes when
// Δ × β × −ln(rand) ≥ the entry's time left. The test is applied only in
// the last β × Δ of the entry's life: on a hot key, with thousands of hits
// per Δ, it would otherwise fire right after every store and reload the key
// several times per TTL. A refresh started there ends about when the entry
// expires, so the next entry is stored about one TTL after the last.
//
// The refresh takes the key's lock with a single try (if another instance
// holds it, nobody waits), reads the stamp before its query and stores under
// the same rules as a fill: a write during the refresh makes its result
// stale, never served. Each instance runs at most Config.MaxRefreshes at
// once, one per key, and skips beyond that. Close cancels them and waits.
// Their errors reach no caller: they are counted and logged, and the entry
// is served until it expires.

// refreshAhead starts a refresh of req's key when the hit that found f is
// close enough to the entry's expiry. It runs inside a flight, which holds
// the gate, so that Close waits for every refresh it starts.
func (e *Engine) refreshAhead(req request, f found) {
	if f.head == "" || !req.refreshable {
		return
	}
	if !f.stale { // a stale entry is refreshed at once
		// Time left before the TTL; an entry kept for StaleFor lives longer.
		beta, load, left := e.cfg.RefreshBeta, float64(f.meta.load), float64(f.left-f.meta.stale)
		if beta <= 0 || load <= 0 || left <= 0 {
			return
		}
		window := beta * load // in float64: a large β must not overflow a Duration
		if left > window || window*rand.ExpFloat64() < left {
			return
		}
	}
	// One refresh per stored value in this instance (the memo remembers
	// it was tried), and one at a time per key.
	if !e.memo.claimRefresh(req.keys.entry, f.head) {
		return
	}
	if _, busy := e.refreshing.LoadOrStore(req.keys.entry, struct{}{}); busy {
		// Of a value before this one: this one is not refreshed yet.
		e.memo.releaseRefresh(req.keys.entry, f.head, 0)
		return
	}
	if e.refreshSlots != nil {
		select {
		case e.refreshSlots <- struct{}{}:
		default:
			e.refreshing.Delete(req.keys.entry)
			e.memo.releaseRefresh(req.keys.entry, f.head, 0)
			e.stats.RefreshesSkipped.Add(1)
			return
		}
	}
	e.refreshes.Add(1)
	go e.refresh(req, f.head)
}

// refresh reloads req's key, whose stored value had head when the hit saw
// it, in the background; see refreshAhead. It keeps the books: a panic in
// the query is counted and logged, and the key, its slot and the claim of
// a refresh that failed, or could not take the lock, are released.
func (e *Engine) refresh(req request, head string) {
	release, after := false, time.Duration(0)
	defer func() {
		if v := recover(); v != nil {
			release, after = true, 0
			e.stats.RefreshErrors.Add(1)
			e.errorf(LogRefresh, "gormflight: a background refresh of a query on %v panicked: %v", req.tables, v)
		}
		if release {
			e.memo.releaseRefresh(req.keys.entry, head, after)
		}
		e.refreshing.Delete(req.keys.entry)
		if e.refreshSlots != nil {
			<-e.refreshSlots
		}
		e.refreshes.Done()
	}()
	release, after = e.reload(req, head)
}

// reload is a refresh's work: one try at the lock, the query, the store. It
// reports whether a hit may try again, and after how long: at once when
// the query failed, after LockExpiry when the lock could not be taken.
func (e *Engine) reload(req request, head string) (release bool, after time.Duration) {
	// Redis operations run to their end (each bounded by RedisTimeout);
	// Close cancels only the query, through bgCtx.
	ctx := context.Background()
	start := e.now()
	var stampCmds []*redis.Cmd
	var cur *redis.StringCmd
	m, err := e.tryLock(ctx, req.keys, func(ctx context.Context, pipe redis.Pipeliner) {
		cur = pipe.GetRange(ctx, req.keys.entry, 0, int64(len(head)-1))
		stampCmds = e.queueStamp(ctx, pipe, req)
	})
	if err != nil {
		// Held by another instance, which is loading it; or Redis failed,
		// which the breaker counts. Either way the entry stays served, and
		// a hit tries again once the other's lock would have lapsed: its
		// refresh, or Redis, may have failed.
		e.stats.RefreshesSkipped.Add(1)
		return true, e.cfg.LockExpiry
	}
	stop := e.keepLock(m)
	payload, woken := readyFailed, false
	defer func() {
		stop()
		e.unlock(m)
		if !woken {
			e.publish(req.keys, payload)
		}
	}()
	stamp, err := stampOf(stampCmds)
	if err != nil || cur.Val() != head {
		// A write is committing (its bump ends the entry, and the next miss
		// loads past it), or another instance stored a new value since the
		// hit: nothing to refresh.
		e.stats.RefreshesSkipped.Add(1)
		return false, 0 // "failed": a flight that missed meanwhile and waits on the lock looks again
	}
	e.stats.RefreshesStarted.Add(1)
	e.stats.Loads.Add(1)
	ent, err := e.runQuery(e.bgCtx, req)
	if err != nil && e.bgCtx.Err() != nil {
		return false, 0 // Close cancelled it
	}
	if err != nil {
		e.stats.RefreshErrors.Add(1)
		e.errorf(LogRefresh, "gormflight: a background refresh of a query on %v failed, serving the entry until it expires: %v", req.tables, err)
		return true, 0
	}
	stop()
	payload, woken = e.store(ctx, req, stamp, e.now().Sub(start), ent)
	return false, 0
}

// frozenArgs returns a copy of args that cannot change after the call, or
// false when an argument could (a pointer, a Valuer, a slice other than
// []byte, a named type): a refresh would then query other values than the
// ones its key was computed from.
//
// The copy also keeps the refresh's arguments apart from the statement's
// Vars, which GORM resets and reuses for the next statement of a session
// that is not new.
func frozenArgs(args []any) ([]any, bool) {
	if len(args) == 0 {
		return nil, true
	}
	for _, a := range args {
		switch a.(type) {
		case nil, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64,
			float32, float64, string, time.Time, []byte:
		default:
			return nil, false // checked before copying: no allocation for nothing
		}
	}
	out := slices.Clone(args)
	for i, a := range out {
		if b, ok := a.([]byte); ok {
			out[i] = bytes.Clone(b)
		}
	}
	return out, true
}

// FlightArgs returns the arguments a flight runs its query with: the copy
// frozenArgs makes when they are plain values (plain), snapshotArgs's
// otherwise.
func FlightArgs(args []any) (out []any, plain bool) {
	if out, plain = frozenArgs(args); plain {
		return out, true
	}
	return snapshotArgs(args), false
}

// snapshotArgs returns a copy of args for a load that may run after its
// caller returned (a flight other callers share), when frozenArgs refused
// them: the caller may then change what its pointers and slices point to,
// and the flight must neither read that memory nor run another query than
// the one keyed. A pointer is replaced by a pointer of its type to a copy
// of its target, a slice by a copy of its elements; their types, and the
// methods a driver may call (Value), stay the same. The copy is one level
// deep: memory further down (a pointer inside a struct, as in a decimal's
// big.Int) is shared still, and taken to be unchanged, as a time.Time's
// location is.
func snapshotArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = snapshot(a)
	}
	return out
}

func snapshot(a any) any {
	switch a := a.(type) {
	case nil:
		return nil
	case []byte:
		return bytes.Clone(a)
	case sql.NamedArg:
		a.Value = snapshot(a.Value)
		return a
	}
	v := reflect.ValueOf(a)
	switch {
	case v.Kind() == reflect.Pointer && !v.IsNil():
		p := reflect.New(v.Type().Elem())
		p.Elem().Set(v.Elem())
		return p.Interface()
	case v.Kind() == reflect.Slice && !v.IsNil(): // nil stays nil: NULL, where an empty slice is not
		s := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(s, v)
		return s.Interface()
	}
	return a // a copy already, in a
}

// UncertainOutcome reports whether a statement that failed with err may
// still commit: its context ended or its connection broke while the
// database went on with it. Its announcement is left to end on its own
// (after LoadTimeout), instead of being ended by the bump.
func UncertainOutcome(err error) bool {
	var ne net.Error
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, driver.ErrBadConn) || errors.As(err, &ne)
}
