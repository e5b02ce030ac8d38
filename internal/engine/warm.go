package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// go-redis opens connections lazily and runs a new connection's handshake
// (HELLO, CLIENT SETINFO, AUTH and SELECT when configured: several round
// trips) under the context of the operation that needs it, whose deadline
// is RedisTimeout. An operation that times out discards its connection. So
// once the round trip exceeds about a quarter of RedisTimeout, every
// replacement connection dies in its handshake and caching never resumes,
// though single commands would fit in RedisTimeout.
//
// The warmer opens the connections outside any operation's deadline: each
// failed Redis operation asks it for one connection, and it then sends
// PINGs, each under a budget of warmBudget RedisTimeouts, through the
// client's main pool and its pipeline pool (lookups are pipelines), on every
// shard of a cluster or ring. The connections those PINGs initialize stay
// idle in the pools for the next operations: the breaker's probe after its
// cooldown finds one ready.
//
// It runs one round at a time, and a round only after failures: a dead
// Redis gets at most a round of PINGs per failed operation the breaker let
// through, never a loop of them.

// warmBudget bounds a round, in RedisTimeouts. A handshake takes about five
// round trips and the PING one more: when the round trip is short enough
// for operations to succeed at all (under RedisTimeout), a connection is
// ready within this. A longer budget would only warm connections for
// operations bound to time out, and would keep Close waiting longer:
// go-redis cannot interrupt a read, so Close waits for the round in
// progress.
const warmBudget = 8

// warmFallbackMax is the most connections one round warms on a client
// whose pool size the warmer cannot read.
const warmFallbackMax = 10

type warmer struct {
	rdb    redis.UniversalClient
	budget time.Duration
	max    int64 // most connections one round warms, per pool: the pool size

	failures atomic.Int64  // failed operations since the last round began
	kick     chan struct{} // asks run for a round; holds at most one
	done     <-chan struct{}
	ended    chan struct{} // closed when run returns
}

func newWarmer(cfg Config, done <-chan struct{}) *warmer {
	return &warmer{
		rdb:    cfg.Redis,
		budget: warmBudget * cfg.RedisTimeout,
		max:    int64(poolSize(cfg.Redis)),
		kick:   make(chan struct{}, 1),
		done:   done,
		ended:  make(chan struct{}),
	}
}

// failed records a failed Redis operation and asks for a round. It never
// blocks.
func (w *warmer) failed() {
	w.failures.Add(1)
	select {
	case w.kick <- struct{}{}:
	default: // a round is asked for already; it will count this failure
	}
}

// run warms connections, a round each time operations failed, until done
// is closed; it waits for the round in progress, then closes ended.
func (w *warmer) run() {
	defer close(w.ended)
	for {
		select {
		case <-w.done:
			return
		case <-w.kick:
		}
		if n := min(w.failures.Swap(0), w.max); n > 0 {
			w.round(int(n))
		}
	}
}

// round initializes up to n connections in each pool of each shard.
func (w *warmer) round(n int) {
	ctx, cancel := context.WithTimeout(context.Background(), w.budget)
	defer cancel()
	if s, ok := w.rdb.(sharded); ok {
		_ = s.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
			warmClient(ctx, c, n)
			return nil
		})
		return
	}
	warmClient(ctx, w.rdb, n)
}

// sharded is a client of several servers: *redis.ClusterClient, *redis.Ring.
type sharded interface {
	ForEachShard(ctx context.Context, fn func(ctx context.Context, client *redis.Client) error) error
}

// warmClient sends n concurrent PINGs, and n pipelined ones, so that each
// holds a connection of its own, a new one if the pool has no idle one,
// and leaves it initialized in the pool. Errors are ignored: the next
// failed operation asks again.
func warmClient(ctx context.Context, c redis.Cmdable, n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { _ = c.Ping(ctx).Err() })
		wg.Go(func() {
			pipe := c.Pipeline()
			pipe.Ping(ctx)
			_, _ = pipe.Exec(ctx)
		})
	}
	wg.Wait()
}

// poolSize is the client's connection pool size (per shard), which bounds
// the connections operations can use at once.
func poolSize(rdb redis.UniversalClient) int {
	n := 0
	switch c := rdb.(type) {
	case *redis.Client:
		n = c.Options().PoolSize
	case *redis.ClusterClient:
		n = c.Options().PoolSize
	case *redis.Ring:
		n = c.Options().PoolSize
	}
	if n <= 0 {
		return warmFallbackMax
	}
	return n
}
