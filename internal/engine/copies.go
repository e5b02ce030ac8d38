package engine

import (
	"strconv"
	"sync"
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

// copyKeys returns copy i of table's keys.
func (e *Engine) copyKeys(table string, i int) tableKeys {
	gen := e.cfg.Prefix + ":g:{" + e.copyTag(table, i) + "}"
	return tableKeys{gen: gen, writers: gen + ":w", held: gen + ":h"}
}

// copyOf returns the copy of its tables' keys the query of hash reads.
func (e *Engine) copyOf(hash string) int {
	n := e.cfg.KeyCopies
	if n <= 1 {
		return 0
	}
	var h uint32
	for i := 0; i < len(hash); i++ {
		h = h*31 + uint32(hash[i])
	}
	return int(h % uint32(n))
}

// tagCache holds the tags of copies found so far: table -> []string.
var tagCache sync.Map

// copyTag returns the hash tag of copy i of table's keys: the table's name,
// or with KeyCopies > 1 the name and the first suffix |s (s = 0, 1, ...)
// whose slot lies in the copy's range. A table whose name ends like a
// copy's may share keys with another table's copy: their writes then
// invalidate each other's entries, which costs misses, never stale rows.
func (e *Engine) copyTag(table string, i int) string {
	n := e.cfg.KeyCopies
	if n <= 1 {
		return table
	}
	key := strconv.Itoa(n) + "\x00" + table
	if v, ok := tagCache.Load(key); ok {
		return v.([]string)[i]
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
	tagCache.Store(key, tags)
	return tags[i]
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
