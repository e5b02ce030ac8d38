package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/redis/go-redis/v9"
)

// Two instances over one Redis whose KeyCopies differ: the entry's name is
// the same for both, but the generations it is stamped with are not, and a
// write through the one-copy instance would bump {t} only while the
// sixteen-copy instance kept serving the entry it stamped with {t|s}. New
// refuses the second instance instead; with one default for every client
// type, instances only disagree when told to.
func TestKeyCopiesMismatchRefused(t *testing.T) {
	addr := startClusterNode(t)
	plain := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = plain.Close() })
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = cluster.Close() })
	writer := engineOn(t, plain)
	if writer.cfg.KeyCopies != 1 {
		t.Fatalf("a *redis.Client defaults to %d copies, want 1", writer.cfg.KeyCopies)
	}
	if d := engineOn(t, cluster); d.cfg.KeyCopies != 1 {
		t.Errorf("a *redis.ClusterClient defaults to %d copies, want 1, as every client", d.cfg.KeyCopies)
	}
	cfg := testConfig(t, cluster)
	cfg.KeyCopies = 16
	if e, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
		if e != nil {
			_, _ = e.Close()
		}
		t.Fatalf("New with 16 copies beside an instance with 1: %v, want ErrInvalidConfig", err)
	}
}

// WaitReplicas on a cluster of two masters, neither of which has a replica
// (a dev cluster, or one whose replicas are down: the README says such a
// node "waits for those it has"). WAIT blocks for its whole timeout
// (RedisTimeout/2) when fewer replicas than asked are connected, and the
// nodes are waited for one after the other within one RedisTimeout: the
// second node's WAIT runs past the bump's deadline. Every bump then fails,
// the retrier's too, and the table stays dirty: read uncached for good.
func TestWaitReplicasOnTwoMastersNeverBumps(t *testing.T) {
	addrs := startCluster(t, 2)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	e := engineOn(t, rdb, func(c *Config) {
		c.WaitReplicas = 1
		c.KeyCopies = DefaultClusterKeyCopies
		c.LockExpiry = 200 * time.Millisecond // the retrier tries every 50ms
	})
	nodes, _, err := e.byNode(context.Background(), e.allCopies([]string{"t"}))
	if err != nil || len(nodes) != 2 {
		t.Fatalf("the copies of t are on %d nodes (%v), want 2", len(nodes), err)
	}
	ctx := context.Background()
	err = e.Invalidate(ctx, []string{"t"}, e.Announce(ctx, []string{"t"}, false))
	if err != nil {
		t.Errorf("Invalidate on two masters without replicas: %v", err)
	}
	// The retrier tries again every LockExpiry/4, with the same outcome.
	deadline := time.Now().Add(2 * time.Second)
	for e.Dirty([]string{"t"}) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if e.Dirty([]string{"t"}) {
		t.Errorf("t is still dirty after the retrier's attempts (%d invalidation errors): every read of it goes to the database",
			e.stats.InvalidationErrors.Load())
	}
}

// A slot that moves to another master (a resharding, or a manual failover
// that demotes the old master) makes the old master unsubscribe its shard
// channels' subscribers, and the hub subscribes again, on the slot's node
// as go-redis knows it then: ReloadState only starts a reload, which takes
// a round trip at least (here it is held until the hub has dialled, the
// order the race most often takes). The old master answers the SSUBSCRIBE
// with MOVED, an error on which go-redis does not reconnect. The hub must
// try again until the client knows the new map: else the waiter is
// subscribed nowhere, the loader's SPUBLISH on the new master never
// reaches it, and it waits for its fallback poll (LockExpiry/2: here half
// an hour).
func TestShardedResubscribeAfterSlotMove(t *testing.T) {
	addrs := startCluster(t, 2)
	k := newKeys("gft-test", "k")
	seed := redis.NewClient(&redis.Options{Addr: addrs[0]})
	t.Cleanup(func() { _ = seed.Close() })
	var hold atomic.Pointer[chan struct{}] // while set, b's client cannot reload its slot map
	rdb := redis.NewClusterClient(&redis.ClusterOptions{ContextTimeoutEnabled: true,
		ClusterSlots: func(ctx context.Context) ([]redis.ClusterSlot, error) {
			if ch := hold.Load(); ch != nil {
				<-*ch
			}
			return seed.ClusterSlots(ctx).Result()
		}})
	t.Cleanup(func() { _ = rdb.Close() })
	long := func(c *Config) { c.LockExpiry, c.MaxWait = time.Hour, time.Hour }
	b := engineOn(t, rdb, long)
	rdbA := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdbA.Close() })
	a := engineOn(t, rdbA, long)

	release, fromA, fromB := waitOnSlowLoad(t, a, b)
	b.hub.mu.Lock()
	first := b.hub.shards[k.ready]
	b.hub.mu.Unlock()
	gate := make(chan struct{})
	hold.Store(&gate)
	from, to := moveSlot(t, addrs, k.lock)
	waitFor(t, "the hub to subscribe again", 10*time.Second, func() bool {
		b.hub.mu.Lock()
		defer b.hub.mu.Unlock()
		return b.hub.shards[k.ready] != first
	})
	hold.Store(nil)
	close(gate) // b's client learns the new map
	waitFor(t, "b's client to know the new master", 10*time.Second, func() bool {
		node, err := rdb.MasterForKey(context.Background(), k.ready)
		_, port, _ := net.SplitHostPort(to.Options().Addr)
		return err == nil && strings.HasSuffix(node.Options().Addr, ":"+port)
	})
	release <- struct{}{}
	if v := <-fromA; v != "x" {
		t.Fatalf("a read %q", v)
	}
	select {
	case v := <-fromB:
		if v != "x" {
			t.Errorf("b read %q", v)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("b was not woken 10s after a stored the entry; subscribers of its ready channel: %d on the slot's new master, %d on the old one",
			shardSubs(to, k.ready), shardSubs(from, k.ready))
		_, _ = b.Close() // ends b's wait
		<-fromB
	}
}

// waitOnSlowLoad starts a load of key "k" on a that returns "x" once
// release is closed, and a read of it on b, which waits for a's result.
func waitOnSlowLoad(t *testing.T, a, b *Engine) (release chan struct{}, fromA, fromB <-chan string) {
	t.Helper()
	var loads atomic.Int64
	started := make(chan struct{})
	release = make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the engines close
	slow := testRequest("k", "x", &loads)
	load := slow.Load
	slow.Load = func(ctx context.Context) (*rowcodec.Entry, error) {
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return load(ctx)
	}
	fromA = doAsync(a, slow)
	<-started
	fromB = doAsync(b, testRequest("k", "x", &loads))
	waitFor(t, "b to wait for a's result", 10*time.Second, func() bool { return b.Subscribed() == 1 })
	ready := newKeys(b.cfg.Prefix, "k").ready
	waitFor(t, "b's sharded subscription", 10*time.Second, func() bool {
		for _, addr := range []string{a.hub.cluster.Options().Addrs[0], a.hub.cluster.Options().Addrs[1]} {
			node := redis.NewClient(&redis.Options{Addr: addr})
			n := shardSubs(node, ready)
			_ = node.Close()
			if n == 1 {
				return true
			}
		}
		return false
	})
	return release, fromA, fromB
}

// startCluster starts a Redis Cluster of n masters of the test's own, with
// the slots split evenly, and returns their addresses.
func startCluster(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	clients := make([]*redis.Client, n)
	ctx := context.Background()
	for i := range n {
		addrs[i] = startBareClusterNode(t)
		clients[i] = redis.NewClient(&redis.Options{Addr: addrs[i]})
		t.Cleanup(func() { _ = clients[i].Close() })
		lo, hi := i*slots/n, (i+1)*slots/n-1
		if err := clients[i].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < n; i++ {
		host, port, _ := net.SplitHostPort(addrs[i])
		if err := clients[0].ClusterMeet(ctx, host, port).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the cluster", 20*time.Second, func() bool {
		for _, c := range clients {
			s, _ := c.ClusterInfo(ctx).Result()
			if !strings.Contains(s, "cluster_state:ok") || !strings.Contains(s, fmt.Sprintf("cluster_known_nodes:%d", n)) {
				return false
			}
			if sl, _ := c.ClusterSlots(ctx).Result(); len(sl) != n {
				return false
			}
		}
		return true
	})
	return addrs
}

// startBareClusterNode starts a redis-server with cluster mode on and no
// slot, and returns its address.
func startBareClusterNode(t *testing.T) string {
	t.Helper()
	// --dir is the server's working directory: the file goes there.
	addr, _ := startRedisServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	return addr
}

// moveSlot migrates the slot of key, with its keys, from its master to the
// other one of a two-node cluster, the way redis-cli --cluster reshard
// does, and returns clients of the old and the new master.
func moveSlot(t *testing.T, addrs []string, key string) (from, to *redis.Client) {
	t.Helper()
	ctx := context.Background()
	s := int(slot(key[strings.IndexByte(key, '{')+1 : strings.IndexByte(key, '}')]))
	from, to = redis.NewClient(&redis.Options{Addr: addrs[0]}), redis.NewClient(&redis.Options{Addr: addrs[1]})
	if s >= slots/2 {
		from, to = to, from
	}
	t.Cleanup(func() { _ = from.Close(); _ = to.Close() })
	fromID, _ := from.Do(ctx, "CLUSTER", "MYID").Text()
	toID, _ := to.Do(ctx, "CLUSTER", "MYID").Text()
	host, port, _ := net.SplitHostPort(to.Options().Addr)
	steps := []func() error{
		func() error { return to.Do(ctx, "CLUSTER", "SETSLOT", s, "IMPORTING", fromID).Err() },
		func() error { return from.Do(ctx, "CLUSTER", "SETSLOT", s, "MIGRATING", toID).Err() },
		func() error {
			keys, err := from.ClusterGetKeysInSlot(ctx, s, 100).Result()
			if err != nil || len(keys) == 0 {
				return err
			}
			args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
			for _, k := range keys {
				args = append(args, k)
			}
			return from.Do(ctx, args...).Err()
		},
		func() error { return to.Do(ctx, "CLUSTER", "SETSLOT", s, "NODE", toID).Err() },
		func() error { return from.Do(ctx, "CLUSTER", "SETSLOT", s, "NODE", toID).Err() },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("moving slot %d, step %d: %v", s, i, err)
		}
	}
	return from, to
}

// shardSubs returns how many clients of node are subscribed to the shard
// channel.
func shardSubs(node *redis.Client, channel string) int64 {
	n, _ := node.PubSubShardNumSub(context.Background(), channel).Result()
	return n[channel]
}
