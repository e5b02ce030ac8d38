package engine

import (
	"context"
	"net"
	"sync"

	"github.com/redis/go-redis/v9"
)

// A Sentinel failover client (redis.NewFailoverClient: a *redis.Client
// whose Options().Addr is go-redis's placeholder "FailoverClient") changes
// servers at a failover. go-redis then closes the connections of its pool
// to the old master, but not its pub/sub connections, which keep
// listening there: messages published on the new master (bumps, "ready")
// would never arrive until the old master is demoted, seconds later. So
// the engine watches the servers its client dials (a dial hook): when a
// new connection reaches another server than the one before, the hub and
// the near cache subscribe again on new connections, which go to the new
// server. Only failover clients are watched: a client of one address that
// resolves to several hosts (DNS round robin, a proxy) dials different
// peers with no failover at all. The engine must be given the client
// NewFailoverClient returned: a clone (WithTimeout) shares its pools,
// which dial through the original's hooks.

// failoverAddr is the Addr of the options of go-redis's failover clients.
const failoverAddr = "FailoverClient"

// watches holds the dial hook of each failover client an engine uses: a
// client gets one hook however many engines use it (go-redis cannot
// remove a hook), and the engines register with it while they are open.
var watches sync.Map // *redis.Client -> *dialWatch

// dialWatch is the hook that reports a change of server.
type dialWatch struct {
	mu      sync.Mutex
	last    string
	engines map[*Engine]struct{}
	gone    bool // out of watches: its last engine closed
}

// watchServer registers e with the dial hook of its client, adding one if
// the client is a failover client that has none; it reports whether it
// did. e.moved then receives a value when the client reaches a new server.
func watchServer(e *Engine) bool {
	c, ok := e.rdb.(*redis.Client)
	if !ok || c.Options().Addr != failoverAddr {
		return false
	}
	for {
		v, loaded := watches.LoadOrStore(c, &dialWatch{engines: make(map[*Engine]struct{})})
		w := v.(*dialWatch)
		if !loaded {
			c.AddHook(w)
		}
		w.mu.Lock()
		if w.gone {
			// Its last engine left it (unwatchServer): take a new one.
			w.mu.Unlock()
			continue
		}
		w.engines[e] = struct{}{}
		w.mu.Unlock()
		return true
	}
}

// unwatchServer removes e from its client's hook (Close), and the client
// from watches when no engine uses it: the hook stays on the client, which
// go-redis cannot take it from, and does nothing; an engine made on the
// client later adds a new one.
func unwatchServer(e *Engine) {
	c, ok := e.rdb.(*redis.Client)
	if !ok {
		return
	}
	if v, ok := watches.Load(c); ok {
		w := v.(*dialWatch)
		w.mu.Lock()
		delete(w.engines, e)
		if len(w.engines) == 0 {
			w.gone = true
			watches.CompareAndDelete(c, w)
		}
		w.mu.Unlock()
	}
}

func (w *dialWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		cn, err := next(ctx, network, addr)
		if err == nil && cn.RemoteAddr() != nil {
			w.saw(cn.RemoteAddr().String())
		}
		return cn, err
	}
}

// saw records the server a new connection reached, and tells the engines
// when it is another than the one before. A change already told and not
// yet acted on absorbs the next (e.moved holds one).
func (w *dialWatch) saw(remote string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == remote {
		return
	}
	changed := w.last != ""
	w.last = remote
	if !changed {
		return
	}
	for e := range w.engines {
		select {
		case e.moved <- struct{}{}:
		default:
		}
	}
}

func (w *dialWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (w *dialWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// followServer moves the hub's and the near cache's subscriptions to the
// server the client reaches now, each time the dial hook reports a new
// one, until Close.
func (e *Engine) followServer() {
	defer close(e.followed)
	for retry := shardRetryMin; ; {
		select {
		case <-e.done:
			return
		case <-e.moved:
		}
		if e.closing.Load() {
			return
		}
		if !e.hub.moved() {
			// The new server did not answer: try again, later.
			if !sleepCtx(e.bgCtx, retry) {
				return
			}
			retry = min(2*retry, shardRetryMax)
			select {
			case e.moved <- struct{}{}:
			default:
			}
			continue
		}
		retry = shardRetryMin
		if e.local != nil {
			e.local.moved()
		}
	}
}
