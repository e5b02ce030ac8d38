package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/gormflight/gormflight/observe"
	"golang.org/x/sync/singleflight"
)

// A Request is one cacheable query as the engine sees it.
type Request struct {
	// Hash identifies the query and everything its rows depend on
	// (internal/cachekey); the Redis keys are made from it.
	Hash string
	// Tables are the generation names of every table the rows depend on,
	// sorted and without duplicates. They include sqlscan.AllTables ("*"),
	// which writes the adapter cannot attribute to a table bump, and which
	// a Redis that restarted drops (restart.go).
	Tables []string
	// TTL is the entry's lifetime, within [MinTTL, MaxTTL].
	TTL time.Duration
	// Load runs the query on the database. Its context is the flight's own,
	// detached from every caller's cancellation and bounded by LoadTimeout.
	Load func(ctx context.Context) (*rowcodec.Entry, error)
	// StaleFor keeps the entry past its TTL for this long (>= 0): a hit then
	// is served at once, as long as its generations are current, and
	// refreshes it in the background.
	StaleFor time.Duration
	// Refreshable says that Load can run after every caller has returned,
	// for a refresh ahead of expiry: it does not use a connection or a
	// transaction the caller owns.
	Refreshable bool
	// Same reports whether the arguments Load runs with still give Hash;
	// nil when they cannot change (frozenArgs took them). A flight may run
	// Load after the caller that started it returned, and a caller may
	// change a pointer or a driver.Valuer it passed once its call returned:
	// the query's rows would then be another query's, stored under this
	// one's key. So Load runs only while Same holds, before and after it,
	// and a flight whose arguments changed answers nobody: each of its other
	// callers takes a flight of its own, and a caller still waiting for its
	// own flight runs its query uncached.
	Same func() bool
	// Local serves the query from this instance's near cache, when the
	// engine has one (Config.LocalSize), with at most this much staleness
	// for writes through other instances (local.go); 0: never.
	Local time.Duration
}

// MinTTL and MaxTTL bound a Request's TTL: Redis keeps expiries in whole
// milliseconds and refuses an expiry of 0.
const (
	MinTTL = time.Millisecond
	MaxTTL = 100 * 365 * 24 * time.Hour
)

func (q *Request) check() error {
	switch {
	case q.Hash == "":
		return fmt.Errorf("%w: no hash", ErrInvalidRequest)
	case !slices.Contains(q.Tables, allTables):
		// Without it, a restart of Redis would not make the entry stale.
		return fmt.Errorf("%w: tables %q do not include %q", ErrInvalidRequest, q.Tables, allTables)
	case q.TTL < MinTTL || q.TTL > MaxTTL:
		return fmt.Errorf("%w: TTL %v outside [%v, %v]", ErrInvalidRequest, q.TTL, MinTTL, MaxTTL)
	case q.StaleFor < 0 || q.StaleFor > MaxTTL:
		return fmt.Errorf("%w: StaleFor %v outside [0, %v]", ErrInvalidRequest, q.StaleFor, MaxTTL)
	case q.Local < 0:
		return fmt.Errorf("%w: Local %v is negative", ErrInvalidRequest, q.Local)
	case q.Load == nil:
		return fmt.Errorf("%w: no load function", ErrInvalidRequest)
	}
	return nil
}

// request is a Request with its Redis names.
type request struct {
	keys        keys
	tables      []string
	ttl         time.Duration
	load        func(ctx context.Context) (*rowcodec.Entry, error)
	staleFor    time.Duration
	refreshable bool
	same        func() bool // Request.Same
	copy        int         // of its tables' keys (copies.go)
}

// flightKey is what this instance's callers of req's key share a flight
// by: the key, and the staleness their query accepts (StaleFor), since a
// flight may answer with an entry past its TTL that only queries accepting
// as much staleness may take.
func (r request) flightKey() string {
	if r.staleFor <= 0 {
		return r.keys.entry
	}
	return r.keys.entry + "\x00" + strconv.FormatInt(int64(r.staleFor), 10)
}

// flightResult is what one flight hands to all of its callers.
type flightResult struct {
	entry *rowcodec.Entry
	// readAt is when the flight started the read (of Redis, or of the
	// database) that produced entry. A caller that arrived after it may not
	// use the result: a write could have returned in between.
	readAt time.Time
	// expires is when the TTL of the entry stored for it ends: zero when
	// the entry is not one Redis holds and serves (a fallback, a result not
	// stored, one past its TTL), which the near cache then must not keep.
	expires time.Time
	panic   *panicError
}

// Payloads of ready messages.
const (
	readyStored   = "1" // the entry is stored: re-check
	readyFailed   = "e" // the load failed, the lock is free: re-check, then try it
	readyUncached = "x" // the result was not stored (too large): query yourself
)

// Do returns the query's entry: from this instance's flight for the key,
// from Redis, or from the database through the cluster-wide lock. The
// caller's ctx only bounds the caller's own wait; the flight goes on for
// the others. A panic in Load reaches every caller of the flight, each
// re-panicking with the value and the stack where it happened. Call it
// between Enter and Exit.
func (e *Engine) Do(ctx context.Context, q Request) (*rowcodec.Entry, error) {
	return e.DoInfo(ctx, q, nil)
}

// DoInfo is Do that also fills info, when it is not nil, with how the
// cache answered (observe.Outcome), how long the call waited and how long
// its flight's query took. An unobserved call (info nil) costs what Do
// always did: its flight reads no extra clock and allocates nothing more.
// A call that gives up on its ctx reports what its flight was doing (Load
// or Fallback while the query ran), and Wait otherwise.
func (e *Engine) DoInfo(ctx context.Context, q Request, info *Info) (*rowcodec.Entry, error) {
	if err := q.check(); err != nil {
		return nil, err
	}
	var snap localSnap
	keep := false // the result may go to the near cache
	if q.Local > 0 && e.local != nil {
		if ent := e.local.get(q.Hash, q.Local); ent != nil {
			if info != nil {
				info.Outcome = observe.LocalHit
			}
			return ent, nil
		}
		// Before the read: an invalidation from now on ends the item.
		snap, keep = e.local.snapshot(q.Tables)
	}
	var fi *flightInfo // what the flight this caller starts tells it
	if info != nil {
		fi = new(flightInfo)
	}
	req := request{keys: newKeys(e.cfg.Prefix, q.Hash), tables: q.Tables, ttl: q.TTL, load: q.Load,
		staleFor: q.StaleFor, refreshable: q.Refreshable, same: q.Same, copy: e.copyOf(q.Hash)}
	if !q.Refreshable {
		// Served past its TTL only while a refresh replaces it: a query a
		// refresh cannot run again loads at its TTL, and stores its entry
		// for no longer, as without StaleFor.
		req.staleFor = 0
	}
	if fi != nil {
		// Through the context, which the flight has anyway: a field of
		// request would grow the closure every flight allocates.
		ctx = context.WithValue(ctx, flightInfoKey{}, fi)
	}
	res, err := e.await(ctx, req, info, fi)
	if err != nil {
		return nil, err
	}
	if keep && !res.expires.IsZero() {
		e.local.set(q.Hash, res, snap, q.Local)
	}
	return res.entry, nil
}

// await returns the result of the key's flight in this instance, which
// the caller starts or joins, read after the caller came. The caller's ctx
// only bounds its own wait.
func (e *Engine) await(ctx context.Context, req request, info *Info, fi *flightInfo) (*flightResult, error) {
	start := time.Now()
	begun := start // when the caller took the flight that answers it
	key := req.flightKey()
	for {
		var started atomic.Bool // set when this caller's function is the flight
		flight := func() (any, error) {
			started.Store(true)
			return e.fly(ctx, req) // never panics: fly returns panics as results
		}
		var r singleflight.Result
		if ctx.Done() == nil {
			// The caller cannot give up, so it may as well wait on its own
			// goroutine: Do spares the hand-off to a new one.
			r.Val, r.Err, r.Shared = e.group.Do(key, flight)
		} else {
			select {
			case <-ctx.Done():
				info.gaveUp(fi, started.Load(), start)
				return nil, ctx.Err()
			case r = <-e.group.DoChan(key, flight):
			}
		}
		res, _ := r.Val.(*flightResult)
		if res != nil && res.panic != nil {
			panic(res.panic)
		}
		if errors.Is(r.Err, errArgsChanged) {
			if !started.Load() {
				// Another caller's arguments changed: take a flight
				// with this caller's own.
				begun = fi.now()
				continue
			}
			// This caller's own changed while it waited (by another
			// goroutine of its, or a Value with a result of its own each
			// time): its query runs as it stands, uncached.
			return e.uncached(ctx, req, info, start, begun)
		}
		if r.Err != nil {
			info.answered(fi, started.Load(), start, begun)
			return nil, r.Err
		}
		// A result read before this caller arrived may predate a write that
		// returned before the call: take the next flight instead. The next one
		// starts after this caller, so this repeats at most once.
		if res.readAt.Before(start) {
			begun = fi.now()
			continue
		}
		if !started.Load() {
			e.stats.Shared.Add(1)
		}
		info.answered(fi, started.Load(), start, begun)
		return res, nil
	}
}

// uncached answers a caller whose own flight found its arguments changed
// (errArgsChanged): it runs the query once more, with the arguments as they
// are now, and keeps the rows from the Redis entry and the near cache.
func (e *Engine) uncached(ctx context.Context, req request, info *Info, start, begun time.Time) (*flightResult, error) {
	e.stats.Uncached.Add(1)
	e.stats.Loads.Add(1)
	req.same = nil
	readAt := time.Now()
	ent, err := e.runQuery(ctx, req) // on the caller's goroutine
	if info != nil {
		*info = Info{Outcome: observe.Bypass, Wait: begun.Sub(start), Load: time.Since(readAt)}
	}
	if err != nil {
		return nil, err
	}
	return &flightResult{entry: ent, readAt: readAt}, nil
}

// fly is one flight. It turns a panic into a result, so the singleflight
// entry is always removed and each caller re-panics on its own goroutine.
//
// A flight looks the key up, then either answers (a hit), loads it under
// the cluster-wide lock, or waits: for the lock holder's "ready", or, while
// a write to one of its tables is committing, for that write's bump. Each
// wake-up looks again, so whatever it waited for, it ends in one of the
// same three ways.
func (e *Engine) fly(callerCtx context.Context, req request) (res *flightResult, err error) {
	defer func() {
		if v := recover(); v != nil {
			res, err = &flightResult{panic: &panicError{value: v, stack: debug.Stack()}}, nil
		}
	}()
	// Waiting is bounded by MaxWait, each Redis call by RedisTimeout and
	// the query by LoadTimeout (runQuery), none by a caller.
	ctx := callerCtx
	if _, ok := ctx.Deadline(); ok || ctx.Done() != nil {
		ctx = context.WithoutCancel(ctx)
	}
	// The caller that started this flight may have gone; Close must still
	// wait for the flight. TryRLock fails only while Close is waiting.
	if !e.gate.TryRLock() {
		return e.fallback(ctx, req)
	}
	defer e.gate.RUnlock()
	switch {
	case e.closing.Load():
		return e.fallback(ctx, req)
	case e.dirty.any(req.tables):
		// A write to one of the tables has not reached Redis: no entry can
		// be trusted until it does.
		return e.withoutRedis(ctx, req, errInvalidationPending)
	}
	ws := new(waits)
	defer ws.stop()
	for missed := false; ; missed = true {
		res, f, err := e.look(ctx, req, ws)
		switch {
		case err != nil:
			return e.withoutRedis(ctx, req, err)
		case res != nil:
			flightInfoOf(callerCtx).found() // not ctx: its Value would box it
			e.refreshAhead(req, f)
			return res, nil
		case !missed:
			e.stats.Misses.Add(1)
		}
		if res, done, err := e.miss(ctx, req, ws, f); done {
			return res, err
		}
	}
}

// look is hit, tried again while Redis may be failing over (outlast).
func (e *Engine) look(ctx context.Context, req request, ws *waits) (*flightResult, found, error) {
	for {
		tried := time.Now()
		if ws.until.IsZero() {
			ws.until = tried.Add(e.cfg.MaxWait) // the flight's start
		}
		res, f, err := e.hit(ctx, req, tried)
		if err == nil {
			ws.answered()
			return res, f, nil
		}
		if !ws.outlast(e, err, tried) {
			return res, f, err
		}
	}
}

// hit looks the key up once, at readAt, and, when it finds a current
// entry, returns it as the flight's result. Otherwise f tells why there is
// none.
func (e *Engine) hit(ctx context.Context, req request, readAt time.Time) (res *flightResult, f found, err error) {
	if f, err = e.lookup(ctx, req); err != nil || f.entry == nil {
		return nil, f, err
	}
	usable, stale := e.usable(req, f)
	if !usable {
		f.entry = nil // past its TTL, longer than this query accepts
		return nil, f, nil
	}
	if stale {
		f.stale = true
		e.stats.StaleServes.Add(1)
	}
	e.stats.Hits.Add(1)
	res = &flightResult{entry: f.entry, readAt: readAt}
	if !stale {
		res.expires = f.ttlEnds(e.refreshWindow(req, f.meta.load))
	}
	return res, f, nil
}

// miss acts on a look that found no entry: it loads the key under the
// lock, or waits for what keeps it from loading. It reports done, with the
// flight's answer, or that the flight must look again.
func (e *Engine) miss(ctx context.Context, req request, ws *waits, f found) (*flightResult, bool, error) {
	switch {
	case f.held:
		// A write whose commit cannot be followed: its Announcement
		// stands until its deadline, too long to wait for.
		res, err := e.fallback(ctx, req)
		return res, true, err
	case len(f.writing) > 0:
		// Wait for the writes' bumps, which wake this flight, then
		// load through the lock like any miss.
		for _, t := range f.writing {
			ws.on(e, e.bumpChannel(t))
		}
	default:
		e.at(SeamMissed, req.keys)
		tried := time.Now()
		res, err := e.load(ctx, req, ws.polled)
		if failed := (lockFailed{}); errors.As(err, &failed) {
			if ws.outlast(e, failed.err, tried) {
				return nil, false, nil // look again
			}
			res, err = e.withoutRedis(ctx, req, failed.err)
			return res, true, err
		}
		if !errors.Is(err, errLockTaken) && !errors.Is(err, errWriting) {
			return res, true, err
		}
		ws.answered()
		// Another instance is loading: wait for its "ready". (Or a write
		// began before the load could stamp it: the next look finds it
		// and waits for its bump.)
		ws.on(e, req.keys.ready)
	}
	return e.wait(ctx, req, ws, len(f.writing) > 0)
}

// ttlEnds returns when the TTL of the entry f found ends (before Redis
// drops it when it is kept past its TTL for StaleFor), less window. Zero
// when that is past or unknown.
func (f found) ttlEnds(window time.Duration) time.Time {
	if left := f.left - f.meta.stale - window; left > 0 {
		return time.Now().Add(left)
	}
	return time.Time{}
}

// refreshWindow is the last part of an entry's life in which a hit may
// refresh it ahead of expiry (refreshAhead): β × how long its query took,
// for a refreshable request; 0 otherwise. The near cache keeps an entry
// only until the window begins, so that a hot key served from it is
// looked up in Redis, and refreshed, before it expires.
func (e *Engine) refreshWindow(req request, load time.Duration) time.Duration {
	if !req.refreshable || e.cfg.RefreshBeta <= 0 || load <= 0 {
		return 0
	}
	return time.Duration(min(e.cfg.RefreshBeta*float64(load), float64(MaxTTL)))
}

// usable reports whether the current entry f found may answer req, and
// whether it is past its TTL (kept for StaleFor): such an entry answers
// only a query that accepts at least that much staleness.
func (e *Engine) usable(req request, f found) (ok, stale bool) {
	past := f.meta.stale - f.left // how long past its TTL
	if f.meta.stale <= 0 || past <= 0 {
		return true, false
	}
	return past <= req.staleFor, true
}
