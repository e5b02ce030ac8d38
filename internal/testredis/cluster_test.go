package testredis

import (
	"context"
	"testing"
)

// A write that reached a master but not its paused replica is lost when
// the master is killed; the killed master, restarted, follows the new
// one, and takes its place back through a coordinated failover. A replica
// resumed catches up. KillPubSub closes the subscribers' connections.
func TestClusterFailures(t *testing.T) {
	c := StartCluster(t)
	rdb := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	const key = "testredis:k"
	if err := rdb.Set(ctx, key, "replicated", 0).Err(); err != nil {
		t.Fatal(err)
	}
	m := c.MasterOf(key)
	if n, err := m.Do("WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT: %d replicas acknowledged, %v", n, err)
	}
	r := c.PauseReplica(m)
	if err := rdb.Set(ctx, key, "lost", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := c.KillMaster(m); got != r {
		t.Fatalf("%s was promoted, want the replica %s", got.Addr, r.Addr)
	}
	// A client learns that a slot moved from a MOVED reply, or from a
	// reload every ten seconds; a dead or paused node sends no MOVED. A
	// new client starts with the cluster as it is.
	rdb = c.Client(t)
	if v, err := rdb.Get(ctx, key).Result(); err != nil || v != "replicated" {
		t.Errorf("after the kill the key is %q (%v), want the value the replica had", v, err)
	}

	m.Restart()
	c.WaitHealthy()
	if got := c.ReplicaOf(r); got != m {
		t.Fatalf("the restarted %s is not the replica of %s (%s is)", m.Addr, r.Addr, got.Addr)
	}
	if got := c.Failover(r); got != m || c.MasterOf(key) != m {
		t.Errorf("the failover promoted %s, want %s owning %s", got.Addr, m.Addr, key)
	}

	rdb = c.Client(t)
	c.PauseReplica(m)
	if err := rdb.Set(ctx, key, "caught up", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.ResumeReplica(m)
	if n, err := m.Do("WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Errorf("WAIT after ResumeReplica: %d replicas acknowledged, %v", n, err)
	}

	ps := rdb.Subscribe(ctx, "testredis:ch")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // the confirmation
		t.Fatal(err)
	}
	if n := c.KillPubSub(); n != 1 {
		t.Errorf("KillPubSub closed %d connections, want the subscriber's 1", n)
	}
}
