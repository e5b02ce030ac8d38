package gormflight

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

// A stored value is "<stamp>|<entry>": the stamp is ASCII so that a Lua
// script can compare it without decoding the entry.
const stampSep = '|'

func encodeStored(stamp string, e *entry, limit int) ([]byte, error) {
	dst := make([]byte, 0, 256+len(stamp))
	dst = append(dst, stamp...)
	dst = append(dst, stampSep)
	return encodeEntry(dst, e, limit)
}
