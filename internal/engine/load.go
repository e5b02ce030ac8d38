package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/go-redsync/redsync/v4"
	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/gormflight/gormflight/observe"
	"github.com/redis/go-redis/v9"
)

// load tries the key's lock once and, if it wins, runs the fill. It fails
// with errLockTaken when another instance holds the lock, with errWriting
// when a write to one of the tables began before the fill could stamp its
// query (the flight then waits for it), and with lockFailed when Redis
// failed.
//
// A loader costs four round trips: the flight's look, the lock (which also
// looks again and reads the stamp), the store (which also wakes the
// waiters) and the unlock.
func (e *Engine) load(ctx context.Context, req request, polled bool) (*flightResult, error) {
	readAt, start := time.Now(), e.now()
	var look *lookupCmds
	var stamp []*redis.Cmd
	m, err := e.tryLock(ctx, req.keys, func(ctx context.Context, pipe redis.Pipeliner) {
		// The holder before us may have stored the entry and unlocked
		// between our last look and our lock: look again.
		look = e.queueLookup(ctx, pipe, req, "", false) // per table: a write in progress is seen as such
		stamp = e.queueStamp(ctx, pipe, req)
	})
	if errors.Is(err, errLockTaken) {
		return nil, err
	}
	if err != nil {
		return nil, lockFailed{err}
	}
	if f, err := look.result(e, req); err == nil && f.entry != nil {
		if usable, stale := e.usable(req, f); usable {
			e.unlock(m)
			e.stats.Hits.Add(1)
			flightInfoOf(ctx).found()
			res := &flightResult{entry: f.entry, readAt: readAt}
			if !stale {
				res.expires = f.ttlEnds(e.refreshWindow(req, f.meta.load))
			}
			return res, nil
		}
	}
	if polled {
		e.stats.LockTakeovers.Add(1)
		e.Warnf(LogTakeover, "gormflight: took over a lock whose holder stopped extending it")
	}
	return e.fill(ctx, req, m, stamp, start)
}

// lockFailed is the Redis failure that kept load from trying the lock.
type lockFailed struct{ err error }

func (l lockFailed) Error() string { return l.err.Error() }
func (l lockFailed) Unwrap() error { return l.err }

// fill runs the query as the lock holder, stores the result and wakes the
// waiters. Errors are never stored. Whatever happens, even a panic in the
// query, the lock is released and the waiters are woken.
//
// The stamp was read before the query (stampCmds, in the lock's round
// trip): a write that commits while the query runs bumps past it, so the
// entry is stale from that bump on. start is when the load began: the
// stored value records how long it took, for refresh-ahead.
func (e *Engine) fill(ctx context.Context, req request, m *redsync.Mutex, stampCmds []*redis.Cmd, start time.Time) (res *flightResult, err error) {
	stop := e.keepLock(m)
	payload := readyFailed // until there is a result
	woken := false         // the store's round trip carried the ready message
	defer func() {
		stop()
		// Unlocked first: a waiter told to try the lock must find it free.
		e.unlock(m)
		if !woken {
			e.publish(req.keys, payload)
		}
	}()
	stamp, err := stampOf(stampCmds)
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
	if req.argsChanged() {
		return nil, errArgsChanged
	}
	e.stats.Loads.Add(1)
	fi := flightInfoOf(ctx)
	fi.loading(observe.Load)
	readAt := time.Now()
	ent, err := e.runQuery(ctx, req)
	fi.loaded(readAt)
	if err != nil {
		return nil, err
	}
	stop()
	e.at(SeamLoaded, req.keys)
	storedAt, took := time.Now(), e.now().Sub(start)
	payload, woken = e.store(ctx, req, stamp, took, ent)
	res = &flightResult{entry: ent, readAt: readAt}
	if left := req.ttl - e.refreshWindow(req, took); payload == readyStored && woken && left > 0 {
		res.expires = storedAt.Add(left) // the TTL before its jitter: the earliest
	}
	return res, nil
}

// runQuery runs the query on the database, bounded by LoadTimeout from
// now: time spent waiting before does not shorten it.
func (e *Engine) runQuery(ctx context.Context, req request) (*rowcodec.Entry, error) {
	if flightInfoOf(ctx) != nil {
		// The query is not the flight: an engine it may call must not
		// report to the flight's caller.
		ctx = context.WithValue(ctx, flightInfoKey{}, (*flightInfo)(nil))
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.LoadTimeout)
	defer cancel()
	ent, err := req.load(ctx)
	if err == nil && req.argsChanged() {
		// Changed while the query ran: the driver may have read either.
		return nil, errArgsChanged
	}
	return ent, err
}

// argsChanged reports whether req's arguments no longer give its hash
// (Request.Same). Fills and fallbacks check it before their query, which
// then need not run, and runQuery after it.
func (r request) argsChanged() bool { return r.same != nil && !r.same() }

// errArgsChanged is what a load returns when its arguments no longer give
// its request's hash (Request.Same): no caller gets it, and nothing stores
// its rows.
var errArgsChanged = errors.New("gormflight: the query's arguments changed after its key was computed")

// fallback runs the query without the cluster-wide lock and without storing
// its result: Redis failed, the wait ran out, or the plugin is closing. The
// in-process flight still deduplicates.
func (e *Engine) fallback(ctx context.Context, req request) (*flightResult, error) {
	if req.argsChanged() {
		return nil, errArgsChanged
	}
	e.stats.Fallbacks.Add(1)
	e.stats.Loads.Add(1)
	fi := flightInfoOf(ctx)
	fi.loading(observe.Fallback)
	readAt := time.Now()
	ent, err := e.runQuery(ctx, req)
	fi.loaded(readAt)
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
		flightInfoOf(ctx).loading(observe.Fallback) // no query: the call fails instead
		return nil, redisUnavailable(err)
	}
	return e.fallback(ctx, req)
}

// store writes the entry with its TTL unless the entry there was computed
// under newer generations (lua/fill.lua), and in the same round trip tells
// the waiters: "stored", or "query yourselves" when the entry cannot be
// stored (too large, not encodable). Redis runs the pipeline in order, so a
// woken waiter finds the entry.
//
// It returns the payload and whether it went out. When it must go again
// after the unlock, sent is false: Redis failed ("query yourselves", or
// "failed" while it may be failing over), or a write bumped a table while
// the query ran, so the stored entry is already stale ("failed": look
// again, then take the lock, which a waiter that looked at the stale entry
// found held and will now find free).
func (e *Engine) store(ctx context.Context, req request, stamp string, load time.Duration, ent *rowcodec.Entry) (payload string, sent bool) {
	var data []byte
	payload = readyUncached
	if !ent.Local {
		if d, err := EncodeStored(stamp, load, req.staleFor, ent, e.cfg.MaxEntrySize); err == nil {
			data, payload = d, readyStored
		}
	}
	if payload == readyUncached {
		e.stats.Uncached.Add(1)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	var look *lookupCmds
	err := e.guard(func() error {
		pipe := e.rdb.Pipeline()
		if payload == readyStored {
			fillScript.Eval(ctx, pipe, []string{req.keys.entry}, stamp, data, (e.jitter(req.ttl) + req.staleFor).Milliseconds())
		}
		e.queuePublish(ctx, pipe, req.keys.ready, payload)
		if payload == readyStored {
			look = e.queueGenerations(ctx, pipe, req)
		}
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil {
		e.crossSlot(err)
		if payload == readyStored && e.failingOver(err) {
			// Waiters look again, and wait for the new master (outlast).
			return readyFailed, false
		}
		return readyUncached, false
	}
	if look != nil && !look.current(stamp) {
		return readyFailed, false
	}
	return payload, true
}

func (e *Engine) publish(k keys, payload string) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RedisTimeout)
	defer cancel()
	_ = e.guard(func() error {
		pipe := e.rdb.Pipeline()
		e.queuePublish(ctx, pipe, k.ready, payload)
		_, err := pipe.Exec(ctx)
		return err
	})
}

// queuePublish queues a ready message: sharded on Redis Cluster, where the
// hub listens for it with SSUBSCRIBE (hub.go).
func (e *Engine) queuePublish(ctx context.Context, pipe redis.Pipeliner, channel, payload string) {
	if e.hub.sharded(channel) {
		pipe.SPublish(ctx, channel, payload)
		return
	}
	pipe.Publish(ctx, channel, payload)
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
