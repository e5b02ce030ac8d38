package engine

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/redis/go-redis/v9"
)

// A plain *redis.Client in front of a Redis whose cluster mode is on but
// which serves every slot itself (a single-node cluster; managed endpoints
// that proxy a cluster behind one address behave alike) refuses the
// compact lookup's EXISTS and MGET, whose keys are in many slots
// (CROSSSLOT): the first refusal turns compact lookups off, and the key is
// loaded once, as with per-table lookups.
func TestCompactLookupOffOnClusterNode(t *testing.T) {
	addr := startClusterNode(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	e := engineOn(t, rdb)
	if !e.compact.Load() {
		t.Fatal("a *redis.Client does not start with compact lookups")
	}
	var loads atomic.Int64
	req := testRequest("k", "x", &loads)
	req.Tables = []string{"*", "a", "b"}
	for range 3 {
		do(t, e, req)
	}
	if n := loads.Load(); n != 1 || e.compact.Load() {
		t.Errorf("3 calls loaded %d times (want 1), compact lookups still on: %v; %+v", n, e.compact.Load(), e.stats)
	}
}

// startClusterNode starts a redis-server of the test's own with cluster
// mode on, serving every slot itself, and returns its address.
func startClusterNode(t *testing.T) string {
	t.Helper()
	addr := startBareClusterNode(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx := context.Background()
	waitFor(t, "redis-server", 5*time.Second, func() bool { return rdb.Ping(ctx).Err() == nil })
	if err := rdb.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cluster ok", 10*time.Second, func() bool {
		s, _ := rdb.ClusterInfo(ctx).Result()
		return len(s) > 0 && strings.Contains(s, "cluster_state:ok")
	})
	return addr
}

// On Redis Cluster a waiter listens for its key's ready message with
// SSUBSCRIBE, on its shard alone, and the loader's SPUBLISH wakes it: the
// waiter's fallback poll is set far beyond the test's run, so only the
// sharded message can end its wait, and no classic subscriber is left.
func TestClusterReadyIsSharded(t *testing.T) {
	addr := startClusterNode(t)
	engines := make([]*Engine, 2)
	for i := range engines {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = rdb.Close() })
		engines[i] = engineOn(t, rdb, func(c *Config) {
			c.LockExpiry = time.Hour // the waiter polls after 30 min
			c.MaxWait = time.Hour
		})
	}
	a, b := engines[0], engines[1]
	var loads atomic.Int64
	started, release := make(chan struct{}), make(chan struct{})
	slow := testRequest("k", "x", &loads)
	load := slow.Load
	slow.Load = func(ctx context.Context) (*rowcodec.Entry, error) {
		close(started)
		<-release
		return load(ctx)
	}
	fromA := doAsync(a, slow)
	<-started
	fromB := doAsync(b, testRequest("k", "x", &loads))
	waitFor(t, "b to wait for a's result", 10*time.Second, func() bool { return b.Subscribed() == 1 })

	node := redis.NewClient(&redis.Options{Addr: addr})
	defer node.Close()
	ctx := context.Background()
	ready := newKeys(b.cfg.Prefix, "k").ready
	waitFor(t, "the sharded subscription", 10*time.Second, func() bool {
		n, _ := node.PubSubShardNumSub(ctx, ready).Result()
		return n[ready] == 1
	})
	if n, _ := node.PubSubNumSub(ctx, ready).Result(); n[ready] != 0 {
		t.Errorf("%d classic subscribers of %s, want 0", n[ready], ready)
	}
	close(release)
	for _, got := range []<-chan string{fromA, fromB} {
		if v := <-got; v != "x" {
			t.Errorf("got %q, want x", v)
		}
	}
	if n := loads.Load(); n != 1 {
		t.Errorf("%d loads for one cold key on two engines, want 1", n)
	}
	if h, e := b.Stats().Hits.Load(), b.Stats().RedisErrors.Load(); h != 1 || e != 0 {
		t.Errorf("b: %d hits (want 1, a's stored entry), %d Redis errors (want 0)", h, e)
	}
	waitFor(t, "the sharded subscription to end", 10*time.Second, func() bool {
		n, _ := node.PubSubShardNumSub(ctx, ready).Result()
		return n[ready] == 0 && b.Subscribed() == 0
	})
}

// WaitReplicas on Redis Cluster sends WAIT to the node that holds a table's
// keys; a node without replicas has nothing to wait for, and the bump is
// done at once.
func TestClusterWaitReplicasWithoutReplicas(t *testing.T) {
	addr := startClusterNode(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	e := engineOn(t, rdb, func(c *Config) { c.WaitReplicas = 1 })
	var loads atomic.Int64
	do(t, e, testRequest("k", "x", &loads))
	tables := []string{"t", "u", "v"}
	if err := e.Invalidate(context.Background(), tables, e.Announce(context.Background(), tables, false)); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	if v := do(t, e, testRequest("k", "y", &loads)); v != "y" || loads.Load() != 2 {
		t.Errorf("read %q after the bump with %d loads, want y and 2", v, loads.Load())
	}
}
