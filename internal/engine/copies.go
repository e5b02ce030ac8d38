package engine

import (
	"context"
	"fmt"
	"strconv"
)

// Copies of a table's keys, in slots spread over Redis Cluster
// (Config.KeyCopies).
//
// Every hit reads the generation, writers and held keys of each of its
// tables. With one copy, those of a popular table sit in one slot, so one
// shard serves most of the table's hit traffic however many shards there
// are. With n copies, a query reads copy (its hash mod n), so the queries of
// one table spread over n slots; a write announces and bumps every copy
// before it returns, so whichever copy a query reads shows the write. Each
// copy keeps its own history of generations, and an entry's stamp is read
// from, and compared with, the copy of its own query only.
//
// The copies' slots are spread evenly over the 16384 slots (copy i's slot
// in the i-th n-th of them), so that shards owning even ranges of slots, as
// redis-cli --cluster create assigns them, get even shares. Copy 0 of a
// single copy is the table's plain key; every instance derives the same
// names.

// tableKeys are one copy of a table's keys.
type tableKeys struct {
	gen, writers, held string
}

// copyKeys returns copy i of table's keys. An engine keeps the keys of up
// to maxKeptTables tables (every hit asks for them; finding the copies'
// tags takes a few dozen CRC16s); beyond, it computes them each time, so
// an application with countless table names does not grow without bound.
func (e *Engine) copyKeys(table string, i int) tableKeys {
	if v, ok := e.tableKeys.Load(table); ok {
		return v.([]tableKeys)[i]
	}
	tags := copyTags(table, e.cfg.KeyCopies)
	all := make([]tableKeys, len(tags))
	for c, tag := range tags {
		gen := e.cfg.Prefix + ":g:{" + tag + "}"
		all[c] = tableKeys{gen: gen, writers: gen + ":w", held: gen + ":h"}
	}
	if e.keptTables.Add(1) <= maxKeptTables {
		e.tableKeys.Store(table, all)
	}
	return all[i]
}

// maxKeptTables bounds the tables whose keys an engine keeps.
const maxKeptTables = 4096

// copyOf returns the copy of its tables' keys the query of hash reads:
// the copy whose slots are the n-th of the slot space the query's entry
// (hash tag: hash) lies in. Shards own even ranges of slots, so the
// copies a query reads are usually on the node of its entry, and its
// lookup is one pipeline to one node; and since entries spread evenly over
// the slots, reads spread evenly over the copies.
func (e *Engine) copyOf(hash string) int {
	n := e.cfg.KeyCopies
	if n <= 1 {
		return 0
	}
	return int(slot(hash)) * n / slots
}

// copyTags returns the hash tags of the n copies of table's keys: the
// table's name alone for one copy; for more, copy i's is the name and the
// first suffix |s (s = 0, 1, ...) whose slot lies in the i-th n-th of the
// slots. A table whose name ends like a copy's may share keys with
// another table's copy: their writes then invalidate each other's entries,
// which costs misses, never stale rows.
func copyTags(table string, n int) []string {
	if n <= 1 {
		return []string{table}
	}
	tags := make([]string, n)
	found := 0
	for s := 0; found < n; s++ {
		tag := table + "|" + strconv.Itoa(s)
		r := int(slot(tag)) * n / slots
		if tags[r] == "" {
			tags[r] = tag
			found++
		}
	}
	return tags
}

// slots is how many hash slots Redis Cluster has.
const slots = 16384

// slot is Redis Cluster's hash slot of a key with no braces: CRC16
// (XMODEM) of it, modulo 16384.
func slot(key string) uint16 {
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % slots
}

// checkKeyCopies records KeyCopies in Redis for the prefix, the first
// instance to start deciding, and refuses a Config whose KeyCopies differs
// from the one recorded: a write bumps only the copies its own instance
// knows of, so instances that disagree would serve rows from before each
// other's writes. A Redis that does not answer is not a reason to refuse
// (New does not need Redis); the record then waits for the next instance.
func checkKeyCopies(cfg Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.RedisTimeout)
	defer cancel()
	key := cfg.Prefix + ":keycopies"
	pipe := cfg.Redis.Pipeline()
	pipe.SetNX(ctx, key, cfg.KeyCopies, 0)
	got := pipe.Get(ctx, key)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil
	}
	if v, err := got.Int(); err == nil && v != cfg.KeyCopies {
		return fmt.Errorf("%w: KeyCopies is %d, but instances with the prefix %q use %d; every instance must use the same (to change it, stop them all and delete %s)",
			ErrInvalidConfig, cfg.KeyCopies, cfg.Prefix, v, key)
	}
	return nil
}
