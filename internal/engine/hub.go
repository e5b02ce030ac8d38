package engine

import (
	"context"
	"slices"
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
type hub struct {
	ps      *redis.PubSub
	timeout time.Duration
	stats   *Counters

	mu     sync.Mutex
	waits  map[string]map[*waiter]struct{}
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
	h := &hub{
		ps:      ps,
		timeout: timeout,
		stats:   stats,
		waits:   make(map[string]map[*waiter]struct{}),
		done:    make(chan struct{}),
	}
	go h.run(ps.ChannelWithSubscriptions(redis.WithChannelSize(1024)))
	return h
}

func (h *hub) run(ch <-chan any) {
	defer close(h.done)
	for msg := range ch {
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
		// Under h.mu, so SUBSCRIBE and UNSUBSCRIBE of one channel cannot
		// overtake each other. go-redis only writes the command here.
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		if err := h.ps.Subscribe(ctx, channel); err != nil {
			h.stats.RedisErrors.Add(1)
		}
		cancel()
	}
	set[w] = struct{}{}
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
	h.mu.Unlock()
	err := h.ps.Close()
	<-h.done
	return err
}
