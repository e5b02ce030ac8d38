package engine

import (
	"context"
	"net"
	"sync"

	"github.com/redis/go-redis/v9"
)

// A client of one address (a *redis.Client) may still change servers: a
// Sentinel failover client, or a name that resolves to another host after
// a failover. go-redis's failover client then closes the connections of
// its pool to the old master, but not its pub/sub connections, which keep
// listening there: messages published on the new master (bumps, "ready")
// never arrive, and the old master, demoted seconds later, takes clients
// that think it is still the master. So the engine watches the addresses
// its client dials (a dial hook): when a new connection goes to another
// server than the one before, the hub and the near cache subscribe again
// on new connections, which go to the new server.

// dialWatch is the hook that reports a change of server.
type dialWatch struct {
	mu    sync.Mutex
	last  string
	moved func()
}

// watchServer adds a dialWatch to rdb when it is a client of one address;
// moved is called, on a goroutine of its own, when a dial reaches another
// server than the dial before it.
func watchServer(rdb redis.UniversalClient, moved func()) {
	if c, ok := rdb.(*redis.Client); ok {
		c.AddHook(&dialWatch{moved: moved})
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

func (w *dialWatch) saw(remote string) {
	w.mu.Lock()
	changed := w.last != "" && w.last != remote
	w.last = remote
	w.mu.Unlock()
	if changed {
		go w.moved()
	}
}

func (w *dialWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (w *dialWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
