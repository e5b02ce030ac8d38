package engine

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A plain *redis.Client in front of a Redis whose cluster mode is on but
// which serves every slot itself (a single-node cluster; managed endpoints
// that proxy a cluster behind one address behave alike) refuses the
// compact lookup's EXISTS and MGET, whose keys are in many slots
// (CROSSSLOT): the first refusal turns compact lookups off, and the key is
// loaded once, as with per-table lookups.
func TestCompactLookupOffOnClusterNode(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("no redis-server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	_ = l.Close()
	dir := t.TempDir()
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--cluster-enabled", "yes", "--cluster-config-file", dir+"/nodes.conf")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	waitFor(t, "redis-server", 5*time.Second, func() bool { return rdb.Ping(ctx).Err() == nil })
	if err := rdb.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cluster ok", 10*time.Second, func() bool {
		s, _ := rdb.ClusterInfo(ctx).Result()
		return len(s) > 0 && strings.Contains(s, "cluster_state:ok")
	})

	cfg := testConfig(t, rdb)
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.Close() })
	if !e.compact.Load() {
		t.Fatal("a *redis.Client does not start with compact lookups")
	}
	var loads atomic.Int64
	req := testRequest("k", "x", &loads)
	req.Tables = []string{"a", "b"}
	for range 3 {
		do(t, e, req)
	}
	if n := loads.Load(); n != 1 || e.compact.Load() {
		t.Errorf("3 calls loaded %d times (want 1), compact lookups still on: %v; %+v", n, e.compact.Load(), e.stats)
	}
}
