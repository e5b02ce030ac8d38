package engine

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config is what the engine needs. The adapter fills every field with its
// default (SetDefaults; gormflight.Config documents them) before New, which
// refuses a Config without a Redis client or with a duration that is not
// positive.
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
	LocalSize    int     // bytes of the near cache (local.go); <= 0: none

	BreakerFailures int           // consecutive failures that open the breaker; <= 0: never opens
	BreakerCooldown time.Duration // before the open breaker lets a probe through

	// RefreshBeta scales how early a hit refreshes an entry before it
	// expires (refresh.go); <= 0: no refresh ahead. MaxRefreshes caps the
	// refreshes running at once in this instance; <= 0: no cap.
	RefreshBeta  float64
	MaxRefreshes int

	// WaitReplicas makes every announcement and bump wait until this many
	// replicas of the Redis node that holds the table's keys acknowledge
	// it (WAIT, bounded by half of RedisTimeout), so that a failover
	// cannot lose it (replicas.go); <= 0: no waiting.
	WaitReplicas int
	// FailoverWait is, with WaitReplicas, how long the operations that
	// fail go on trying while Redis may be failing over (failover.go):
	// announcements, bumps, lookups and lock tries. Default LockExpiry.
	FailoverWait time.Duration

	// KeyCopies is how many copies of each table's generation, writers
	// and held keys there are, in slots spread over Redis Cluster
	// (copies.go). Default 1. Every instance sharing a prefix must use
	// the same value.
	KeyCopies int

	Log   LogFunc   // nil: no logging
	Stats *Counters // nil: the engine counts into counters of its own
}

// SetDefaults fills every zero field with its default, as gormflight.Config
// documents them, and refuses a negative duration or a fraction that is not
// a number (ErrInvalidConfig). A negative count or size keeps its meaning:
// no limit, or the feature off.
func (c *Config) SetDefaults() error {
	if c.Prefix == "" {
		c.Prefix = "gormflight"
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"LockExpiry", &c.LockExpiry, 2 * time.Second},
		{"MaxWait", &c.MaxWait, 10 * time.Second},
		{"RedisTimeout", &c.RedisTimeout, 250 * time.Millisecond},
		{"LoadTimeout", &c.LoadTimeout, time.Minute},
		{"BreakerCooldown", &c.BreakerCooldown, time.Second},
		{"FailoverWait", &c.FailoverWait, 0}, // LockExpiry (defaultDerived)
	} {
		if *d.v < 0 {
			return fmt.Errorf("%w: %s must not be negative, got %v", ErrInvalidConfig, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, f := range []struct {
		name string
		v    *float64
		def  float64
	}{{"TTLJitter", &c.TTLJitter, 0.1}, {"RefreshBeta", &c.RefreshBeta, 1}} {
		if math.IsNaN(*f.v) || math.IsInf(*f.v, 0) {
			return fmt.Errorf("%w: %s must be a number, got %v", ErrInvalidConfig, f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	c.defaultDerived()
	for _, n := range []struct {
		v   *int
		def int
	}{{&c.MaxEntrySize, 1 << 20}, {&c.MemoSize, 8 << 20}, {&c.BreakerFailures, 5}, {&c.MaxRefreshes, 16}, {&c.LocalSize, 32 << 20}} {
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	return nil
}

// defaultDerived sets KeyCopies when it is not positive, and FailoverWait
// to LockExpiry when it is zero; New calls it too, since a Config need not
// have gone through SetDefaults.
func (c *Config) defaultDerived() {
	if c.KeyCopies <= 0 {
		c.KeyCopies = 1
	}
	if c.FailoverWait == 0 {
		c.FailoverWait = c.LockExpiry
	}
}

// DefaultClusterKeyCopies is the KeyCopies the README recommends on Redis
// Cluster. It is not the default there: every instance that shares a
// prefix must use the same KeyCopies (a write bumps the copies its own
// instance knows of), so a default that depended on the client's type, or
// changed between versions, would let instances disagree.
const DefaultClusterKeyCopies = 16

// validate reports the first field New cannot work with.
func (c *Config) validate() error {
	if c.Redis == nil {
		return fmt.Errorf("%w: no Redis client", ErrInvalidConfig)
	}
	if strings.ContainsAny(c.Prefix, "{}") {
		return fmt.Errorf("%w: Prefix %q must not contain { or }: they would change the cluster hash slot", ErrInvalidConfig, c.Prefix)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"LockExpiry", c.LockExpiry}, {"MaxWait", c.MaxWait}, {"LoadTimeout", c.LoadTimeout},
		{"RedisTimeout", c.RedisTimeout}, {"BreakerCooldown", c.BreakerCooldown},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%w: %s must be positive, got %v", ErrInvalidConfig, d.name, d.v)
		}
	}
	if c.WaitReplicas > 0 {
		switch c.Redis.(type) {
		case *redis.Client, *redis.ClusterClient:
		default:
			return fmt.Errorf("%w: WaitReplicas needs a *redis.Client, a failover client or a *redis.ClusterClient, got %T", ErrInvalidConfig, c.Redis)
		}
	}
	if c.FailoverWait < 0 {
		return fmt.Errorf("%w: FailoverWait must not be negative, got %v", ErrInvalidConfig, c.FailoverWait)
	}
	if c.LockExpiry < MinLockExpiry {
		return fmt.Errorf("%w: LockExpiry %v is too short to extend", ErrInvalidConfig, c.LockExpiry)
	}
	return nil
}

// MinLockExpiry is the shortest LockExpiry: the holder extends its lock
// every third of it, and each extension is a Redis round trip.
const MinLockExpiry = 30 * time.Millisecond
