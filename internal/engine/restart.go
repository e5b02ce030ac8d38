package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

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
// nor in the AOF, and does not pass it to replicas. So every lookup checks,
// in its round trip and on each node it reads, that the server knows the
// engine's mark, a script that does nothing and whose source names the
// prefix (queueMark). A server that knows it has had the prefix recovered
// since it started: its generations were dropped (a missing generation
// matches no stamp, and gen_read.lua starts it again above every value it
// had), and only then was the mark loaded, on the same connection. A
// server that does not has not: the lookup recovers it and looks again.
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

// queueMark queues the mark on the node of key. On one server (compact:
// every command on one connection) it asks whether the server knows the
// mark (SCRIPT EXISTS), which costs what an EXISTS does; running it
// (EVALSHA), which Redis Cluster routes by its key, costs a call of Lua,
// several times more. A slot is on one node: a mark per slot is enough.
func (e *Engine) queueMark(ctx context.Context, pipe redis.Pipeliner, c *lookupCmds, key string, compact bool) {
	if c.marks == nil {
		c.marks, c.marked = c.markBuf[:0], c.keyBuf[:0]
	}
	if compact {
		if len(c.marks) == 0 {
			if e.markBySha.Load() {
				c.marks = append(c.marks, pipe.EvalSha(ctx, e.mark.Hash(), nil))
			} else {
				c.marks = append(c.marks, pipe.ScriptExists(ctx, e.mark.Hash()))
			}
			c.marked = append(c.marked, key)
		}
		return
	}
	s := keySlot(key)
	for _, m := range c.marked {
		if keySlot(m) == s {
			return
		}
	}
	c.marks = append(c.marks, pipe.EvalSha(ctx, e.mark.Hash(), []string{key}))
	c.marked = append(c.marked, key)
}

// keySlot is the Redis Cluster slot of key: of its hash tag, the part
// between its first "{" and the first "}" after it when not empty.
func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return slot(key)
}

// unrecovered is the error of a lookup that met a server which has not
// had the prefix recovered since it started, on the nodes of keys.
type unrecovered struct{ keys []string }

func (u unrecovered) Error() string {
	return "gormflight: Redis restarted or failed over since the prefix was recovered there"
}

// RedisError makes it an answer from Redis (redis.Error): the connection
// is sound, and Redis did not fail.
func (unrecovered) RedisError() {}

// markRefused is an ACL's refusal of SCRIPT EXISTS (a user allowed to
// run scripts, not the SCRIPT command).
type markRefused struct{ error }

// markRefused reports whether err is markRefused, and then has the
// engine's marks run by EVALSHA, which such an ACL allows.
func (e *Engine) markRefused(err error) bool {
	if !errors.As(err, new(markRefused)) {
		return false
	}
	e.markBySha.Store(true)
	return true
}

// checkMarks returns unrecovered for marks Redis did not know, or the
// first other error they met.
func (c *lookupCmds) checkMarks() error {
	var u unrecovered
	for i, m := range c.marks {
		known := true
		switch m := m.(type) {
		case *redis.BoolSliceCmd: // SCRIPT EXISTS
			v, err := m.Result()
			if replyStarts(err, "NOPERM ") {
				return markRefused{err}
			}
			if err != nil {
				return err
			}
			known = len(v) == 1 && v[0]
		default: // EVALSHA
			switch err := m.Err(); {
			case replyStarts(err, "NOSCRIPT "):
				known = false
			case err != nil:
				return err
			}
		}
		if !known {
			u.keys = append(u.keys, c.marked[i])
		}
	}
	if len(u.keys) > 0 {
		return u
	}
	return nil
}

// recover drops the generations of the nodes of keys and loads the mark
// there. The callers of an instance that meet one node share its recovery,
// which the caller that started it does not cancel (each of its round
// trips has RedisTimeout); across instances, lua/recover.lua drops them
// once per run of the server.
func (e *Engine) recover(ctx context.Context, keys []string) error {
	ctx = context.WithoutCancel(ctx)
	cluster, ok := e.rdb.(*redis.ClusterClient)
	if !ok {
		_, err, _ := e.recoveries.Do("", func() (any, error) { return nil, e.recoverServer(ctx, e.rdb, "") })
		return err
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		kctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
		node, err := cluster.MasterForKey(kctx, k)
		cancel()
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

// recoverServer recovers a single server through c: every copy of the
// generation of "*" goes.
func (e *Engine) recoverServer(ctx context.Context, c redis.Cmdable, addr string) error {
	var gens []any
	for _, cp := range e.allCopies([]string{allTables}) {
		gens = append(gens, cp.keys.gen)
	}
	return e.finishRecovery(ctx, c, e.cfg.Prefix+":recovered", gens, addr)
}

// recoverNode recovers node, on one connection, which go-redis does not
// dial again once it broke: in one run of the node. On Redis Cluster
// every generation the node holds goes, found by SCAN in batches, so that
// the node goes on serving meanwhile; a batch that finds the node
// recovered by another instance ends the scan. A cluster client may also
// stand in front of a single server (redis.NewFailoverClusterClient),
// which is recovered as such.
func (e *Engine) recoverNode(ctx context.Context, node *redis.Client) error {
	conn := node.Conn()
	defer conn.Close()
	addr := node.Options().Addr
	run, err := e.nodeRunKey(ctx, conn)
	switch {
	case replyStarts(err, "ERR This instance has cluster support disabled"):
		return e.recoverServer(ctx, conn, addr)
	case err != nil:
		return err
	}
	match := globEscape(e.cfg.Prefix) + ":g:{*}"
	for cursor := uint64(0); ; {
		more, next, err := e.dropBatch(ctx, conn, run, cursor, match)
		if err != nil {
			return err
		}
		if cursor = next; !more || cursor == 0 {
			break
		}
	}
	return e.finishRecovery(ctx, conn, run, nil, addr)
}

// dropBatch drops the generations one SCAN step from cursor finds on
// conn's node. more is false when the node was found recovered.
func (e *Engine) dropBatch(ctx context.Context, conn *redis.Conn, run string, cursor uint64, match string) (more bool, next uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	keys, next, err := conn.ScanType(ctx, cursor, match, 1000, "string").Result()
	if err != nil || len(keys) == 0 {
		return true, next, err
	}
	args := make([]any, 1, 1+len(keys))
	args[0] = "drop"
	for _, k := range keys {
		args = append(args, k)
	}
	n, err := recoverScript.Eval(ctx, conn, []string{run}, args...).Int()
	return n == 1, next, err
}

// finishRecovery drops gens and records the server's run under run
// (lua/recover.lua), and then caches the mark, in one pipeline on c, so on
// one connection. The mark goes by SCRIPT LOAD, whose scripts Redis never
// evicts, and by EVAL, which caches it too and which an ACL that lets the
// plugin run its scripts allows when it refuses SCRIPT LOAD.
func (e *Engine) finishRecovery(ctx context.Context, c redis.Cmdable, run string, gens []any, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := c.Pipeline()
	dropped := recoverScript.Eval(ctx, pipe, []string{run}, append([]any{"done"}, gens...)...)
	pipe.ScriptLoad(ctx, e.markSrc) // its refusal is not a failure
	marked := pipe.Eval(ctx, e.markSrc, []string{run})
	_, _ = pipe.Exec(ctx)
	if err := errors.Join(dropped.Err(), marked.Err()); err != nil {
		return err
	}
	if n, _ := dropped.Int(); n == 1 {
		e.stats.Recoveries.Add(1)
		server := "Redis"
		if addr != "" {
			server = "Redis node " + addr
		}
		e.Warnf(LogRecovery, "gormflight: %s has not served prefix %q since it started (a new, restarted or promoted server): the entries stored before are stale", server, e.cfg.Prefix)
	}
	return nil
}

// nodeRunKey returns the key that records the run of conn's node that
// recovered the prefix: in the lowest slot the node serves, so that every
// instance that recovers the node reads the same key.
func (e *Engine) nodeRunKey(ctx context.Context, conn *redis.Conn) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
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
