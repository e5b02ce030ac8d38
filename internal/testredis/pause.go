package testredis

import (
	"fmt"
	"strconv"
	"strings"
)

// PauseReplica stops master's replica (SIGSTOP) so that what the master
// takes in from then on does not reach the replica, and returns the
// replica. Stopping it is not enough: the master would still send the
// replication stream into the socket, and the replica, resumed, would
// read it from its kernel buffers even after the master died. So the
// master is first made to write padding (keys that expire in a minute, in
// one of its slots) until its link to the replica is full and it holds
// replication data in its own memory: everything after stays there.
func (c *Cluster) PauseReplica(master *Node) *Node {
	c.t.Helper()
	r := c.ReplicaOf(master)
	r.Pause()
	c.paused[master.ID] = r
	c.padded[master.ID] = c.fillLink(master)
	return r
}

// padSize is the size of one padding value: the link is full after a few
// of them (the kernel buffers of a loopback connection take up to tens of
// megabytes).
const padSize = 4 << 20

// fillLink writes padding on master until the master's output buffer to
// its replica holds more than one padding value, and returns the keys.
func (c *Cluster) fillLink(master *Node) []string {
	c.t.Helper()
	tag := c.tagOn(master)
	pad := strings.Repeat("p", padSize)
	var keys []string
	for i := 0; ; i++ {
		omem, err := replicaOutput(master)
		if err != nil {
			c.t.Fatal(err)
		}
		if omem > 2*padSize {
			return keys
		}
		if i == 64 {
			c.t.Fatalf("%s still sends its replica everything after %d MiB of padding", master.Addr, i*padSize>>20)
		}
		key := fmt.Sprintf("testredis:pad:{%s}:%d", tag, i)
		if err := master.Do("SET", key, pad, "PX", 60_000).Err(); err != nil {
			c.t.Fatalf("padding on %s: %v", master.Addr, err)
		}
		keys = append(keys, key)
	}
}

// tagOn returns a hash tag whose slot master owns.
func (c *Cluster) tagOn(master *Node) string {
	c.t.Helper()
	v := c.settledView("the cluster to agree")
	for i := 0; ; i++ {
		tag := strconv.Itoa(i)
		slot, err := master.Do("CLUSTER", "KEYSLOT", tag).Int()
		if err != nil {
			c.t.Fatalf("CLUSTER KEYSLOT on %s: %v", master.Addr, err)
		}
		if v[master.ID].owns(slot) {
			return tag
		}
	}
}

// replicaOutput returns how many bytes master holds for its replica
// (CLIENT LIST TYPE replica: omem).
func replicaOutput(master *Node) (int, error) {
	list, err := master.Do("CLIENT", "LIST", "TYPE", "replica").Text()
	if err != nil {
		return 0, fmt.Errorf("CLIENT LIST on %s: %w", master.Addr, err)
	}
	for _, f := range strings.Fields(list) {
		if v, ok := strings.CutPrefix(f, "omem="); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("%s has no replica connection: %q", master.Addr, list)
}

// unpad deletes the padding PauseReplica wrote on master's shard, through
// n, the shard's master now.
func (c *Cluster) unpad(master, n *Node) {
	c.t.Helper()
	keys := c.padded[master.ID]
	delete(c.padded, master.ID)
	for _, k := range keys {
		if err := n.Do("DEL", k).Err(); err != nil {
			c.t.Fatalf("deleting padding on %s: %v", n.Addr, err)
		}
	}
}

// ResumeReplica continues master's replica paused by PauseReplica, waits
// until it has caught up and the cluster is healthy, and deletes the
// padding.
func (c *Cluster) ResumeReplica(master *Node) {
	c.t.Helper()
	r := c.paused[master.ID]
	if r == nil {
		c.t.Fatalf("master %s has no paused replica", master.Addr)
	}
	delete(c.paused, master.ID)
	r.Resume()
	c.WaitHealthy()
	c.unpad(master, master)
}
