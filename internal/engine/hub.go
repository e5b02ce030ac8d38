package engine

import (
	"context"
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
// share nothing). go-redis reconnects it to the slot's node when it breaks,
// and subscribes again; a node that loses the slot (a failover, a slot
// migration) unsubscribes its clients, and the hub then subscribes again
// on a new connection. Either way the confirmation wakes the waiters for a
// re-check. Bump channels stay classic: their PUBLISH runs inside the bump
// script, and the near cache listens on all of them with one PSUBSCRIBE.
type hub struct {
	ps      *redis.PubSub
	cluster *redis.ClusterClient // set: ready channels are sharded
	timeout time.Duration
	stats   *Counters

	mu     sync.Mutex
	waits  map[string]map[*waiter]struct{}
	shards map[string]*redis.PubSub // a sharded channel's own connection
	closed bool

	done chan struct{} // closed when run returns
}

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
		ps:      ps,
		cluster: cluster,
		timeout: timeout,
		stats:   stats,
		waits:   make(map[string]map[*waiter]struct{}),
		shards:  make(map[string]*redis.PubSub),
		done:    make(chan struct{}),
	}
	go func() {
		defer close(h.done)
		h.run(nil, ps)
	}()
	return h
}

// sharded reports whether channel is a ready channel on Redis Cluster.
func (h *hub) sharded(channel string) bool {
	return h.cluster != nil && strings.HasSuffix(channel, readySuffix)
}

// run dispatches the messages of ps until it is closed. sharded is the
// channel ps alone carries, or empty for the classic connection.
func (h *hub) run(sharded *string, ps *redis.PubSub) {
	for msg := range ps.ChannelWithSubscriptions(redis.WithChannelSize(1024)) {
		switch m := msg.(type) {
		case *redis.Message:
			h.notify(m.Channel, m.Payload)
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				h.notify(m.Channel, "")
			case "sunsubscribe":
				// The node gave the slot up (a failover, a migration):
				// subscribe again where the slot is now.
				h.notify(m.Channel, "")
				if sharded != nil {
					h.resubscribe(*sharded, ps)
				}
			}
		}
	}
}

// shard subscribes to the sharded channel on a connection of its own.
// Called with h.mu held; go-redis connects and writes SSUBSCRIBE without
// waiting for a reply, and a connection that fails is made again on the
// next receive, so a failure here only counts.
func (h *hub) shard(channel string) {
	ps := h.cluster.SSubscribe(context.Background())
	h.shards[channel] = ps
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	if err := ps.SSubscribe(ctx, channel); err != nil {
		h.stats.RedisErrors.Add(1)
	}
	cancel()
	go h.run(&channel, ps)
}

// resubscribe replaces old, the connection of a sharded channel whose node
// unsubscribed it, if the channel is still waited on through it.
func (h *hub) resubscribe(channel string, old *redis.PubSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.shards[channel] != old {
		return
	}
	_ = old.Close()
	// The slot's node may have changed: let go-redis learn the new map.
	h.cluster.ReloadState(context.Background())
	h.shard(channel)
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
			h.shard(channel)
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
		if ps := h.shards[channel]; ps != nil {
			delete(h.shards, channel)
			_ = ps.Close() // its dispatcher returns
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
	for channel, ps := range h.shards {
		delete(h.shards, channel)
		_ = ps.Close()
	}
	h.mu.Unlock()
	err := h.ps.Close()
	<-h.done
	return err
}
