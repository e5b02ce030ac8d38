package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Announcements and bumps that survive a failover (Config.WaitReplicas).
//
// Redis replicates asynchronously. A bump that reached a master and not its
// replica is lost when the replica is promoted: the table's generation goes
// back to the value it had before the write, and the entries stamped with
// it, filled before the write, are served again although the write
// returned. (Generations never repeat, since gen_bump.lua takes them from
// the clock, so a lost bump can only revive entries older than itself, and
// a later bump ends them: the danger is the window until then.)
//
// So each announcement and bump ends with WAIT on the connection that sent
// it, to the node that holds the table's keys, followed by ROLE. It counts
// as done once the replicas acknowledged it, or when the node has fewer
// replicas than WaitReplicas and all of them did: a replica that is not
// connected cannot be promoted with the old value by Redis Cluster (its
// validity factor) or Sentinel. Otherwise the bump failed (errUnreplicated):
// the writer's instance marks the tables dirty and retries the bump, with
// the same wait, until one is acknowledged; that retry, not the write, ends
// the window described above.

// errUnreplicated is a bump or announcement that the node's replicas did
// not acknowledge in time.
var errUnreplicated = errors.New("gormflight: the Redis replicas did not acknowledge the write")

// replicated runs queue(pipe, i) for every copy i of a table's keys on a
// pipeline of the node that holds them, followed by WAIT and ROLE, one round
// trip per node; it reports errUnreplicated when a node's replicas did not
// acknowledge. Only *redis.Client and *redis.ClusterClient can send WAIT
// to a given node (validate refuses the others).
func (e *Engine) replicated(ctx context.Context, copies []tableCopy, queue func(pipe redis.Pipeliner, i int)) error {
	nodes, groups, err := e.byNode(ctx, copies)
	if err != nil {
		return err
	}
	timeout := max(e.cfg.RedisTimeout.Milliseconds()/2, 1)
	// The nodes in parallel: each WAIT may take its whole timeout, and one
	// after the other they would overrun the caller's deadline.
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for n, node := range nodes {
		wg.Go(func() {
			pipe := node.Pipeline()
			for _, i := range groups[n] {
				queue(pipe, i)
			}
			errs[n] = e.waitReplicas(ctx, pipe, timeout)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitReplicas sends pipe followed by WAIT and ROLE, and reports
// errUnreplicated when the node's replicas did not acknowledge it.
func (e *Engine) waitReplicas(ctx context.Context, pipe redis.Pipeliner, timeout int64) error {
	wait := pipe.Do(ctx, "WAIT", e.cfg.WaitReplicas, timeout)
	role := pipe.Do(ctx, "ROLE")
	if err := e.guard(func() error { _, err := pipe.Exec(ctx); return err }); err != nil {
		if c, ok := e.rdb.(*redis.ClusterClient); ok {
			c.ReloadState(ctx) // a moved slot or a failed node: learn the new map
		}
		return err
	}
	acked, _ := wait.Int64()
	if want := min(int64(e.cfg.WaitReplicas), replicasOf(role.Val())); acked < want {
		e.stats.RedisErrors.Add(1)
		return fmt.Errorf("%w: %d of %d", errUnreplicated, acked, want)
	}
	return nil
}

// byNode groups the indices of copies by the client of the node that holds
// them.
func (e *Engine) byNode(ctx context.Context, copies []tableCopy) ([]*redis.Client, [][]int, error) {
	c, ok := e.rdb.(*redis.ClusterClient)
	if !ok {
		all := make([]int, len(copies))
		for i := range all {
			all[i] = i
		}
		return []*redis.Client{e.rdb.(*redis.Client)}, [][]int{all}, nil
	}
	var nodes []*redis.Client
	var groups [][]int
	index := make(map[*redis.Client]int)
	for i, cp := range copies {
		node, err := c.MasterForKey(ctx, cp.keys.gen)
		if err != nil {
			e.stats.RedisErrors.Add(1)
			return nil, nil, err
		}
		n, seen := index[node]
		if !seen {
			n = len(nodes)
			index[node] = n
			nodes = append(nodes, node)
			groups = append(groups, nil)
		}
		groups[n] = append(groups[n], i)
	}
	return nodes, groups, nil
}

// replicasOf returns how many replicas a master's ROLE reply lists, or a
// huge number for a reply it cannot read, so that only WAIT decides.
func replicasOf(role any) int64 {
	r, ok := role.([]any)
	if !ok || len(r) < 3 || r[0] != "master" {
		return 1 << 62
	}
	replicas, ok := r[2].([]any)
	if !ok {
		return 1 << 62
	}
	return int64(len(replicas))
}
