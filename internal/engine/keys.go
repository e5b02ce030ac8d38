package engine

import (
	"bytes"
	"crypto/rand"
	"strconv"
	"strings"
	"time"

	"github.com/gormflight/gormflight/internal/rowcodec"
)

// keys are the Redis names of one query. The hash tag {hash} puts entry,
// lock and channel in one Redis Cluster slot.
type keys struct {
	entry string // <prefix>:{<hash>}:e2 — the stored result
	lock  string // <prefix>:{<hash>}:l — the loader's lock
	ready string // <prefix>:{<hash>}:r — the "ready" channel
}

// The entry's name carries the version of the stored format (storedFormat):
// a new format takes a new name, so that instances of two versions never
// read each other's entries, nor overwrite them in turn.
//
// The three names are slices of one string: one allocation on every request.
func newKeys(prefix, hash string) keys {
	names := [...]string{EntryKind, "l", readySuffix[1:]}
	base := len(prefix) + len(hash) + 4 // <prefix>:{<hash>}:
	var b strings.Builder
	b.Grow(3*base + len(names[0]) + len(names[1]) + len(names[2]))
	var ends [3]int
	for i, name := range names {
		b.WriteString(prefix)
		b.WriteString(":{")
		b.WriteString(hash)
		b.WriteString("}:")
		b.WriteString(name)
		ends[i] = b.Len()
	}
	all := b.String()
	return keys{entry: all[:ends[0]], lock: all[ends[0]:ends[1]], ready: all[ends[1]:]}
}

// readySuffix ends every ready channel, and no other channel.
const readySuffix = ":r"

// EntryKind is the last segment of an entry's key.
const EntryKind = "e" + storedFormat

// A table's keys share a hash tag, so the scripts that use several of them
// run in one Redis Cluster slot. With Config.KeyCopies > 1 a table has that
// many copies of them, in different slots (copies.go).

// GenKey is the Redis key of table's generation, <prefix>:g:{<table>}, or
// of its first copy.
func (e *Engine) GenKey(table string) string { return e.copyKeys(table, 0).gen }

// WritersKey is the key where writes to table announce themselves before
// they commit; their bump ends the announcement. (Its first copy.)
func (e *Engine) WritersKey(table string) string { return e.copyKeys(table, 0).writers }

// HeldKey is the key where writes whose commit cannot be followed announce
// themselves; the announcement ends with its lifetime. (Its first copy.)
func (e *Engine) HeldKey(table string) string { return e.copyKeys(table, 0).held }

// bumpChannel is where a table's bumps are pushed to the readers waiting
// for a write to end, and to the near caches: one for all its copies.
func (e *Engine) bumpChannel(table string) string { return e.cfg.Prefix + ":g:{" + table + "}:b" }

// StampSep ends the stamp, and then the meta, of a stored value.
const StampSep = '|'

// A stored value is "<stamp>|<meta>|<entry>".
//   - The stamp lists the generations of the entry's tables, read before its
//     query ran: ASCII, so that lua/fill.lua compares it without decoding.
//   - meta is comma-separated fields, of which readers take those they know
//     and ignore the rest: a tag of random characters, unique to this
//     stored value, the milliseconds its query took, and the milliseconds
//     the value is kept past its TTL to be served stale (StaleFor; absent
//     means 0).
//   - The stamp, the meta and both separators are the value's head: a
//     reader that holds the entry decoded (the memo) fetches only as many
//     bytes as the head to learn whether the value is still the same.
const storedFormat = "2"

// storedMeta is what the meta of a stored value tells. The tag is not
// kept: readers compare whole heads, which contain it.
type storedMeta struct {
	load  time.Duration // how long the query took
	stale time.Duration // how long the value is kept past its TTL
}

// EncodeStored returns the value stored for e under stamp, whose query took
// load, kept stale past its TTL for stale; limit bounds its size in bytes
// as rowcodec.Encode does.
func EncodeStored(stamp string, load, stale time.Duration, e *rowcodec.Entry, limit int) ([]byte, error) {
	tag := rand.Text()[:12] // 60 bits
	dst := make([]byte, 0, 256+len(stamp))
	dst = append(dst, stamp...)
	dst = append(dst, StampSep)
	dst = append(dst, tag...)
	dst = append(dst, ',')
	// In whole milliseconds, rounded up: a query of under a millisecond
	// still has a last stretch in which a hit refreshes it ahead of expiry.
	dst = strconv.AppendInt(dst, (load + time.Millisecond - 1).Milliseconds(), 10)
	if stale > 0 {
		dst = append(dst, ',')
		dst = strconv.AppendInt(dst, stale.Milliseconds(), 10)
	}
	dst = append(dst, StampSep)
	return rowcodec.Encode(dst, e, limit)
}

// SplitStored splits a stored value into its head ("<stamp>|<meta>|"), its
// stamp and its encoded entry. ok is false for a value not in the stored
// format.
func SplitStored(v []byte) (head, stamp, entry []byte, ok bool) {
	head, stamp, entry, _, ok = splitStored(v)
	return head, stamp, entry, ok
}

func splitStored(v []byte) (head, stamp, entry []byte, meta storedMeta, ok bool) {
	i := bytes.IndexByte(v, StampSep)
	if i < 0 {
		return nil, nil, nil, storedMeta{}, false
	}
	j := bytes.IndexByte(v[i+1:], StampSep)
	if j < 0 {
		return nil, nil, nil, storedMeta{}, false
	}
	j += i + 1
	if meta, ok = parseMeta(v[i+1 : j]); !ok {
		return nil, nil, nil, storedMeta{}, false
	}
	return v[:j+1], v[:i], v[j+1:], meta, true
}

// parseMeta reads the meta of a stored value: a non-empty tag, then the
// load and stale milliseconds (stale may be absent; later fields are
// ignored). It runs on every hit, so it does not allocate.
func parseMeta[T string | []byte](b T) (storedMeta, bool) {
	var ms [2]int64
	field, start := 0, 0
	for i := 0; i <= len(b); i++ {
		if i < len(b) && b[i] != ',' {
			continue
		}
		f := b[start:i]
		start = i + 1
		switch {
		case field == 0 && len(f) == 0:
			return storedMeta{}, false
		case field == 1 || field == 2:
			v, ok := parseMillis(f)
			if !ok {
				return storedMeta{}, false
			}
			ms[field-1] = v
		}
		field++
	}
	if field < 2 {
		return storedMeta{}, false
	}
	return storedMeta{load: time.Duration(ms[0]) * time.Millisecond, stale: time.Duration(ms[1]) * time.Millisecond}, true
}

// parseMillis reads a non-negative decimal of at most 15 digits (over
// 30,000 years of milliseconds).
func parseMillis[T string | []byte](b T) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var v int64
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}
