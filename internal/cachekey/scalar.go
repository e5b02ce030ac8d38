package cachekey

import (
	"encoding/binary"
	"math"
	"time"
)

// This file holds the encodings of single values, each a tag byte and a
// payload of the layout documented at the tags in key.go.

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func appendInt(buf []byte, i int64) []byte {
	return binary.BigEndian.AppendUint64(append(buf, tagInt), uint64(i))
}

func appendUint(buf []byte, u uint64) []byte {
	return binary.BigEndian.AppendUint64(append(buf, tagUint), u)
}

// appendFloat uses the raw bits so that -0.0 and 0.0 stay apart and NaN
// encodes the same way every time (== would treat them otherwise).
func appendFloat(buf []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(buf, tagFloat), math.Float64bits(f))
}

// appendFloat32 keeps float32 apart from float64: pgx formats a float32 with
// 32-bit precision ("0.1"), the same number widened prints as
// "0.10000000149011612".
func appendFloat32(buf []byte, f float32) []byte {
	return binary.BigEndian.AppendUint32(append(buf, tagFloat32), math.Float32bits(f))
}

// appendBytes keeps a nil slice apart from an empty one: drivers send NULL
// for the first and an empty value for the second.
func appendBytes(buf []byte, b []byte) []byte {
	if b == nil {
		return append(buf, tagNilBytes)
	}
	buf = binary.AppendUvarint(append(buf, tagBytes), uint64(len(b)))
	return append(buf, b...)
}

func appendBool(buf []byte, b bool) []byte {
	if b {
		return append(buf, tagBool, 1)
	}
	return append(buf, tagBool, 0)
}

// appendTime includes the location because drivers may render the same
// instant differently per zone (e.g. into timestamp without time zone).
func appendTime(buf []byte, t time.Time) []byte {
	// Nothing below reads the monotonic clock; stripping it documents that it
	// must never influence the key.
	t = t.Round(0)
	name, offset := t.Zone()
	buf = append(buf, tagTime)
	buf = binary.BigEndian.AppendUint64(buf, uint64(t.Unix()))
	buf = binary.BigEndian.AppendUint32(buf, uint32(t.Nanosecond()))
	buf = appendString(buf, name)
	buf = binary.BigEndian.AppendUint64(buf, uint64(int64(offset)))
	return appendString(buf, t.Location().String())
}
