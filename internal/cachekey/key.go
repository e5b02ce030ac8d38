// Package cachekey turns one query into the name of its cache entry: a hash
// over the dialect, the scope, the SQL text, the typed argument values and
// the tables the entry depends on.
//
// Keys are typed: two arguments share an encoding only where every driver
// sends them alike, so a cached answer is never served for a query the
// database would answer differently. Keys are versioned: entries live in
// Redis across deploys and between processes of different releases, so the
// encoding is a documented format that only changes together with
// keyVersion, and a test pins it against keys recorded from released code.
//
// The package knows nothing of GORM or of any driver beyond the Go types
// they accept; it needs no services to test.
package cachekey

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync"
)

// ErrUnkeyable marks arguments that have no stable encoding. The caller runs
// such queries uncached instead of failing them.
var ErrUnkeyable = errors.New("gormflight: argument type cannot be part of a cache key")

// keyVersion starts every encoding. Bump it whenever the layout below changes
// so that old entries in Redis can never be mistaken for new ones.
//
// v2: nil byte slices, float32, typed values and list types are told apart.
const keyVersion = "gormflight/key/v2"

// Value tags. The numbers are part of the key format (see keyVersion): never
// renumber them, only add new ones.
const (
	tagNil      byte = 0x01
	tagBool     byte = 0x02 // + 1 byte, 0 or 1
	tagInt      byte = 0x03 // + 8 bytes big-endian two's complement
	tagUint     byte = 0x04 // + 8 bytes big-endian
	tagFloat    byte = 0x05 // float64 + 8 bytes big-endian IEEE 754 bits
	tagString   byte = 0x06 // + uvarint length + bytes
	tagBytes    byte = 0x07 // non-nil byte slice + uvarint length + bytes
	tagTime     byte = 0x08 // + 8 bytes Unix seconds, 4 bytes nanoseconds, zone name, 8 bytes offset, location name
	tagValuer   byte = 0x09 // + type + encoded result of Value() + raw state (see appendRaw) or 0x00
	tagNamed    byte = 0x0a // + name (uvarint length + bytes) + encoded value
	tagList     byte = 0x0b // + type + 0x00 for a nil slice, or 0x01 + uvarint count + encoded elements
	tagFloat32  byte = 0x0c // + 4 bytes big-endian IEEE 754 bits
	tagNilBytes byte = 0x0d // nil byte slice
	tagTyped    byte = 0x0e // + type + encoded underlying value
)

// maxDepth bounds recursion so that a self-referencing []any or a Valuer that
// returns itself yields an error instead of a stack overflow.
const maxDepth = 32

// maxPooledBuf keeps one query with huge arguments from pinning a large
// buffer in the pool forever.
const maxPooledBuf = 64 << 10

var keyBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Query returns the identifier of one query: the lower-case hex encoding of the first 16 bytes
// (128 bits) of SHA-256 over an unambiguous encoding of a format version, dialect, scope,
// SQL text, the typed argument values, and the declared table names. The scope is whatever
// else the answer depends on (the database and session the statement runs in).
//
// Layout (strings are uvarint length + bytes, counts are uvarint):
//
//	string(keyVersion) string(dialect) string(scope) string(query)
//	count(args) value(args[0]) ... count(tables) string(tables[0]) ...
//
// where each value is a tag byte followed by the payload documented at the tags.
//
// Two arguments may share an encoding only where every driver sends them
// identically. pgx, behind database/sql, receives arguments unconverted and
// picks its encoding by Go type: float32 is formatted with 32-bit precision,
// nil slices are NULL while empty ones are not, json.RawMessage is json where
// []byte is bytea, and methods (String, TextValue, Int64Value, Value, ...)
// override the underlying kind. So only types without methods are normalised:
// signed integers of every width share tagInt, unsigned share tagUint, named
// scalar types encode like their kind, and a pointer is its target. Any type
// with methods, and every slice or array type, is keyed by its name.
//
// An argument with no stable encoding gives an error that matches
// ErrUnkeyable; a Valuer whose Value fails gives that error. Query is safe
// for concurrent use.
func Query(dialect, scope, query string, args []any, tables []string) (string, error) {
	bp := keyBufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= maxPooledBuf {
			*bp = buf[:0]
			keyBufPool.Put(bp)
		}
	}()

	buf = appendString(buf, keyVersion)
	buf = appendString(buf, dialect)
	buf = appendString(buf, scope)
	buf = appendString(buf, query)
	buf = binary.AppendUvarint(buf, uint64(len(args)))
	for _, a := range args {
		var err error
		if buf, err = appendValue(buf, a, 0); err != nil {
			return "", err
		}
	}
	buf = binary.AppendUvarint(buf, uint64(len(tables)))
	for _, t := range tables {
		buf = appendString(buf, t)
	}

	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:16]), nil
}

// Recheck returns a function that reports whether args still give hash,
// the key Query made of them: a driver.Valuer among them may give another
// value each time it is asked.
func Recheck(hash, dialect, scope, query string, args []any, tables []string) func() bool {
	return func() bool {
		h, err := Query(dialect, scope, query, args, tables)
		return err == nil && h == hash
	}
}
