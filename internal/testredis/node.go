// Package testredis starts Redis deployments of a test's own: a Redis
// Cluster of three masters with a replica each (StartCluster) and a master
// with a replica watched by three sentinels (StartSentinel). Every server
// is a redis-server process on free loopback ports, with its files in
// t.TempDir(), stopped when the test ends. The deployments fail over,
// lose masters and drop connections for real, so that the tests can do
// to them what production does; nothing here touches the shared Redis.
// Only tests import it.
package testredis

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/testdb"
	"github.com/redis/go-redis/v9"
)

// WaitTimeout bounds every wait of the package for a deployment to reach
// a state (started, failed over, agreed): long enough for a loaded 2-core
// CI machine running -race. It guards against a hung test; it is not a
// timing assertion.
const WaitTimeout = 60 * time.Second

// Node is one redis-server process. Its address stays the same across
// Kill and Restart, so that clients find it again.
type Node struct {
	Addr string
	ID   string // the cluster node ID; "" outside a cluster

	t     testing.TB
	args  []string
	out   *output
	admin *redis.Client // for the package's own commands, never retried

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	paused bool
}

// output collects a process's output; the process writes while the test
// reads.
type output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// requireBinaries skips the test (fails it when services are required)
// without the Redis binaries.
func requireBinaries(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			testdb.Unavailable(t, name+" binary", err)
		}
	}
}

// handedOut are the ports freePort returned: a port just closed may come
// back from the next Listen, before the server meant for it has started.
var handedOut sync.Map

// freePort returns a loopback port nothing listens on right now, and that
// it never returned before.
func freePort(t testing.TB) string {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		_ = l.Close()
		if _, taken := handedOut.LoadOrStore(port, true); !taken {
			return port
		}
	}
}

// startNode starts redis-server with args, after which port, bind and
// dir are added, and waits until it answers PING. It is killed when the
// test ends.
func startNode(t testing.TB, port string, args ...string) *Node {
	t.Helper()
	dir := t.TempDir()
	n := &Node{
		Addr: net.JoinHostPort("127.0.0.1", port),
		t:    t,
		args: append(args, "--port", port, "--bind", "127.0.0.1", "--dir", dir),
		out:  new(output),
	}
	n.admin = redis.NewClient(&redis.Options{
		Addr: n.Addr, MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, PoolSize: 2,
	})
	t.Cleanup(func() {
		n.Kill()
		_ = n.admin.Close()
	})
	n.Restart()
	return n
}

// Restart starts the node's process again, on the same port and with the
// same files (a cluster node keeps its ID and rejoins as it left), and
// waits until it answers PING.
func (n *Node) Restart() {
	n.t.Helper()
	n.mu.Lock()
	if n.cmd != nil {
		n.mu.Unlock()
		n.t.Fatalf("redis-server on %s is already running", n.Addr)
	}
	cmd := exec.Command("redis-server", n.args...)
	cmd.Stdout, cmd.Stderr = n.out, n.out
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		n.t.Fatalf("starting redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	n.cmd, n.exited, n.paused = cmd, exited, false
	n.mu.Unlock()
	n.waitFor("redis-server on "+n.Addr+" to answer PING", func() bool {
		select {
		case <-exited:
			n.t.Fatalf("redis-server on %s exited:\n%s", n.Addr, n.out)
		default:
		}
		return n.admin.Ping(context.Background()).Err() == nil
	})
}

// Kill sends SIGKILL, as a crash would, and waits for the process to be
// gone. A killed node stays down until Restart.
func (n *Node) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	n.cmd, n.paused = nil, false
}

// Pause stops the process (SIGSTOP): it keeps its connections but answers
// nothing, as a server frozen by its machine would.
func (n *Node) Pause() { n.signal(syscall.SIGSTOP, true) }

// Resume continues a paused process (SIGCONT).
func (n *Node) Resume() { n.signal(syscall.SIGCONT, false) }

func (n *Node) signal(sig syscall.Signal, paused bool) {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		n.t.Fatalf("redis-server on %s is not running", n.Addr)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		n.t.Fatalf("%v to redis-server on %s: %v", sig, n.Addr, err)
	}
	n.paused = paused
}

// Paused reports whether the process is paused.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// Up reports whether the process runs and is not paused.
func (n *Node) Up() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil && !n.paused
}

// Output is what the process has written, for failure messages.
func (n *Node) Output() string { return n.out.String() }

// Do runs a command on this node alone, as an administrator would.
func (n *Node) Do(args ...any) *redis.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return n.admin.Do(ctx, args...)
}

// Info returns the fields of INFO section.
func (n *Node) Info(section string) (map[string]string, error) {
	s, err := n.Do("INFO", section).Text()
	if err != nil {
		return nil, err
	}
	fields := make(map[string]string)
	for _, line := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			fields[k] = v
		}
	}
	return fields, nil
}

// CommandCalls returns how many times the node has run each command since
// it started (INFO commandstats), by lower-case command name.
func (n *Node) CommandCalls() (map[string]int64, error) {
	fields, err := n.Info("commandstats")
	if err != nil {
		return nil, err
	}
	calls := make(map[string]int64)
	for k, v := range fields {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		// calls=12,usec=34,...
		first, _, _ := strings.Cut(v, ",")
		c, err := strconv.ParseInt(strings.TrimPrefix(first, "calls="), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("INFO commandstats: %s:%s: %w", k, v, err)
		}
		calls[name] = c
	}
	return calls, nil
}

// role returns "master" or "slave", as INFO replication reports it, and
// for a replica whether its link to its master is up.
func (n *Node) role() (role string, linkUp bool, err error) {
	f, err := n.Info("replication")
	if err != nil {
		return "", false, err
	}
	return f["role"], f["master_link_status"] == "up", nil
}

// waitFor polls cond until it holds, failing the test after WaitTimeout
// with the node's output.
func (n *Node) waitFor(what string, cond func() bool) {
	n.t.Helper()
	if !eventually(cond) {
		n.t.Fatalf("timed out after %v waiting for %s; output of %s:\n%s", WaitTimeout, what, n.Addr, n.Output())
	}
}

// eventually polls cond until it holds and reports whether it did within
// WaitTimeout.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
