package engine

import (
	"context"
	"net"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A server is recovered once per run, whichever instances find its mark
// missing: a SCRIPT FLUSH, which loses no data, costs no entry; a restart
// from a snapshot taken before a write drops "*" once, and the entry from
// before the write is never served.
func TestRecoveryOncePerRun(t *testing.T) {
	dir := t.TempDir()
	addr, kill := startRedisServer(t, "--dir", dir)
	_, port, _ := net.SplitHostPort(addr)
	client := func() *redis.Client {
		rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	ra, rb, direct := client(), client(), client()
	a, b := engineOn(t, ra), engineOn(t, rb)
	ctx := context.Background()
	var loads atomic.Int64
	read := func(e *Engine, v string) string { return do(t, e, testRequest("k", v, &loads)) }
	recoveries := func() uint64 { return a.stats.Recoveries.Load() + b.stats.Recoveries.Load() }

	if v := read(a, "old"); v != "old" {
		t.Fatalf("first read %q", v)
	}
	if v := read(b, "new"); v != "old" || loads.Load() != 1 || recoveries() != 1 {
		t.Fatalf("b read %q with %d loads and %d recoveries; want a's entry, old, 1 load and 1 recovery (a's, of a new server)",
			v, loads.Load(), recoveries())
	}

	if err := direct.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if v := read(a, "new"); v != "old" || loads.Load() != 1 || recoveries() != 1 {
		t.Errorf("after SCRIPT FLUSH a read %q with %d loads and %d recoveries; want the entry, old, and no new load or recovery",
			v, loads.Load(), recoveries())
	}

	if err := direct.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.Invalidate(ctx, []string{"t"}, a.Announce(ctx, []string{"t"}, false)); err != nil {
		t.Fatal(err)
	}
	kill()
	// The same server again, on its port and its dir: it loads the snapshot.
	again := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Process.Kill(); _ = again.Wait() })
	for _, c := range []*redis.Client{ra, rb} { // their connections died with the server
		waitFor(t, "the clients to reach the restarted server", 10*time.Second, func() bool { return c.Ping(ctx).Err() == nil })
	}
	if n, err := direct.Exists(ctx, newKeys(a.cfg.Prefix, "k").entry).Result(); err != nil || n != 1 {
		t.Fatalf("the snapshot's entry: %d, %v", n, err)
	}
	if v := read(b, "new"); v != "new" || loads.Load() != 2 || recoveries() != 2 {
		t.Errorf("after the restart b read %q with %d loads and %d recoveries; want a load, new, and the restarted server recovered: 2 and 2",
			v, loads.Load(), recoveries())
	}
	if v := read(a, "newer"); v != "new" || loads.Load() != 2 || recoveries() != 2 {
		t.Errorf("then a read %q with %d loads and %d recoveries; want b's entry, new, and no new load or recovery",
			v, loads.Load(), recoveries())
	}
}

// A cluster client may stand in front of a single server (what
// redis.NewFailoverClusterClient builds): it is recovered as a single
// server, and then serves hits. Before, its recovery asked the server for
// its cluster slots, which it refused, and every read went to the
// database.
func TestRecoveryClusterClientOnOneServer(t *testing.T) {
	addr, _ := startRedisServer(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		ContextTimeoutEnabled: true,
		ClusterSlots: func(context.Context) ([]redis.ClusterSlot, error) {
			return []redis.ClusterSlot{{Start: 0, End: 16383, Nodes: []redis.ClusterNode{{Addr: addr}}}}, nil
		},
	})
	t.Cleanup(func() { _ = rdb.Close() })
	e := engineOn(t, rdb)
	var loads atomic.Int64
	for range 5 {
		if v := do(t, e, testRequest("k", "x", &loads)); v != "x" {
			t.Fatalf("read %q", v)
		}
	}
	if n, f, r := loads.Load(), e.stats.Fallbacks.Load(), e.stats.Recoveries.Load(); n != 1 || f != 0 || r != 1 {
		t.Errorf("5 reads: %d loads, %d fallbacks, %d recoveries; want 1, 0 and 1", n, f, r)
	}
}

// A user whose ACL lets the plugin run its scripts and refuses SCRIPT
// LOAD, or the whole SCRIPT command, still has the server recovered and
// served: the mark is cached by EVAL, and checked by EVALSHA once SCRIPT
// EXISTS was refused. Before, every lookup failed, and every read went to
// the database.
func TestRecoveryWithoutScriptCommand(t *testing.T) {
	for _, refused := range []string{"-script|load", "-script"} {
		t.Run(refused, func(t *testing.T) { recoveryWithACL(t, refused) })
	}
}

func recoveryWithACL(t *testing.T, refused string) {
	addr, _ := startRedisServer(t)
	admin := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = admin.Close() })
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", refused).Err(); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, Username: "app", Password: "pw", ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	e := engineOn(t, rdb)
	var loads atomic.Int64
	for i := range 6 {
		if i == 3 {
			if err := admin.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if v := do(t, e, testRequest("k", "x", &loads)); v != "x" {
			t.Fatalf("read %q", v)
		}
	}
	if n, f, r := loads.Load(), e.stats.Fallbacks.Load(), e.stats.Recoveries.Load(); n != 1 || f != 0 || r != 1 {
		t.Errorf("6 reads around a SCRIPT FLUSH: %d loads, %d fallbacks, %d recoveries; want 1, 0 and 1", n, f, r)
	}
}

// keySlot is Redis's own slot of a key (CLUSTER KEYSLOT).
func TestKeySlot(t *testing.T) {
	addr := startClusterNode(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	for _, k := range []string{"a", "p:{h}:e2", "p:g:{t}", "p:g:{t}:w", "{}x", "x{}", "p:{}:{a}", "{a", "a}", "p:{{a}}", "p:g:{\"Odd\".\"N\"}"} {
		want, err := rdb.ClusterKeySlot(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := keySlot(k); int64(got) != want {
			t.Errorf("keySlot(%q) = %d, Redis says %d", k, got, want)
		}
	}
}

// A recovery that takes longer than RedisTimeout (a Redis Cluster node
// with many keys to scan, each step within it) ends with a lookup that
// has a RedisTimeout of its own. Before, that lookup ran out of time at
// once, and the read went to the database.
func TestRecoveryLongerThanRedisTimeout(t *testing.T) {
	addr := startClusterNode(t)
	ctx := context.Background()
	direct := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: time.Minute})
	t.Cleanup(func() { _ = direct.Close() })
	// Other keys on the node, which the recovery's SCAN goes through.
	if err := direct.Eval(ctx, "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'other:' .. i, 'x') end return 1", nil, 400000).Err(); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	e := engineOn(t, rdb, func(c *Config) { c.RedisTimeout = 150 * time.Millisecond })
	var loads atomic.Int64
	start := time.Now()
	if v := do(t, e, testRequest("k", "x", &loads)); v != "x" {
		t.Fatalf("read %q", v)
	}
	took := time.Since(start)
	if f, r := e.stats.Fallbacks.Load(), e.stats.Recoveries.Load(); f != 0 || r != 1 {
		t.Errorf("a read that recovered the node (in %v): %d fallbacks, %d recoveries; want 0 and 1", took, f, r)
	}
	if took < e.cfg.RedisTimeout {
		t.Logf("the recovery took %v, within RedisTimeout: the test did not exercise a long one", took)
	}
}
