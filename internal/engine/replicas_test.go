package engine

import (
	"context"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A bump that reached the master and not its replica, and a failover that
// promotes the replica, which still holds the generation the old entry is
// stamped with. With WaitReplicas the replica's missing acknowledgement
// fails the bump, the writer's instance keeps retrying it, and the retry
// lands on the promoted replica. Without it the write's Invalidate
// succeeds, and before the recovery of restarted servers another instance
// then served the entry from before the write; now its lookup finds the
// promoted replica not recovered (restart.go), drops the generation of
// "*", and loads. Either way the old entry is never served again.
func TestLostBumpAfterFailover(t *testing.T) {
	for _, tc := range []struct {
		name     string
		replicas int
	}{
		{"without WaitReplicas", 0},
		{"with WaitReplicas", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := lostBump(t, tc.replicas); got != "new" {
				t.Errorf("read %q after the failover, want new: a stale read", got)
			}
		})
	}
}

// lostBump caches "old", cuts the replication link, writes, kills the
// master, promotes the replica, and returns what another instance then
// reads (a load returns "new").
func lostBump(t *testing.T, waitReplicas int) string {
	master, stopMaster := startRedisServer(t, "--repl-diskless-sync-delay", "0")
	link := startCuttableProxy(t, master)
	replica, _ := startRedisServer(t, "--replicaof", "127.0.0.1", link.port())
	ctx := context.Background()
	direct := replicaClient(t, replica)

	// The instances' client dials whichever node is the master now, as a
	// failover client would.
	var primary atomic.Value
	primary.Store(master)
	mk := func() *Engine {
		rdb := redis.NewClient(&redis.Options{Addr: master, ContextTimeoutEnabled: true, MaxRetries: -1,
			Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, primary.Load().(string))
			}})
		t.Cleanup(func() { _ = rdb.Close() })
		return engineOn(t, rdb, func(c *Config) {
			c.WaitReplicas = waitReplicas
			c.RedisTimeout = time.Second
			c.LockExpiry = 200 * time.Millisecond // the retrier tries every 50ms
			c.BreakerFailures = -1
		})
	}
	writer, reader := mk(), mk()
	loads := cachedOnReplica(t, writer, reader, direct)
	link.cut()
	a := writer.Announce(ctx, []string{"t"}, false)
	err := writer.Invalidate(ctx, []string{"t"}, a)
	// On a loaded machine the reply may come after RedisTimeout: a
	// timeout fails the bump as well.
	if waitReplicas > 0 && (err == nil || !writer.Dirty([]string{"t"})) {
		t.Fatalf("Invalidate with the replica cut off: %v, tables dirty: %v; want an error (errUnreplicated) and dirty tables", err, writer.Dirty([]string{"t"}))
	}
	if waitReplicas == 0 && err != nil {
		t.Fatalf("Invalidate: %v", err)
	}

	stopMaster()
	if err := direct.SlaveOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	primary.Store(replica)
	waitFor(t, "the writer's retried bump", 10*time.Second, func() bool { return !writer.Dirty([]string{"t"}) })
	return do(t, reader, testRequest("k", "new", loads))
}

// replicaClient returns a client of the replica at addr, once its link to
// its master is up.
func replicaClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	direct := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = direct.Close() })
	waitFor(t, "replication", 10*time.Second, func() bool {
		info, _ := direct.Info(context.Background(), "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	return direct
}

// cachedOnReplica has reader cache "old" for key "k" and waits until the
// entry is on the replica; then writer writes table "u" while the replica
// is connected: a bump that waits for it and succeeds, and the writer has
// seen the master with its replica. It returns the loads counter of "k".
func cachedOnReplica(t *testing.T, writer, reader *Engine, replica *redis.Client) *atomic.Int64 {
	t.Helper()
	ctx := context.Background()
	loads := new(atomic.Int64)
	if v := do(t, reader, testRequest("k", "old", loads)); v != "old" {
		t.Fatalf("first read %q, want old", v)
	}
	entry := newKeys(reader.cfg.Prefix, "k").entry
	waitFor(t, "the entry on the replica", 10*time.Second, func() bool { return replica.Exists(ctx, entry).Val() == 1 })
	if err := writer.Invalidate(ctx, []string{"u"}, writer.Announce(ctx, []string{"u"}, false)); err != nil {
		t.Fatalf("Invalidate with the replica connected: %v", err)
	}
	return loads
}

// startRedisServer starts a redis-server of the test's own and returns its
// address and a function that kills it (SIGKILL), also called at the end.
func startRedisServer(t *testing.T, args ...string) (string, func()) {
	t.Helper()
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
	args = append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}, args...)
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { _ = cmd.Process.Signal(syscall.SIGKILL); _ = cmd.Wait() }) }
	t.Cleanup(stop)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	waitFor(t, "redis-server", 5*time.Second, func() bool { return rdb.Ping(context.Background()).Err() == nil })
	return addr, stop
}

// cuttableProxy forwards TCP connections to a server; once cut, it drops
// what the server sends and keeps the connections open, so the server's
// replica stays connected and receives nothing: a partition of one
// direction, the way a replication link is lost without the master noticing.
type cuttableProxy struct {
	l   net.Listener
	off atomic.Bool
}

func startCuttableProxy(t *testing.T, to string) *cuttableProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttableProxy{l: l}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", to)
			if err != nil {
				_ = c.Close()
				continue
			}
			t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
			go func() { _, _ = io.Copy(s, c) }()
			go p.down(c, s)
		}
	}()
	return p
}

// down copies from the server to the client until cut, then discards.
func (p *cuttableProxy) down(c, s net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 && !p.off.Load() {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *cuttableProxy) cut() { p.off.Store(true) }

func (p *cuttableProxy) port() string {
	_, port, _ := net.SplitHostPort(p.l.Addr().String())
	return port
}
