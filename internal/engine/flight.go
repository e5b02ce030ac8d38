package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/go-redsync/redsync/v4"
	"github.com/gormflight/gormflight/internal/rowcodec"
	"golang.org/x/sync/singleflight"
)

// A Request is one cacheable query as the engine sees it.
type Request struct {
	// Hash identifies the query and everything its rows depend on
	// (internal/cachekey); the Redis keys are made from it.
	Hash string
	// Tables are the generation names of every table the rows depend on,
	// sorted and without duplicates.
	Tables []string
	// TTL is the entry's lifetime, within [MinTTL, MaxTTL].
	TTL time.Duration
	// Load runs the query on the database. Its context is the flight's own,
	// detached from every caller's cancellation and bounded by LoadTimeout.
	Load func(ctx context.Context) (*rowcodec.Entry, error)
}

// MinTTL and MaxTTL bound a Request's TTL: Redis keeps expiries in whole
// milliseconds and refuses an expiry of 0.
const (
	MinTTL = time.Millisecond
	MaxTTL = 100 * 365 * 24 * time.Hour
)

// request is a Request with its Redis names.
type request struct {
	keys   keys
	tables []string
	ttl    time.Duration
	load   func(ctx context.Context) (*rowcodec.Entry, error)
}

// flightResult is what one flight hands to all of its callers.
type flightResult struct {
	entry *rowcodec.Entry
	// readAt is when the flight started the read (of Redis, or of the
	// database) that produced entry. A caller that arrived after it may not
	// use the result: a write could have returned in between.
	readAt time.Time
	panic  *panicError
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
	req := request{keys: newKeys(e.cfg.Prefix, q.Hash), tables: q.Tables, ttl: q.TTL, load: q.Load}
	start := time.Now()
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
			r.Val, r.Err, r.Shared = e.group.Do(req.keys.entry, flight)
		} else {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case r = <-e.group.DoChan(req.keys.entry, flight):
			}
		}
		res, _ := r.Val.(*flightResult)
		if res != nil && res.panic != nil {
			panic(res.panic)
		}
		if r.Err != nil {
			return nil, r.Err
		}
		// A result read before this caller arrived may predate a write that
		// returned before the call: take the next flight instead. The next one
		// starts after this caller, so this repeats at most once.
		if res.readAt.Before(start) {
			continue
		}
		if !started.Load() {
			e.stats.Shared.Add(1)
		}
		return res.entry, nil
	}
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
	ctx := context.WithoutCancel(callerCtx)
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
	ws := e.newWaits()
	defer ws.stop()
	for missed := false; ; missed = true {
		res, f, err := e.hit(ctx, req)
		switch {
		case err != nil:
			return e.withoutRedis(ctx, req, err)
		case res != nil:
			return res, nil
		case !missed:
			e.stats.Misses.Add(1)
		}
		if res, done, err := e.miss(ctx, req, ws, f); done {
			return res, err
		}
	}
}

// hit looks the key up once and, when it finds a current entry, returns it
// as the flight's result. Otherwise f tells why there is none.
func (e *Engine) hit(ctx context.Context, req request) (res *flightResult, f found, err error) {
	readAt := time.Now()
	if f, err = e.lookup(ctx, req); err != nil || f.entry == nil {
		return nil, f, err
	}
	e.stats.Hits.Add(1)
	return &flightResult{entry: f.entry, readAt: readAt}, f, nil
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
			ws.w.add(e.bumpChannel(t))
		}
	default:
		res, err := e.load(ctx, req, ws.polled)
		if !errors.Is(err, errLockTaken) && !errors.Is(err, errWriting) {
			return res, true, err
		}
		// Another instance is loading: wait for its "ready". (Or a write
		// began before the load could stamp it: the next look finds it
		// and waits for its bump.)
		ws.w.add(req.keys.ready)
	}
	return e.wait(ctx, req, ws, len(f.writing) > 0)
}

// waits is what a flight waits with: its subscriptions and its timers.
type waits struct {
	w       *waiter
	poll    *time.Timer // the fallback re-check, for lost messages and dead holders
	maxWait *time.Timer // Config.MaxWait, over the whole flight
	// writes bounds the wait for writes in progress: a write that has not
	// ended within LockExpiry of the flight meeting it (a writer that died,
	// or whose bump cannot reach Redis) sends the flight to the database,
	// as a dead lock holder's lock would expire. nil while no write is met.
	writes  *time.Timer
	polled  bool // the last wake was the fallback timer's, not a message
	counted bool // the flight was counted in Stats.Waits
}

func (e *Engine) newWaits() *waits {
	return &waits{
		w:       e.hub.newWaiter(),
		poll:    time.NewTimer(e.cfg.LockExpiry / 2),
		maxWait: time.NewTimer(e.cfg.MaxWait),
	}
}

func (ws *waits) stop() {
	ws.w.stop()
	ws.poll.Stop()
	ws.maxWait.Stop()
	if ws.writes != nil {
		ws.writes.Stop()
	}
}

// wait blocks the flight until it should look again: a message or
// subscription confirmation on a channel it waits on, or the fallback
// timer. writing tells whether it waits for writes in progress. It
// reports done, with the flight's answer, when the flight must stop
// waiting: MaxWait or the writes' bound passed, the plugin closes, or the
// holder did not store its result.
func (e *Engine) wait(ctx context.Context, req request, ws *waits, writing bool) (*flightResult, bool, error) {
	switch {
	case writing && ws.writes == nil:
		ws.writes = time.NewTimer(e.cfg.LockExpiry)
	case !writing && ws.writes != nil:
		ws.writes.Stop() // the writes it met have ended
		ws.writes = nil
	}
	if !ws.counted {
		ws.counted = true
		e.stats.Waits.Add(1)
	}
	// Subscribed before this wait: the subscription's confirmation wakes
	// it for a re-check, so nothing published since the look is missed.
	ws.poll.Reset(e.cfg.LockExpiry / 2)
	select {
	case <-ws.w.wake:
		ws.polled = false
	case <-ws.poll.C:
		// No message: a holder or a writer may be dead (its lock or
		// Announcement then expires) or a message was lost. Look again.
		ws.polled = true
	case <-timerC(ws.writes):
		e.Warnf(LogWait, "gormflight: a write to %v has not ended within %v; reading the database", req.tables, e.cfg.LockExpiry)
		res, err := e.fallback(ctx, req)
		return res, true, err
	case <-ws.maxWait.C:
		e.stats.WaitTimeouts.Add(1)
		e.Warnf(LogWait, "gormflight: waited %v for another instance's result or a write's end", e.cfg.MaxWait)
		if e.cfg.FailOnWaitTimeout {
			return nil, true, ErrWaitTimeout
		}
		res, err := e.fallback(ctx, req)
		return res, true, err
	case <-e.done:
		res, err := e.fallback(ctx, req)
		return res, true, err
	}
	if ws.w.isUncached() {
		res, err := e.fallback(ctx, req)
		return res, true, err
	}
	return nil, false, nil
}

// timerC is t's channel, or nil (never ready) for no timer.
func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

// load tries the key's lock once and, if it wins, runs the fill. It fails
// with errLockTaken when another instance holds the lock, and with
// errWriting when a write to one of the tables began before the fill could
// stamp its query: the flight then waits for it.
func (e *Engine) load(ctx context.Context, req request, polled bool) (*flightResult, error) {
	m, err := e.tryLock(ctx, req.keys)
	if errors.Is(err, errLockTaken) {
		return nil, err
	}
	if err != nil {
		return e.withoutRedis(ctx, req, err)
	}
	// The holder before us may have stored the entry and unlocked between
	// our last look and our lock: look again.
	if res, _, err := e.hit(ctx, req); err == nil && res != nil {
		e.unlock(m)
		return res, nil
	}
	if polled {
		e.stats.LockTakeovers.Add(1)
		e.Warnf(LogTakeover, "gormflight: took over a lock whose holder stopped extending it")
	}
	return e.fill(ctx, req, m)
}

// fill runs the query as the lock holder, stores the result and wakes the
// waiters. Errors are never stored. Whatever happens, even a panic in the
// query, the lock is released and the waiters are woken.
func (e *Engine) fill(ctx context.Context, req request, m *redsync.Mutex) (res *flightResult, err error) {
	stop := e.keepLock(m)
	payload := readyFailed // until there is a result
	defer func() {
		stop()
		e.unlock(m)
		e.publish(req.keys, payload)
	}()
	// The stamp is read before the query: a write that commits while the
	// query runs bumps past it, so the entry is stale from that bump on.
	stamp, err := e.readStamp(ctx, req.tables)
	switch {
	case errors.Is(err, errWriting):
		// Waiters re-check ("e"), find the write and wait for its bump,
		// as this flight does.
		return nil, err
	case errors.Is(err, errHeld):
		payload = readyUncached // waiters: query yourselves, as we do
		return e.fallback(ctx, req)
	case err != nil:
		return e.withoutRedis(ctx, req, err)
	}
	e.at(SeamStamped, req.keys)
	e.stats.Loads.Add(1)
	readAt := time.Now()
	ent, err := e.runQuery(ctx, req)
	if err != nil {
		return nil, err
	}
	stop()
	e.at(SeamLoaded, req.keys)
	payload = readyStored
	if !e.store(ctx, req, stamp, ent) {
		payload = readyUncached
	}
	return &flightResult{entry: ent, readAt: readAt}, nil
}

// runQuery runs the query on the database, bounded by LoadTimeout from
// now: time spent waiting before does not shorten it.
func (e *Engine) runQuery(ctx context.Context, req request) (*rowcodec.Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.LoadTimeout)
	defer cancel()
	return req.load(ctx)
}

// fallback runs the query without the cluster-wide lock and without storing
// its result: Redis failed, the wait ran out, or the plugin is closing. The
// in-process flight still deduplicates.
func (e *Engine) fallback(ctx context.Context, req request) (*flightResult, error) {
	e.stats.Fallbacks.Add(1)
	e.stats.Loads.Add(1)
	readAt := time.Now()
	ent, err := e.runQuery(ctx, req)
	if err != nil {
		return nil, err
	}
	return &flightResult{entry: ent, readAt: readAt}, nil
}

// errInvalidationPending is the Redis failure behind a flight over a table
// whose invalidation has not reached Redis yet.
var errInvalidationPending = errors.New("gormflight: a write's invalidation has not reached Redis yet")

// withoutRedis answers a flight whose Redis operation failed: from the
// database (fail open, the default), or with ErrRedisUnavailable when
// Config.FailClosed is set.
func (e *Engine) withoutRedis(ctx context.Context, req request, err error) (*flightResult, error) {
	if e.cfg.FailClosed {
		return nil, redisUnavailable(err)
	}
	return e.fallback(ctx, req)
}

// store writes the entry with its TTL. It reports false when the entry was
// not stored: too large, not encodable, or refused by Redis. Waiters are
// then told to query themselves, as they would one by one anyway.
func (e *Engine) store(ctx context.Context, req request, stamp string, ent *rowcodec.Entry) bool {
	if ent.Local {
		e.stats.Uncached.Add(1)
		return false
	}
	data, err := EncodeStored(stamp, ent, e.cfg.MaxEntrySize)
	if err != nil {
		e.stats.Uncached.Add(1)
		return false
	}
	return e.storeStamped(ctx, req.keys, stamp, data, e.jitter(req.ttl)) == nil
}

func (e *Engine) publish(k keys, payload string) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RedisTimeout)
	defer cancel()
	_ = e.guard(func() error { return e.rdb.Publish(ctx, k.ready, payload).Err() })
}

// jitter spreads the expiry of entries filled together, so they do not all
// expire in the same instant. The result stays within [ttl, maxJittered],
// whatever TTLJitter is, so it never overflows.
func (e *Engine) jitter(ttl time.Duration) time.Duration {
	if e.cfg.TTLJitter <= 0 {
		return ttl
	}
	extra := rand.Float64() * e.cfg.TTLJitter * float64(ttl)
	if extra >= float64(maxJittered-ttl) {
		return maxJittered
	}
	return ttl + time.Duration(extra)
}

// maxJittered bounds a stored entry's lifetime: far below the largest
// millisecond expiry Redis accepts.
const maxJittered = 2 * MaxTTL
