package engine

import (
	"time"

	"github.com/redis/go-redis/v9"
)

// Config is what the engine needs. The adapter fills every field with its
// default (gormflight.Config documents them) before New: the engine does
// not guess, so a zero duration here means zero.
type Config struct {
	Redis  redis.UniversalClient
	Prefix string // of every Redis key and channel; holds no { or }

	LockExpiry        time.Duration // a loader's lock without extension; >= 30ms
	MaxWait           time.Duration // a flight's whole wait for others
	FailOnWaitTimeout bool          // past MaxWait: ErrWaitTimeout, not the database
	LoadTimeout       time.Duration // one database query, and an announcement's life
	RedisTimeout      time.Duration // each Redis operation
	FailClosed        bool          // Redis down: ErrRedisUnavailable, not the database

	MaxEntrySize int     // bytes; larger results are not stored; <= 0: no cap
	TTLJitter    float64 // fraction of the TTL added at random; <= 0: none
	MemoSize     int     // bytes of decoded entries kept; <= 0: no memo

	BreakerFailures int           // consecutive failures that open the breaker; <= 0: never opens
	BreakerCooldown time.Duration // before the open breaker lets a probe through

	Log   LogFunc   // nil: no logging
	Stats *Counters // nil: the engine counts into counters of its own
}
