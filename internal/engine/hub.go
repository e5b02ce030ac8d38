package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// hub multiplexes every channel this instance waits on ("ready" channels of
// keys, bump channels of tables) over one Redis pub/sub connection. A
// channel is subscribed while at least one flight waits on it.
//
// A subscription's confirmation from Redis wakes its waiters like a ready
// message does: only once the confirmation arrives is the subscription live,
// so the re-check that follows cannot miss a result stored just before. When
// go-redis reconnects it subscribes again, and those confirmations make every
// waiting flight re-check.
//
// On Redis Cluster (a *redis.ClusterClient) the ready channels are sharded
// (SSUBSCRIBE, and the loader's SPUBLISH): a ready message then reaches the
// nodes of its key's shard only, where a classic PUBLISH goes to every node
// of the cluster. A sharded subscription lives on a connection to the node
// that serves its slot, so each ready channel gets a pub/sub connection of
// its own (its key's hash tag is its own slot, so grouping by slot would
// share nothing), served by a goroutine of its own that connects outside
// the hub's lock. go-redis reconnects it to the slot's node when it
// breaks, and subscribes again; a node that loses the slot (a failover, a
// slot migration) unsubscribes its clients, and a node that does not own
// the slot answers MOVED (any error reply counts): either way the hub
// subscribes again on a new connection, once the client has had time to
// learn the new slot map, and the confirmation wakes the waiters for a
// re-check. Bump channels stay classic: their PUBLISH runs inside the bump
// script, and the near cache listens on all of them with one PSUBSCRIBE.
type hub struct {
	rdb     redis.UniversalClient
	ps      *redis.PubSub        // the classic connection; replaced by moved
	cluster *redis.ClusterClient // set: ready channels are sharded
	timeout time.Duration
	stats   *Counters

	mu     sync.Mutex
	waits  map[string]map[*waiter]struct{}
	shards map[string]*shardSub // a sharded channel's own connection
	closed bool

	runG   sync.WaitGroup // the classic connections' dispatchers
	shardG sync.WaitGroup // the goroutines of the sharded connections
}

// shardSub is a sharded channel's connection and what ends its goroutine.
type shardSub struct {
	ps     *redis.PubSub
	cancel context.CancelFunc
}

// Delays between subscriptions of a sharded channel that a node refused
// (MOVED, or any error reply), and after a broken connection: the cluster
// client reloads its slot map in the background.
const (
	shardRetryMin = 10 * time.Millisecond
	shardRetryMax = time.Second
)

// waiter is one flight's registration on the channels it waits on.
type waiter struct {
	h        *hub
	channels []string // owned by the flight; the hub reads none of it
	// wake receives a value for each message or confirmation; it holds at
	// most one, since a waiter re-checks everything on each wake.
	wake chan struct{}
	// mu guards uncached: the holder reported a result it did not store.
	mu       sync.Mutex
	uncached bool
}

func newHub(rdb redis.UniversalClient, timeout time.Duration, stats *Counters) *hub {
	ps := rdb.Subscribe(context.Background())
	cluster, _ := rdb.(*redis.ClusterClient)
	h := &hub{
		rdb:     rdb,
		ps:      ps,
		cluster: cluster,
		timeout: timeout,
		stats:   stats,
		waits:   make(map[string]map[*waiter]struct{}),
		shards:  make(map[string]*shardSub),
	}
	h.runG.Add(1)
	go func() {
		defer h.runG.Done()
		h.run(ps)
	}()
	return h
}

// moved replaces the classic connection with one to the server the client
// now reaches (see moved.go), subscribed to every classic channel waited
// on. The confirmations wake their waiters for a re-check. The new
// connection is made (a PING) before the hub's lock is taken, so that the
// subscriptions under it only write their commands; if it cannot be made,
// nothing changes and moved reports false.
func (h *hub) moved() bool {
	ps := h.rdb.Subscribe(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	if err := ps.Ping(ctx); err != nil {
		h.stats.RedisErrors.Add(1)
		_ = ps.Close()
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		_ = ps.Close()
		return true
	}
	old := h.ps
	h.ps = ps
	var channels []string
	for channel := range h.waits {
		if !h.sharded(channel) {
			channels = append(channels, channel)
		}
	}
	if len(channels) > 0 {
		if err := ps.Subscribe(ctx, channels...); err != nil {
			h.stats.RedisErrors.Add(1)
		}
	}
	h.runG.Add(2)
	go func() {
		defer h.runG.Done()
		h.run(ps)
	}()
	go func() {
		defer h.runG.Done()
		_ = old.Close()
	}()
	return true
}

// sharded reports whether channel is a ready channel on Redis Cluster.
func (h *hub) sharded(channel string) bool {
	return h.cluster != nil && strings.HasSuffix(channel, readySuffix)
}

// run dispatches the messages of the classic connection ps until it is
// closed.
func (h *hub) run(ps *redis.PubSub) {
	for msg := range ps.ChannelWithSubscriptions(redis.WithChannelSize(1024)) {
		switch m := msg.(type) {
		case *redis.Message:
			h.notify(m.Channel, m.Payload)
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				h.notify(m.Channel, "")
			}
		}
	}
}

// shard gives the sharded channel a connection of its own and starts its
// goroutine, which subscribes after delay. Called with h.mu held; nothing
// here waits for Redis.
func (h *hub) shard(channel string, delay time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	ps := h.cluster.SSubscribe(ctx) // no channel yet: connects on first use
	h.shards[channel] = &shardSub{ps: ps, cancel: cancel}
	h.shardG.Add(1)
	go func() {
		defer h.shardG.Done()
		defer ps.Close()
		h.runShard(ctx, channel, ps, delay)
	}()
}

// runShard subscribes ps to channel and dispatches what arrives on it
// until ctx ends (the channel is no longer waited on) or the channel must
// be subscribed again elsewhere. It reads ps itself rather than through
// go-redis's message channel, which drops errors: a MOVED is one.
func (h *hub) runShard(ctx context.Context, channel string, ps *redis.PubSub, delay time.Duration) {
	if delay > 0 && !sleepCtx(ctx, delay) {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, h.timeout)
	err := ps.SSubscribe(sctx, channel)
	cancel()
	if err != nil && ctx.Err() == nil {
		// go-redis subscribes again on the next receive.
		h.stats.RedisErrors.Add(1)
	}
	for failures := 0; ; {
		msg, err := ps.Receive(ctx)
		switch {
		case ctx.Err() != nil || errors.Is(err, redis.ErrClosed):
			return
		case answered(err):
			// An error reply: MOVED (the node does not serve the slot),
			// CLUSTERDOWN, an ACL's NOPERM... The connection stays, with
			// no subscription: subscribe again on a new one, once the
			// client has had time to learn the slot map.
			h.stats.RedisErrors.Add(1)
			h.resubscribe(channel, ps, min(max(2*delay, shardRetryMin), shardRetryMax))
			return
		case err != nil:
			// The connection broke: go-redis makes it again on the next
			// receive, to the slot's node as the client knows it, and
			// subscribes again.
			h.stats.RedisErrors.Add(1)
			h.cluster.ReloadState(ctx)
			failures++
			if !sleepCtx(ctx, min(shardRetryMin<<min(failures, 7), shardRetryMax)) {
				return
			}
			continue
		}
		failures = 0
		switch m := msg.(type) {
		case *redis.Message:
			h.notify(m.Channel, m.Payload)
		case *redis.Subscription:
			h.notify(m.Channel, "")
			if m.Kind == "sunsubscribe" {
				// The node gave the slot up (a failover, a migration):
				// subscribe again where the slot is now.
				h.resubscribe(channel, ps, 0)
				return
			}
		}
	}
}

// sleepCtx waits for d, or less if ctx ends first; it reports whether it
// waited the whole of d.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// resubscribe replaces old, the connection of a sharded channel that must
// be subscribed again, if the channel is still waited on through it. The
// new connection subscribes after delay, and the client reloads its slot
// map in the meantime.
func (h *hub) resubscribe(channel string, old *redis.PubSub, delay time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.shards[channel] == nil || h.shards[channel].ps != old {
		return
	}
	h.stopShard(h.shards[channel])
	h.cluster.ReloadState(context.Background())
	h.shard(channel, delay)
}

func (h *hub) notify(channel, payload string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.waits[channel] {
		if payload == readyUncached {
			w.mu.Lock()
			w.uncached = true
			w.mu.Unlock()
		}
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// newWaiter returns a waiter on no channel yet; add registers it on
// channels, stop removes it from all of them.
func (h *hub) newWaiter() *waiter {
	return &waiter{h: h, wake: make(chan struct{}, 1)}
}

// wait returns a waiter registered on channel.
func (h *hub) wait(channel string) *waiter {
	w := h.newWaiter()
	w.add(channel)
	return w
}

// add registers the waiter on channel, subscribing if it is the first
// waiter there; a channel it waits on already is left as it is. A failed
// SUBSCRIBE is not fatal: the waiter still has its fallback timer, and
// go-redis subscribes again when it reconnects.
func (w *waiter) add(channel string) {
	if slices.Contains(w.channels, channel) {
		return
	}
	w.channels = append(w.channels, channel)
	h := w.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	set := h.waits[channel]
	if set == nil {
		set = make(map[*waiter]struct{})
		h.waits[channel] = set
		if h.sharded(channel) {
			h.shard(channel, 0)
		} else {
			h.subscribe(channel)
		}
	}
	set[w] = struct{}{}
}

// subscribe subscribes the classic connection to channel. Under h.mu, so
// SUBSCRIBE and UNSUBSCRIBE of one channel cannot overtake each other.
// go-redis only writes the command here.
func (h *hub) subscribe(channel string) {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	if err := h.ps.Subscribe(ctx, channel); err != nil {
		h.stats.RedisErrors.Add(1)
	}
	cancel()
}

func (w *waiter) isUncached() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.uncached
}

// stop removes the waiter from its channels, unsubscribing from each one
// it was the last waiter on.
func (w *waiter) stop() {
	h := w.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, channel := range w.channels {
		set := h.waits[channel]
		if _, ok := set[w]; !ok {
			continue
		}
		delete(set, w)
		if len(set) > 0 {
			continue
		}
		delete(h.waits, channel)
		if sub := h.shards[channel]; sub != nil {
			delete(h.shards, channel)
			h.stopShard(sub)
			continue
		}
		if h.closed {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		if err := h.ps.Unsubscribe(ctx, channel); err != nil {
			h.stats.RedisErrors.Add(1)
		}
		cancel()
	}
	w.channels = nil
}

// subscribed reports how many channels are subscribed; tests use it to prove
// that nothing is left behind.
func (h *hub) subscribed() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.waits)
}

// close ends the pub/sub connection and waits for the dispatcher to return.
func (h *hub) close() error {
	h.mu.Lock()
	h.closed = true
	for channel, sub := range h.shards {
		delete(h.shards, channel)
		h.stopShard(sub)
	}
	ps := h.ps
	h.mu.Unlock()
	err := ps.Close()
	h.runG.Wait()
	h.shardG.Wait()
	return err
}

// stopShard ends a sharded connection's goroutine: the cancel ends a
// subscription's wait to connect, the close a receive in progress. The
// close waits for a connection being made, so it runs on a goroutine of
// its own, which close waits for like the shard's.
func (h *hub) stopShard(sub *shardSub) {
	sub.cancel()
	h.shardG.Add(1)
	go func() {
		defer h.shardG.Done()
		_ = sub.ps.Close()
	}()
}
