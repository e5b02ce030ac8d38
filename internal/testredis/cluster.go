package testredis

import (
	"fmt"
	"os/exec"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of three masters with one replica each. Its
// nodes change roles as it fails over; the methods that take a master
// take the node that is master when they are called.
type Cluster struct {
	Nodes []*Node

	t      testing.TB
	paused map[string]*Node    // replicas paused by PauseReplica, by their master's ID
	padded map[string][]string // the padding PauseReplica wrote, by master's ID
}

// clusterArgs are the settings of every cluster node: a node timeout of
// one second so that a dead master is replaced within a few seconds, and
// replicas that may always be promoted, however long their link has been
// down (a replica paused by PauseReplica must still take over from a
// master killed meanwhile).
var clusterArgs = []string{
	"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
	"--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
	"--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0",
}

// StartCluster starts six nodes, makes them a cluster of three masters
// with a replica each (redis-cli --cluster create), and waits until every
// node reports cluster_state:ok, all agree on roles and slots, and every
// replica's link to its master is up. args are added to every node's
// command line.
func StartCluster(t testing.TB, args ...string) *Cluster {
	t.Helper()
	requireBinaries(t, "redis-server", "redis-cli")
	c := &Cluster{t: t, paused: make(map[string]*Node), padded: make(map[string][]string)}
	create := []string{"--cluster", "create"}
	for range 6 {
		// The bus port is chosen too: the default, port+10000, may be
		// taken or past 65535.
		nodeArgs := append([]string{"--cluster-port", freePort(t)}, clusterArgs...)
		n := startNode(t, freePort(t), append(nodeArgs, args...)...)
		c.Nodes = append(c.Nodes, n)
		create = append(create, n.Addr)
	}
	out, err := exec.Command("redis-cli", append(create, "--cluster-replicas", "1", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range c.Nodes {
		if n.ID, err = n.Do("CLUSTER", "MYID").Text(); err != nil {
			t.Fatalf("CLUSTER MYID on %s: %v", n.Addr, err)
		}
	}
	c.WaitHealthy()
	return c
}

// Options returns the options of a client of the cluster, which knows
// every node's address.
func (c *Cluster) Options() *redis.ClusterOptions {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return &redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true}
}

// Client returns a client of its own, as one application instance has,
// closed when t ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	rdb := redis.NewClusterClient(c.Options())
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Masters returns the masters, in the order of their first slot.
func (c *Cluster) Masters() []*Node {
	c.t.Helper()
	v := c.settledView("the cluster to agree")
	var ms []clusterNode
	for _, cn := range v {
		if cn.master && len(cn.slots) > 0 {
			ms = append(ms, cn)
		}
	}
	slices.SortFunc(ms, func(a, b clusterNode) int { return a.slots[0][0] - b.slots[0][0] })
	out := make([]*Node, len(ms))
	for i, cn := range ms {
		out[i] = c.node(cn.id)
	}
	return out
}

// MasterOf returns the master that owns key's slot.
func (c *Cluster) MasterOf(key string) *Node {
	c.t.Helper()
	slot, err := c.anyUp().Do("CLUSTER", "KEYSLOT", key).Int()
	if err != nil {
		c.t.Fatalf("CLUSTER KEYSLOT %q: %v", key, err)
	}
	for _, cn := range c.settledView("the cluster to agree") {
		if cn.master && cn.owns(slot) {
			return c.node(cn.id)
		}
	}
	c.t.Fatalf("no master owns slot %d of %q", slot, key)
	return nil
}

// ReplicaOf returns the running replica of master.
func (c *Cluster) ReplicaOf(master *Node) *Node {
	c.t.Helper()
	for _, cn := range c.settledView("the cluster to agree") {
		if !cn.master && cn.masterID == master.ID {
			return c.node(cn.id)
		}
	}
	c.t.Fatalf("master %s has no running replica", master.Addr)
	return nil
}

// Failover makes master's replica take over with CLUSTER FAILOVER (the
// coordinated failover, which loses no acknowledged write), waits until
// the roles have switched, every node agrees and the old master follows
// the new one, and returns the new master.
func (c *Cluster) Failover(master *Node) *Node {
	c.t.Helper()
	r := c.ReplicaOf(master)
	if err := r.Do("CLUSTER", "FAILOVER").Err(); err != nil {
		c.t.Fatalf("CLUSTER FAILOVER on %s: %v", r.Addr, err)
	}
	c.waitUntil(fmt.Sprintf("%s to take over from %s", r.Addr, master.Addr), func(v view) bool {
		return v[r.ID].master && len(v[r.ID].slots) > 0 && v[master.ID].masterID == r.ID
	})
	return r
}

// KillMaster kills master (SIGKILL), waits until its replica has been
// promoted and the cluster is ok again, and returns the new master. A
// replica paused by PauseReplica is resumed right after the kill, so that
// what the master took in meanwhile is lost, as in a crash before
// replication.
func (c *Cluster) KillMaster(master *Node) *Node {
	c.t.Helper()
	r := c.paused[master.ID]
	delete(c.paused, master.ID)
	if r == nil {
		r = c.ReplicaOf(master)
	}
	master.Kill()
	if r.Paused() {
		r.Resume()
	}
	c.waitUntil(fmt.Sprintf("%s to be promoted in place of the killed %s", r.Addr, master.Addr), func(v view) bool {
		return v[r.ID].master && len(v[r.ID].slots) > 0
	})
	c.unpad(master, r) // what reached r of it
	return r
}

// KillPubSub closes every pub/sub connection of every running node
// (CLIENT KILL TYPE pubsub), as a proxy or a node restart would, and
// returns how many it closed.
func (c *Cluster) KillPubSub() int64 {
	c.t.Helper()
	var total int64
	for _, n := range c.Nodes {
		if !n.Up() {
			continue
		}
		k, err := n.Do("CLIENT", "KILL", "TYPE", "pubsub").Int64()
		if err != nil {
			c.t.Fatalf("CLIENT KILL TYPE pubsub on %s: %v", n.Addr, err)
		}
		total += k
	}
	return total
}

// WaitHealthy waits until every running node reports cluster_state:ok,
// they agree on roles and slots, and every running replica's link to its
// master is up.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	c.waitUntil("the cluster to be healthy", func(view) bool { return true })
}
