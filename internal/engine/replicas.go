package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

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
// it, to the node that holds the table's keys, followed by INFO
// replication. It counts as done once the replicas acknowledged it, or when
// the node has fewer replicas than WaitReplicas and all of them did: a
// replica that is not connected cannot be promoted with the old value by
// Redis Cluster (its validity factor) or Sentinel.
//
// Except the replica that was just promoted: a master whose replica was
// made master (SENTINEL FAILOVER, a partition) has no replica left, and
// takes writes until its clients learn of the switch and it is demoted,
// which drops them. So a master is expected to keep the replicas it was
// seen with (under its replication ID, which a promotion changes): while
// it has fewer, for up to replicaGrace, what it takes is not acknowledged.
// After that the loss is taken as real (a replica that died), so that
// writes do not wait for it forever.
//
// What is not acknowledged failed (errUnreplicated). The write tries again
// (persist) for up to FailoverWait, so that once its client has switched to
// the new master the bump lands there before the write returns. If that
// time runs out, the writer's instance marks the tables dirty and retries
// the bump, with the same wait, until one is acknowledged; that retry, not
// the write, then ends the window described above.

// replicaGrace is how long a master that lost replicas it was seen with
// is taken for one that may have been replaced.
const replicaGrace = 5 * time.Second

// errUnreplicated is a bump or announcement that the node's replicas did
// not acknowledge in time.
var errUnreplicated = errors.New("gormflight: the Redis replicas did not acknowledge the write")

// replicated runs queue(pipe, i) for every copy i of a table's keys on a
// pipeline of the node that holds them, followed by WAIT and INFO
// replication, one round trip per node; it reports errUnreplicated when a
// node's replicas did not acknowledge. Only *redis.Client and *redis.ClusterClient can send WAIT
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
			errs[n] = e.waitReplicas(ctx, node, pipe, timeout)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitReplicas sends pipe, a pipeline of node, followed by WAIT and INFO
// replication, and reports errUnreplicated when the node's replicas did
// not acknowledge it. WAIT asks for as many replicas as the node was
// expected to have the last time: one with none (after a failover, until
// the old master is demoted) then costs no wait. When replicas came back,
// that WAIT asked for too few, and the write is not acknowledged: persist
// sends it again, with the WAIT it needs (a WAIT of its own would count
// what its own connection wrote, which is nothing).
func (e *Engine) waitReplicas(ctx context.Context, node *redis.Client, pipe redis.Pipeliner, timeout int64) error {
	asked := e.replicas.last(node, int64(e.cfg.WaitReplicas))
	wait := pipe.Do(ctx, "WAIT", asked, timeout)
	info := pipe.Info(ctx, "replication")
	if err := e.guard(func() error { _, err := pipe.Exec(ctx); return err }); err != nil {
		if c, ok := e.rdb.(*redis.ClusterClient); ok {
			c.ReloadState(ctx) // a moved slot or a failed node: learn the new map
		}
		return err
	}
	acked, _ := wait.Int64()
	want := min(int64(e.cfg.WaitReplicas), e.replicas.expected(info.Val(), time.Now()))
	e.replicas.remember(node, want)
	if acked < want {
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

// replicaWatch remembers how many replicas each master was seen with, by
// replication ID.
type replicaWatch struct {
	mu   sync.Mutex
	seen map[string]seenReplicas
	// wants: the replicas the last write through each node was expected
	// to have, by the address of the node's client.
	wants sync.Map // string -> int64
}

// last returns how many replicas the last write through node was expected
// to have, or def.
func (w *replicaWatch) last(node *redis.Client, def int64) int64 {
	if v, ok := w.wants.Load(node.Options().Addr); ok {
		return v.(int64)
	}
	return def
}

func (w *replicaWatch) remember(node *redis.Client, want int64) {
	w.wants.Store(node.Options().Addr, want)
}

type seenReplicas struct {
	most  int64     // replicas online, at most, since short was last zero
	short time.Time // since when it has had fewer; zero: it has not
	last  time.Time // when a write last went through it
}

// maxWatched bounds the replication IDs remembered; a new ID comes with a
// failover.
const maxWatched = 1024

// expected returns how many replicas must acknowledge what the master
// whose INFO replication is info took: those it has, or those it was seen
// with if it lost some less than replicaGrace ago. For a reply it cannot
// read, a huge number, so that only WAIT decides.
func (w *replicaWatch) expected(info string, now time.Time) int64 {
	role, id, online := parseReplication(info)
	if role != "master" || online < 0 {
		return 1 << 62
	}
	if id == "" {
		return online
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.seen[id]
	switch {
	case !ok || online >= s.most:
		s = seenReplicas{most: online}
	case s.short.IsZero():
		s.short = now
	case now.Sub(s.short) > replicaGrace:
		s = seenReplicas{most: online} // lost for good
	}
	s.last = now
	if !ok && len(w.seen) >= maxWatched {
		w.forget(now)
	}
	if w.seen == nil {
		w.seen = make(map[string]seenReplicas)
	}
	w.seen[id] = s
	return s.most
}

// forget makes room in seen: it drops the masters no write went through
// for replicaGrace (a master written to since it lost replicas is kept),
// or, if that frees too little, the half written to least recently.
func (w *replicaWatch) forget(now time.Time) {
	for id, s := range w.seen {
		if now.Sub(s.last) > replicaGrace {
			delete(w.seen, id)
		}
	}
	if len(w.seen) < maxWatched*3/4 {
		return
	}
	lasts := make([]time.Time, 0, len(w.seen))
	for _, s := range w.seen {
		lasts = append(lasts, s.last)
	}
	slices.SortFunc(lasts, time.Time.Compare)
	cut := lasts[len(lasts)/2]
	for id, s := range w.seen {
		if s.last.Before(cut) {
			delete(w.seen, id)
		}
	}
}

// parseReplication reads the role, the replication ID and the number of
// replicas online (-1 if it cannot tell) from an INFO replication reply.
// A replica still being synchronized (state=wait_bgsave or send_bulk, a
// demoted master that rejoins, a restarted replica) is listed and
// counted by connected_slaves, and cannot acknowledge anything yet: only
// the slaveN lines with state=online count.
func parseReplication(info string) (role, id string, online int64) {
	online = -1
	for line := range strings.SplitSeq(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch {
		case k == "role":
			role = v
		case k == "master_replid":
			id = v
		case k == "connected_slaves":
			online = max(online, 0)
		case strings.HasPrefix(k, "slave") && strings.Contains(","+v+",", ",state=online,"):
			online = max(online, 0) + 1
		}
	}
	return role, id, online
}

// redirected reports whether err is a node's answer that the keys are
// served elsewhere now, or not yet: what a Redis Cluster failover gives
// the pipeline sent to the old master's client (waitReplicas has the
// client reload the slot map).
func redirected(err error) bool {
	// Not ASK or TRYAGAIN: during a slot migration the node's client keeps
	// getting them until the migration ends.
	return replyStarts(err, "MOVED ", "READONLY ", "CLUSTERDOWN ")
}

// replyStarts reports whether err is an error reply from Redis that
// starts with one of prefixes.
func replyStarts(err error, prefixes ...string) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	for _, p := range prefixes {
		if strings.HasPrefix(re.Error(), p) {
			return true
		}
	}
	return false
}

// writeStand is how long a write may stand announced before its readers
// stop waiting for its end and read the database: LockExpiry, and with
// Config.WaitReplicas twice FailoverWait more, since such a write may send
// its announcement and then its bump again for up to FailoverWait each
// (persist).
func (e *Engine) writeStand() time.Duration {
	if e.cfg.WaitReplicas > 0 {
		return e.cfg.LockExpiry + 2*e.cfg.FailoverWait
	}
	return e.cfg.LockExpiry
}
