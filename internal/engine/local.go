package engine

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"
)

// local is the near cache: the entries of queries that accept a bounded
// staleness (Request.Local), served from this instance's memory with no
// round trip.
//
// An item records a time no later than the start of the read that produced
// its entry (the snapshot's): the entry holds every write that returned
// before then, so serving it until then + maxStale misses writes for at
// most maxStale, whatever else fails. Invalidations usually end it much sooner:
//   - every bump publishes on its table's channel, and this instance listens
//     on all of them (one PSUBSCRIBE): a message for a table advances the
//     table's local version;
//   - a write through this instance advances the versions of its tables
//     itself, before and after its bump reaches Redis (Invalidate), so the
//     instance reads its own writes;
//   - an item carries the versions of its tables taken before its read
//     started, and is served only while they are unchanged.
//
// While the subscription is lost, nothing is served or stored: the
// listener's epoch is odd then, and every loss and every resubscription
// advances it, so an item stored under one subscription is never served
// under another (messages may have been lost in between).
//
// The items are held by otter, bounded in bytes (Config.LocalSize) with the
// weights the memo uses.
type local struct {
	cache *otter.Cache[string, *localItem]
	limit int
	stats *Counters
	log   *logger

	rdb     redis.UniversalClient
	pattern string // of every table's bump channel
	prefix  string // of a bump channel, before the table's name

	now func() time.Time // time.Now; tests move it

	// epoch is odd while this instance is not subscribed to bumps.
	epoch atomic.Uint64
	// versions: table name -> *atomic.Uint64, for the tables items were
	// read from (snapshot creates them; invalidations only advance those
	// that exist, so bumps of tables this instance never read take no
	// memory). Never deleted: an item holds its tables' counters.
	versions sync.Map

	// own holds the bumps this instance made, as table and generation, until
	// their messages arrive: Invalidate ended their tables' items itself.
	ownMu sync.Mutex
	own   map[string]struct{}

	start   sync.Once   // of the listener, on the first Local request
	started atomic.Bool // the listener was started: close waits for it
	mu      sync.Mutex
	ps      *redis.PubSub // the listener's, nil before it starts
	ctx     context.Context
	stop    context.CancelFunc
	done    chan struct{} // closed when the listener returns
}

// localItem is one entry of the near cache.
type localItem struct {
	entry  *rowcodec.Entry
	snap   localSnap
	ends   time.Time // its TTL's end, on l.now's clock
	weight uint32
	keep   time.Duration // in the cache from when it was set
}

// localSnap is what a read must find unchanged for its entry to be served
// locally: the listener's epoch and the versions of its tables, both taken
// before the read started, at.
type localSnap struct {
	at       time.Time
	epoch    uint64
	counters []*atomic.Uint64
	versions []uint64
}

// Health checks of the subscription: after localHealth without a message
// the listener pings, and one more localHealth without an answer counts as
// a lost connection. Reconnections back off up to localMaxBackoff.
const (
	localHealth     = time.Second
	localMaxBackoff = time.Second
)

func newLocal(cfg Config, stats *Counters, log *logger) *local {
	if cfg.LocalSize <= 0 {
		return nil
	}
	l := &local{
		limit:   cfg.LocalSize,
		stats:   stats,
		log:     log,
		rdb:     cfg.Redis,
		prefix:  cfg.Prefix + ":g:{",
		pattern: globEscape(cfg.Prefix+":g:{") + "*}:b",
		done:    make(chan struct{}),
		now:     time.Now,
	}
	l.epoch.Store(1) // not subscribed yet
	l.ctx, l.stop = context.WithCancel(context.Background())
	l.cache = otter.Must(&otter.Options[string, *localItem]{
		MaximumWeight: uint64(cfg.LocalSize),
		Weigher:       func(_ string, it *localItem) uint32 { return it.weight },
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *localItem]) time.Duration {
			return e.Value.keep
		}),
	})
	return l
}

// get returns the entry of key when an item may serve it with at most
// maxStale of staleness, and nil otherwise.
func (l *local) get(key string, maxStale time.Duration) *rowcodec.Entry {
	it, ok := l.cache.GetIfPresent(key)
	if !ok {
		return nil
	}
	if now := l.now(); it.snap.epoch != l.epoch.Load() || now.Sub(it.snap.at) > maxStale || !now.Before(it.ends) {
		return nil
	}
	for i, c := range it.snap.counters {
		if c.Load() != it.snap.versions[i] {
			l.cache.Invalidate(key)
			l.stats.LocalInvalidations.Add(1)
			return nil
		}
	}
	l.stats.LocalHits.Add(1)
	return it.entry
}

// snapshot takes what an item read from now on must find unchanged to be
// served. It reports false while the instance is not subscribed: nothing
// read then may be kept.
func (l *local) snapshot(tables []string) (localSnap, bool) {
	l.start.Do(func() {
		l.started.Store(true)
		go l.listen()
	})
	s := localSnap{at: l.now(), epoch: l.epoch.Load()}
	if s.epoch%2 == 1 {
		return localSnap{}, false
	}
	s.counters = make([]*atomic.Uint64, len(tables))
	s.versions = make([]uint64, len(tables))
	for i, t := range tables {
		s.counters[i] = l.counter(t)
		s.versions[i] = s.counters[i].Load()
	}
	return s, true
}

// set keeps res's entry for key, under snap, for at most maxStale and not
// past its TTL.
func (l *local) set(key string, res *flightResult, snap localSnap, maxStale time.Duration) {
	now, left := l.now(), time.Until(res.expires)
	keep := min(maxStale-now.Sub(snap.at), left)
	if keep <= 0 {
		return
	}
	w := memoWeight(key, "", res.entry) + len(snap.counters)*16
	if w > l.limit/4 {
		return // one entry must not evict a quarter of the others
	}
	l.cache.Set(key, &localItem{entry: res.entry, snap: snap, ends: now.Add(left), weight: uint32(w), keep: keep})
}

// invalidate ends the items that depend on tables. A table without a
// version has no item, and a read that creates one from now on starts
// after the caller's cause: the bump it was told of, or the write that
// invalidates again once its bump is done (Invalidate).
func (l *local) invalidate(tables []string) {
	for _, t := range tables {
		if c, ok := l.versions.Load(t); ok {
			c.(*atomic.Uint64).Add(1)
		}
	}
}

func (l *local) counter(table string) *atomic.Uint64 {
	if c, ok := l.versions.Load(table); ok {
		return c.(*atomic.Uint64)
	}
	c, _ := l.versions.LoadOrStore(table, new(atomic.Uint64))
	return c.(*atomic.Uint64)
}

// maxOwn bounds own: the messages of bumps that arrive before mine records
// them never take theirs out.
const maxOwn = 1024

// mine records that this instance bumped table to gen and ended its items
// after the bump (Invalidate): the bump's message need not end those read
// since, which hold the write.
func (l *local) mine(table, gen string) {
	l.ownMu.Lock()
	defer l.ownMu.Unlock()
	if l.own == nil || len(l.own) >= maxOwn {
		l.own = make(map[string]struct{})
	}
	l.own[table+"\x00"+gen] = struct{}{}
}

// isOwn reports whether a message of table's bump to gen is of a bump mine
// recorded, and forgets it.
func (l *local) isOwn(table, gen string) bool {
	l.ownMu.Lock()
	defer l.ownMu.Unlock()
	k := table + "\x00" + gen
	_, ok := l.own[k]
	delete(l.own, k)
	return ok
}

// subscribed reports whether the listener is subscribed to bumps.
func (l *local) subscribed() bool { return l.epoch.Load()%2 == 0 }

// lost records that the subscription may have missed messages.
func (l *local) lost() {
	if e := l.epoch.Load(); e%2 == 0 {
		l.epoch.Store(e + 1)
		l.stats.LocalResubscribes.Add(1)
	}
}

// found records that the subscription is live (again).
func (l *local) found() {
	if e := l.epoch.Load(); e%2 == 1 {
		l.epoch.Store(e + 1)
	}
}

// listen receives the bumps of every table until close, and keeps the
// subscription's state in epoch. Only this goroutine changes epoch.
func (l *local) listen() {
	defer close(l.done)
	var backoff time.Duration
	pinged := false
	for ps := l.subscribe(); ps != nil; {
		msg, err := ps.ReceiveTimeout(l.ctx, localHealth)
		if l.ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			backoff, pinged = 0, false
			l.receive(msg)
			continue
		case isTimeout(err) && !pinged:
			// Quiet: ask for a sign of life. go-redis replaces a connection
			// whose write fails and subscribes again: messages may have
			// been lost.
			pinged = true
			if ps.Ping(l.ctx) != nil {
				l.lost()
			}
			continue
		case pinged && l.subscribed() && answered(err):
			// An error reply to the health check's PING (-BUSY while a
			// script runs, -NOPERM from an ACL without PING) is a sign of
			// life: the connection keeps its subscription, and messages
			// come in order.
			backoff, pinged = 0, false
			continue
		}
		l.lost()
		if errors.Is(err, redis.ErrClosed) {
			// Closed by moved (the client reaches another server), not
			// by close: subscribe again.
			ps = l.resubscribe(ps)
		} else if isTimeout(err) {
			// No answer to the ping: a dead connection no error reports.
			l.log.printf(LogLocal, LevelWarn, "gormflight: near cache: no answer from Redis on the invalidation subscription, subscribing again")
			ps = l.resubscribe(ps)
		} else if rerr := redis.Error(nil); errors.As(err, &rerr) {
			// Redis answered the subscription with an error (-LOADING
			// after a restart, -NOPERM) on a connection go-redis keeps:
			// only a new subscription's confirmation ends the loss.
			l.log.printf(LogLocal, LevelWarn, "gormflight: near cache: Redis answered %v on the invalidation subscription, subscribing again", err)
			ps = l.resubscribe(ps)
		}
		pinged = false
		backoff = min(max(2*backoff, 10*time.Millisecond), localMaxBackoff)
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

func (l *local) receive(msg any) {
	switch m := msg.(type) {
	case *redis.Subscription:
		if m.Kind == "psubscribe" {
			// A confirmation while subscribed is go-redis subscribing
			// again on a connection it replaced without telling (a
			// failed write, a handoff): messages may have been lost.
			l.lost()
			l.found()
		}
	case *redis.Message:
		if t, ok := l.tableOf(m.Channel); ok && !l.isOwn(t, m.Payload) {
			l.invalidate([]string{t})
		}
	}
}

// subscribe starts the listener's subscription; nil once close began.
func (l *local) subscribe() *redis.PubSub {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx.Err() != nil {
		return nil
	}
	l.ps = l.rdb.PSubscribe(l.ctx, l.pattern)
	return l.ps
}

// moved makes the listener subscribe again, on a connection to the server
// the client reaches now: its connection is closed, which ends its
// receive, and the next one reports ErrClosed.
func (l *local) moved() {
	l.mu.Lock()
	ps := l.ps
	l.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}

// resubscribe replaces a subscription whose connection went silent.
func (l *local) resubscribe(old *redis.PubSub) *redis.PubSub {
	_ = old.Close()
	if ps := l.subscribe(); ps != nil {
		return ps
	}
	return old // closing: the next receive returns
}

// tableOf returns the table whose bump channel is channel.
func (l *local) tableOf(channel string) (string, bool) {
	t, ok := strings.CutPrefix(channel, l.prefix)
	if !ok {
		return "", false
	}
	return strings.CutSuffix(t, "}:b")
}

// close stops the listener and empties the cache.
func (l *local) close() {
	l.mu.Lock()
	l.stop()
	ps := l.ps
	l.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
	if l.started.Load() {
		<-l.done
	}
	l.cache.InvalidateAll()
	l.cache.StopAllGoroutines()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// globEscape quotes the characters Redis glob patterns treat specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
