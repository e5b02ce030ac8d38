package engine

import "github.com/gormflight/gormflight/internal/rowcodec"

// keys are the Redis names of one query. The hash tag {hash} puts entry,
// lock and channel in one Redis Cluster slot.
type keys struct {
	entry string // <prefix>:{<hash>}:e — the stored result
	lock  string // <prefix>:{<hash>}:l — the loader's lock
	ready string // <prefix>:{<hash>}:r — the "ready" channel
}

func newKeys(prefix, hash string) keys {
	base := prefix + ":{" + hash + "}:"
	return keys{entry: base + "e", lock: base + "l", ready: base + "r"}
}

// A table's keys share a hash tag, so the scripts that use several of them
// run in one Redis Cluster slot.

// GenKey is the Redis key of table's generation: <prefix>:g:{<table>}.
func (e *Engine) GenKey(table string) string { return e.cfg.Prefix + ":g:{" + table + "}" }

// WritersKey is the key where writes to table announce themselves before
// they commit; their bump ends the announcement.
func (e *Engine) WritersKey(table string) string { return e.GenKey(table) + ":w" }

// HeldKey is the key where writes whose commit cannot be followed announce
// themselves; the announcement ends with its lifetime.
func (e *Engine) HeldKey(table string) string { return e.GenKey(table) + ":h" }

// bumpChannel is where a table's bumps are pushed to the readers waiting
// for a write to end.
func (e *Engine) bumpChannel(table string) string { return e.GenKey(table) + ":b" }

// StampSep ends the stamp of a stored value, "<stamp>|<entry>": the stamp
// is ASCII so that a Lua script can compare it without decoding the entry.
const StampSep = '|'

// EncodeStored returns the value stored for e under stamp; limit bounds its
// size in bytes as rowcodec.Encode does.
func EncodeStored(stamp string, e *rowcodec.Entry, limit int) ([]byte, error) {
	dst := make([]byte, 0, 256+len(stamp))
	dst = append(dst, stamp...)
	dst = append(dst, StampSep)
	return rowcodec.Encode(dst, e, limit)
}
