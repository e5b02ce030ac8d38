package engine

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// A Redis that restarts from a dataset older than its last moments (an RDB
// snapshot, an everysec AOF that lost its last second, a backup) or whose
// replica is promoted before it received the last writes has lost the
// bumps of writes that returned since: the generations are those of before
// the writes, and so are the entries stamped with them, which would be
// served again. Nothing in the dataset tells such a Redis from one that
// has seen no write since; what it has lost and what it kept are alike.
//
// Its script cache tells: Redis (from 7.0) keeps it neither in snapshots
// nor in the AOF, and does not pass it to replicas. So every lookup runs,
// on each node it reads, the engine's mark, a script that does nothing and
// whose source names the prefix. A server that answers it has had the
// prefix recovered since it started: its generations were dropped (a
// missing generation matches no stamp, and gen_read.lua starts it again
// above every value it had), and only then was the mark loaded, on the
// same connection. A server that answers NOSCRIPT has not: the lookup
// recovers it and looks again.
//
// On one server (a *redis.Client, a failover client) every command of a
// lookup goes down one connection, so a lookup that found the mark read
// after the recovery; dropping the generation every entry depends on
// (sqlscan.AllTables, "*") is enough. On Redis Cluster a lookup reads
// several nodes in parallel: a recovery drops every generation of the
// node, so that what the lookup reads there after the mark is new.
//
// lua/recover.lua records the run (run_id) of the server it recovered:
// the instances that find the mark missing together drop the generations
// once, and a SCRIPT FLUSH, which loses no data, drops nothing. A restart,
// or a promotion, brings another run. The price: each makes every entry
// stale once (a node's, on Redis Cluster), as an empty Redis would.
//
// Not covered: Redis keeps the script cache through a master's demotion
// to a replica, so a master demoted without restarting that misses bumps
// as a replica and is promoted again keeps its mark (WaitReplicas covers
// it).

// markSource returns the source of the mark of prefix.
func markSource(prefix string) string {
	return "-- gormflight: " + strconv.Quote(prefix) +
		" was recovered on this server since it started (internal/engine/restart.go)\nreturn 1"
}

// queueMark queues the mark on the node of key.
func (e *Engine) queueMark(ctx context.Context, pipe redis.Pipeliner, c *lookupCmds, key string) {
	c.marks = append(c.marks, pipe.EvalSha(ctx, e.mark.Hash(), []string{key}))
	c.marked = append(c.marked, key)
}

// unrecovered is the error of a lookup that met a server which has not
// had the prefix recovered since it started, on the nodes of keys.
type unrecovered struct{ keys []string }

func (u unrecovered) Error() string {
	return "gormflight: Redis restarted or failed over since the prefix was recovered there"
}

// checkMarks returns unrecovered for marks Redis did not know, or the
// first other error they met.
func (c *lookupCmds) checkMarks() error {
	var u unrecovered
	for i, m := range c.marks {
		switch err := m.Err(); {
		case err == nil:
		case replyStarts(err, "NOSCRIPT "):
			u.keys = append(u.keys, c.marked[i])
		default:
			return err
		}
	}
	if len(u.keys) > 0 {
		return u
	}
	return nil
}

// recover drops the generations of the nodes of keys and loads the mark
// there. The callers of an instance that meet one node share its recovery,
// which the caller that started it does not cancel; across instances,
// lua/recover.lua drops them once per run of the server.
func (e *Engine) recover(ctx context.Context, keys []string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.RedisTimeout)
	defer cancel()
	cluster, ok := e.rdb.(*redis.ClusterClient)
	if !ok {
		_, err, _ := e.recoveries.Do("", func() (any, error) { return nil, e.recoverServer(ctx) })
		return err
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		node, err := cluster.MasterForKey(ctx, k)
		if err != nil {
			return err
		}
		addr := node.Options().Addr
		if seen[addr] {
			continue
		}
		seen[addr] = true
		if _, err, _ = e.recoveries.Do(addr, func() (any, error) { return nil, e.recoverNode(ctx, node) }); err != nil {
			return err
		}
	}
	return nil
}

// recoverServer recovers a single server: the generation of "*" (every
// copy) goes, then the mark is loaded, in one pipeline, so on one
// connection: in one run of the server.
func (e *Engine) recoverServer(ctx context.Context) error {
	args := []any{""}
	for _, c := range e.allCopies([]string{allTables}) {
		args = append(args, c.keys.gen)
	}
	pipe := e.rdb.Pipeline()
	dropped := recoverScript.Eval(ctx, pipe, []string{e.cfg.Prefix + ":recovered"}, args...)
	pipe.ScriptLoad(ctx, e.markSrc)
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	if n, _ := dropped.Int(); n == 1 {
		e.stats.Recoveries.Add(1)
		e.Warnf(LogRecovery, "gormflight: Redis has not served prefix %q since it started (a new, restarted or promoted server): every entry stored before is stale", e.cfg.Prefix)
	}
	return nil
}

// recoverNode recovers a node of Redis Cluster: every generation it holds
// goes, then the mark is loaded, on one connection, which go-redis does
// not dial again once it broke: in one run of the node.
func (e *Engine) recoverNode(ctx context.Context, node *redis.Client) error {
	conn := node.Conn()
	defer conn.Close()
	run, err := e.nodeRunKey(ctx, conn)
	if err != nil {
		return err
	}
	var dropped *redis.Cmd
	if _, err := conn.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		dropped = recoverScript.Eval(ctx, pipe, []string{run}, globEscape(e.cfg.Prefix)+":g:{*}")
		pipe.ScriptLoad(ctx, e.markSrc)
		return nil
	}); err != nil {
		return err
	}
	if n, _ := dropped.Int(); n == 1 {
		e.stats.Recoveries.Add(1)
		e.Warnf(LogRecovery, "gormflight: Redis node %s has not served prefix %q since it started (a new, restarted or promoted node): the entries of the tables it holds are stale", node.Options().Addr, e.cfg.Prefix)
	}
	return nil
}

// nodeRunKey returns the key that records the run of conn's node that
// recovered the prefix: in the lowest slot the node serves, so that every
// instance that recovers the node reads the same key.
func (e *Engine) nodeRunKey(ctx context.Context, conn *redis.Conn) (string, error) {
	var id *redis.StringCmd
	var ranges *redis.ClusterSlotsCmd
	if _, err := conn.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		id, ranges = pipe.ClusterMyID(ctx), pipe.ClusterSlots(ctx)
		return nil
	}); err != nil {
		return "", err
	}
	lowest := -1
	for _, r := range ranges.Val() {
		if len(r.Nodes) > 0 && r.Nodes[0].ID == id.Val() && (lowest < 0 || r.Start < lowest) {
			lowest = r.Start
		}
	}
	if lowest < 0 {
		return "", fmt.Errorf("gormflight: Redis node %s serves no slot", id.Val())
	}
	for i := 0; ; i++ {
		if tag := "r" + strconv.Itoa(i); int(slot(tag)) == lowest {
			return e.cfg.Prefix + ":recovered:{" + tag + "}", nil
		}
	}
}

// allTables is sqlscan.AllTables, which every entry depends on; the
// engine does not import sqlscan.
const allTables = "*"
