// Package engine is the cluster-wide flight: it answers a cacheable query
// from this instance's flight for its key, from Redis, or from the database
// through a Redis lock, so that a cold or expired key costs the database
// one query across every instance.
//
// The engine knows a query only as a key hash, the tables it reads, a TTL
// and a load function returning a rowcodec.Entry. It knows nothing of GORM
// or of SQL: an adapter (the gormflight plugin) analyses statements, builds
// requests, and tells the engine which tables a write changed.
//
// Its parts, each in its own file:
//   - flight.go: Do, one flight per key and instance (x/sync singleflight),
//     and what a flight does: look up, then wait (wait.go) or load under
//     the lock and store (load.go);
//   - stamps.go: the read side of table generations (an entry is served only
//     when the generations it was stamped with are current);
//   - invalidation.go, retry.go: the write side (announce, bump, drop) and
//     the retrier of bumps that did not reach Redis;
//   - lock.go (redsync), hub.go (ready messages), breaker.go (gobreaker),
//     warm.go (connections opened outside operations' deadlines), memo.go
//     (decoded entries kept in memory), local.go (the near cache, served
//     with no round trip, and its invalidation listener), restart.go (a
//     server that restarted or failed over: found by every lookup, and its
//     generations dropped), keys.go (Redis names), scripts.go,
//     config.go, errors.go, log.go, stats.go;
//   - lua/: the scripts, each an atomic step across instances.
package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/sync/singleflight"
)

// An Engine serves cacheable queries. It is safe for concurrent use. Create
// it with New and stop it with Close. A zero Engine admits no caller (Enter
// reports false), Close does nothing, and Invalidate fails with
// ErrInvalidRequest.
type Engine struct {
	rdb redis.UniversalClient
	cfg Config
	// compact: the client talks to one Redis node, and a lookup reads all
	// its tables' keys in two commands (stamps.go). A node in cluster mode
	// refuses them (CROSSSLOT), even when it serves every slot: the first
	// refusal turns compact off for good.
	compact atomic.Bool
	stats   *Counters
	group   singleflight.Group
	locks   *redsync.Redsync
	hub     *hub
	// tableKeys: table name -> []tableKeys, every copy (copies.go).
	tableKeys  sync.Map
	keptTables atomic.Int64
	memo       *memo
	// mark proves a server had the prefix recovered since it started, and
	// recoveries shares a server's recovery among callers (restart.go).
	mark       *redis.Script
	markSrc    string
	markBySha  atomic.Bool // an ACL refused SCRIPT EXISTS
	recoveries singleflight.Group
	local      *local // the near cache; nil without Config.LocalSize
	// done is closed by Close: waiting flights stop waiting and query the
	// database themselves.
	done chan struct{}
	// gate is held shared by callers (from Enter to Exit) and by flights,
	// and exclusively by Close, which so waits for all of them.
	gate    sync.RWMutex
	closing atomic.Bool

	dirty dirtySet
	// replicas: the replicas each Redis master was seen with (replicas.go).
	replicas replicaWatch
	// down: an operation that outlasts failovers failed for all of
	// FailoverWait, and no Redis operation has succeeded since
	// (failover.go).
	down atomic.Bool
	// moved: the client reaches another server (moved.go); followed is
	// closed when followServer returns.
	moved    chan struct{}
	followed chan struct{}
	retry    chan struct{} // asks retryDirty to run now
	retried  chan struct{} // closed when retryDirty returns
	warm     *warmer       // opens connections outside operations' deadlines (warm.go)
	log      logger
	breaker  *gobreaker.CircuitBreaker[struct{}]

	// Refreshes ahead of expiry (refresh.go): the keys being refreshed, a
	// slot per refresh running when MaxRefreshes caps them, the context
	// Close cancels, and the refreshes Close waits for.
	refreshing   sync.Map
	refreshSlots chan struct{}
	bgCtx        context.Context
	bgCancel     context.CancelFunc
	refreshes    sync.WaitGroup

	// seam, set only by tests (SetSeam), is called at named points of a
	// fill so a test can hold a flight there and force an interleaving
	// without sleeps.
	seam func(point string, entryKey string)
	// now is time.Now; tests set it to measure loads deterministically.
	now func() time.Time
}

// New returns an engine for cfg, or an error wrapping ErrInvalidConfig for
// a Config it cannot use (Config says what it needs). It starts three
// goroutines, the pub/sub dispatcher, the retrier of failed invalidations
// and the connection warmer, and the memo's sweeper runs on a timer; Close
// stops them all, and cancels and waits for the refreshes ahead of expiry
// hits start (refresh.go).
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.defaultDerived()
	if err := checkKeyCopies(cfg); err != nil {
		return nil, err
	}
	stats := cfg.Stats
	if stats == nil {
		stats = new(Counters)
	}
	e := &Engine{
		rdb:     cfg.Redis,
		cfg:     cfg,
		stats:   stats,
		locks:   redsync.New(lockPool{goredis.NewPool(cfg.Redis)}),
		hub:     newHub(cfg.Redis, cfg.RedisTimeout, stats),
		memo:    newMemo(cfg.MemoSize),
		markSrc: markSource(cfg.Prefix),
		done:    make(chan struct{}),
		retry:   make(chan struct{}, 1),
		retried: make(chan struct{}),
		log:     logger{f: cfg.Log},
	}
	e.breaker = newBreaker(cfg, stats, &e.log)
	e.mark = redis.NewScript(e.markSrc)
	_, single := cfg.Redis.(*redis.Client)
	e.compact.Store(single)
	e.local = newLocal(cfg, stats, &e.log)
	e.now = time.Now
	e.bgCtx, e.bgCancel = context.WithCancel(context.Background())
	if cfg.MaxRefreshes > 0 {
		e.refreshSlots = make(chan struct{}, cfg.MaxRefreshes)
	}
	e.warm = newWarmer(cfg, e.done)
	go e.retryDirty()
	go e.warm.run()
	e.followed = make(chan struct{})
	if e.moved = make(chan struct{}, 1); watchServer(e) {
		go e.followServer()
	} else {
		close(e.followed)
	}
	return e, nil
}

// Enter admits a caller; it reports false once the engine is closing, and
// then the caller must not use the engine. A caller that entered calls Exit.
// It never waits: only Close takes the gate exclusively, after it set
// closing, so a gate that cannot be had at once means the caller must go
// to the database (waiting behind Close would mean waiting for the slowest
// load in progress, whatever the caller's deadline).
func (e *Engine) Enter() bool {
	if e.done == nil || !e.gate.TryRLock() {
		return false
	}
	if e.closing.Load() {
		e.gate.RUnlock()
		return false
	}
	return true
}

// Exit ends what Enter admitted.
func (e *Engine) Exit() { e.gate.RUnlock() }

// Closing reports whether Close has begun.
func (e *Engine) Closing() bool { return e.closing.Load() }

// Close makes waiting flights give up, waits for every caller and flight to
// leave, stops the engine's goroutines and reports whether this call closed
// the engine; a second call reports false and does nothing.
func (e *Engine) Close() (bool, error) {
	if e.done == nil || !e.closing.CompareAndSwap(false, true) {
		return false, nil
	}
	close(e.done)
	// Wait for every caller and flight to leave. Those that come later see
	// closing and stay away from Redis.
	e.gate.Lock()
	e.gate.Unlock()
	// Refreshes are started inside flights: all have started by now.
	e.bgCancel()
	e.refreshes.Wait()
	<-e.retried
	<-e.warm.ended
	unwatchServer(e)
	<-e.followed
	e.memo.close()
	if e.local != nil {
		e.local.close()
	}
	return true, e.hub.close()
}

// Stats returns the engine's counters, which its adapter may add to.
func (e *Engine) Stats() *Counters { return e.stats }

// Points of a flight where tests can hold it (SetSeam).
const (
	SeamMissed  = "missed"  // the look found no entry, the lock not yet tried
	SeamStamped = "stamped" // generations read, query not yet run
	SeamLoaded  = "loaded"  // query done, entry not yet stored
)

// SetSeam makes every fill call f at each Seam point with its entry's Redis
// key. Tests use it to hold a fill at a point; set it before any query.
func (e *Engine) SetSeam(f func(point, entryKey string)) { e.seam = f }

func (e *Engine) at(point string, k keys) {
	if e.seam != nil {
		e.seam(point, k.entry)
	}
}

// Subscribed returns how many ready channels this instance listens on: one
// per flight that waits for another instance or a write.
func (e *Engine) Subscribed() int { return e.hub.subscribed() }

// BreakerState returns the state of the Redis circuit breaker.
func (e *Engine) BreakerState() gobreaker.State { return e.breaker.State() }

// Dirty reports whether one of tables has an invalidation that has not
// reached Redis yet: this instance reads such tables uncached.
func (e *Engine) Dirty(tables []string) bool { return e.dirty.any(tables) }
