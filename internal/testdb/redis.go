package testdb

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartRedis starts a redis-server of the test's own on a free loopback
// port, without persistence, and waits until it answers PING. stop kills it
// (SIGKILL) and waits for it; restart starts it again on the same port, so
// clients reconnect to the same address. args are added to the server's
// command line (--maxmemory, --enable-debug-command). The server is stopped
// when the test ends. Everything destructive (killing, flushing,
// reconfiguring) happens to such a server, never to the shared Redis.
func StartRedis(t *testing.T, args ...string) (addr string, stop func(), restart func()) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		Unavailable(t, "redis-server binary", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	_ = l.Close()
	dir := t.TempDir()
	out := new(SyncBuffer)

	var mu sync.Mutex
	var cmd *exec.Cmd
	stop = func() {
		mu.Lock()
		defer mu.Unlock()
		if cmd == nil {
			return
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		cmd = nil
	}
	restart = func() {
		t.Helper()
		mu.Lock()
		if cmd != nil {
			mu.Unlock()
			t.Fatalf("redis-server on %s is already running", addr)
		}
		c := exec.Command("redis-server", append([]string{"--port", port, "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir}, args...)...)
		c.Stdout, c.Stderr = out, out
		if err := c.Start(); err != nil {
			mu.Unlock()
			t.Fatalf("starting redis-server: %v", err)
		}
		cmd = c
		mu.Unlock()
		AwaitPing(t, addr, out)
	}
	t.Cleanup(stop)
	restart()
	return addr, stop, restart
}

// AwaitPing waits until the redis-server at addr, just started, answers
// PING; out is its output, for the message if it never does.
func AwaitPing(t testing.TB, addr string, out fmt.Stringer) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	var err error
	answered := Eventually(20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err = rdb.Ping(ctx).Err()
		return err == nil
	})
	if !answered {
		t.Fatalf("redis-server on %s did not answer PING within 20s: %v\noutput:\n%s", addr, err, out)
	}
}

// SyncBuffer collects a child process's output; the process writes while
// the test reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *SyncBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.Write(p)
}

func (c *SyncBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

// Eventually polls cond until it holds and reports whether it did within
// timeout. It is for conditions a test cannot be notified of (a server
// starting, a caller blocked somewhere); a wait, never an assertion about
// timing.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// WaitFor waits until cond holds, failing the test after 30s: long enough
// for a loaded 2-core machine running -race, a guard against a hung test.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !Eventually(30*time.Second, cond) {
		t.Fatalf("timed out after 30s waiting for %s", what)
	}
}
