package testredis

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name the sentinels monitor their master by.
const MasterName = "gft"

// Sentinel is a master and its replica, monitored by three sentinels
// (quorum 2) that fail over within a few seconds of the master's death.
type Sentinel struct {
	Data      [2]*Node // the master and the replica, as they started
	Sentinels []*Node

	t testing.TB
}

// sentinelConf is a sentinel's configuration: the master is down after
// one second without answers, and a failover may follow another after
// twice failover-timeout, six seconds.
const sentinelConf = `sentinel monitor %s 127.0.0.1 %s 2
sentinel down-after-milliseconds %[1]s 1000
sentinel failover-timeout %[1]s 3000
sentinel parallel-syncs %[1]s 1
`

// StartSentinel starts a master, its replica and three sentinels, and
// waits until the replica's link is up and every sentinel knows the
// replica and the two other sentinels.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	requireBinaries(t, "redis-server")
	data := []string{"--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"}
	mport := freePort(t)
	s := &Sentinel{t: t}
	s.Data[0] = startNode(t, mport, data...)
	s.Data[1] = startNode(t, freePort(t), append(data, "--replicaof", "127.0.0.1", mport)...)
	// Sentinels learn of replicas from the master's INFO, which they ask
	// for every ten seconds: the replica is connected before they start.
	s.Data[1].waitFor("the replica's link to its master", func() bool {
		role, up, _ := s.Data[1].role()
		return role == "slave" && up
	})
	for range 3 {
		// A sentinel rewrites its configuration file: one of its own.
		conf := filepath.Join(t.TempDir(), "sentinel.conf")
		if err := os.WriteFile(conf, fmt.Appendf(nil, sentinelConf, MasterName, mport), 0o600); err != nil {
			t.Fatal(err)
		}
		s.Sentinels = append(s.Sentinels, startNode(t, freePort(t), conf, "--sentinel"))
	}
	s.wait("the sentinels to know each other and the replica", func() error { return s.healthy(s.Data[0]) })
	return s
}

// Options returns the options of a redis.NewFailoverClient of the
// deployment.
func (s *Sentinel) Options() *redis.FailoverOptions {
	addrs := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		addrs[i] = n.Addr
	}
	return &redis.FailoverOptions{MasterName: MasterName, SentinelAddrs: addrs, ContextTimeoutEnabled: true}
}

// Client returns a failover client of its own, as one application
// instance has, closed when t ends.
func (s *Sentinel) Client(t testing.TB) *redis.Client {
	rdb := redis.NewFailoverClient(s.Options())
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Master returns the node every sentinel names as master.
func (s *Sentinel) Master() *Node {
	s.t.Helper()
	var m *Node
	var last error
	if !eventually(func() bool { m, last = s.master(); return last == nil }) {
		s.t.Fatalf("timed out after %v waiting for the sentinels to agree on a master: %v%s", WaitTimeout, last, s.outputs())
	}
	return m
}

// Failover forces a failover (SENTINEL FAILOVER), waits until every
// sentinel names the replica as master and it is master, and returns it.
// The old master keeps its role until the sentinels demote it: they do
// so only once they have seen it report itself master for eight seconds,
// at their next INFO of it, about ten seconds later (WaitHealthy waits
// for it).
func (s *Sentinel) Failover() *Node {
	s.t.Helper()
	old := s.Master()
	next := s.other(old)
	if err := s.Sentinels[0].Do("SENTINEL", "FAILOVER", MasterName).Err(); err != nil {
		s.t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	s.wait(fmt.Sprintf("%s to take over from %s", next.Addr, old.Addr), func() error { return s.promoted(next) })
	return next
}

// KillMaster waits until the master has a replica to promote
// (WaitHealthy), kills the master (SIGKILL), waits until the sentinels
// have promoted the replica, and returns the new master.
func (s *Sentinel) KillMaster() *Node {
	s.t.Helper()
	old := s.WaitHealthy()
	next := s.other(old)
	old.Kill()
	s.wait(fmt.Sprintf("%s to be promoted in place of the killed %s", next.Addr, old.Addr), func() error { return s.promoted(next) })
	return next
}

// WaitHealthy waits until the sentinels agree on a master, which is
// master; and, when the other data node runs, until it is the master's
// replica with its link up, and every sentinel knows it and the two other
// sentinels. It returns the master.
func (s *Sentinel) WaitHealthy() *Node {
	s.t.Helper()
	m := s.Master()
	s.wait("the master's replica", func() error { return s.healthy(m) })
	return m
}

func (s *Sentinel) other(n *Node) *Node {
	if s.Data[0] == n {
		return s.Data[1]
	}
	return s.Data[0]
}

// master returns the master every running sentinel names, or an error
// while they disagree.
func (s *Sentinel) master() (*Node, error) {
	var addr string
	for _, sn := range s.Sentinels {
		if !sn.Up() {
			continue
		}
		a, err := sn.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName).StringSlice()
		if err != nil || len(a) != 2 {
			return nil, fmt.Errorf("sentinel %s: master %v: %v", sn.Addr, a, err)
		}
		got := a[0] + ":" + a[1]
		if addr != "" && got != addr {
			return nil, fmt.Errorf("sentinel %s names %s, another %s", sn.Addr, got, addr)
		}
		addr = got
	}
	for _, n := range s.Data {
		if n.Addr == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("the sentinels name %s, not a node of the deployment", addr)
}

// wait waits until cond reports no error.
func (s *Sentinel) wait(what string, cond func() error) {
	s.t.Helper()
	var last error
	if !eventually(func() bool { last = cond(); return last == nil }) {
		s.t.Fatalf("timed out after %v waiting for %s: %v%s", WaitTimeout, what, last, s.outputs())
	}
}

// promoted reports an error unless every sentinel names master, and it
// is master.
func (s *Sentinel) promoted(master *Node) error {
	m, err := s.master()
	if err != nil {
		return err
	}
	if m != master {
		return fmt.Errorf("the sentinels name %s, not %s", m.Addr, master.Addr)
	}
	if role, _, err := master.role(); err != nil || role != "master" {
		return fmt.Errorf("%s: role %q: %v", master.Addr, role, err)
	}
	return nil
}

// healthy reports an error unless master is promoted and, when the other
// data node runs, it is master's replica with its link up, and every
// sentinel knows it and the two other sentinels.
func (s *Sentinel) healthy(master *Node) error {
	if err := s.promoted(master); err != nil {
		return err
	}
	replica := s.other(master)
	if !replica.Up() {
		return nil
	}
	if role, up, err := replica.role(); err != nil || role != "slave" || !up {
		return fmt.Errorf("%s: role %q, link up %v: %v", replica.Addr, role, up, err)
	}
	for _, sn := range s.Sentinels {
		if err := sentinelSees(sn, replica); err != nil {
			return err
		}
	}
	return nil
}

// sentinelSees reports an error unless sentinel sn knows the two other
// sentinels and replica, as a replica it would promote.
func sentinelSees(sn *Node, replica *Node) error {
	others, err := sn.Do("SENTINEL", "SENTINELS", MasterName).Slice()
	if err != nil || len(others) != 2 {
		return fmt.Errorf("sentinel %s knows %d other sentinels: %v", sn.Addr, len(others), err)
	}
	replicas, err := sn.Do("SENTINEL", "REPLICAS", MasterName).Slice()
	if err != nil {
		return fmt.Errorf("sentinel %s: SENTINEL REPLICAS: %w", sn.Addr, err)
	}
	for _, r := range replicas {
		f := fields(r)
		if f["name"] != replica.Addr {
			continue
		}
		// Its own INFO, which a sentinel reads every ten seconds, tells
		// whether it follows the master (healthy checks it); the flags
		// tell whether the sentinel would promote it.
		if flags := strings.Split(f["flags"], ","); !slices.Equal(flags, []string{"slave"}) {
			return fmt.Errorf("sentinel %s sees replica %s with flags %s", sn.Addr, replica.Addr, f["flags"])
		}
		return nil
	}
	return fmt.Errorf("sentinel %s does not know replica %s", sn.Addr, replica.Addr)
}

// fields reads a sentinel's description of an instance: a flat list of
// names and values (RESP2) or a map (RESP3).
func fields(v any) map[string]string {
	out := make(map[string]string)
	switch v := v.(type) {
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			out[fmt.Sprint(v[i])] = fmt.Sprint(v[i+1])
		}
	case map[any]any:
		for k, val := range v {
			out[fmt.Sprint(k)] = fmt.Sprint(val)
		}
	}
	return out
}

func (s *Sentinel) outputs() string {
	var b strings.Builder
	for _, n := range append(s.Data[:], s.Sentinels...) {
		fmt.Fprintf(&b, "\n--- %s, up %v:\n%s", n.Addr, n.Up(), n.Output())
	}
	return b.String()
}
