package engine

import (
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// Every Redis operation of the engine goes through guard: a circuit breaker
// (gobreaker) that opens after Config.BreakerFailures consecutive failures,
// so that while Redis is down or black-holed queries stop paying a timeout
// each and go straight to the database. After Config.BreakerCooldown one
// probe is let through; its success closes the breaker and caching resumes.

func newBreaker(cfg Config, stats *Counters, log *logger) *gobreaker.CircuitBreaker[struct{}] {
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "gormflight-redis",
		MaxRequests: 1,
		Timeout:     cfg.BreakerCooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return cfg.BreakerFailures > 0 && uint64(c.ConsecutiveFailures) >= uint64(cfg.BreakerFailures)
		},
		// A Redis out of memory still answers: it must stay reachable, so
		// that a refused bump can delete generations (see engine.drop).
		// So does a node that redirects a write during a failover: the
		// write sends its bump again until it lands (persist), which an
		// open breaker would cut short.
		IsSuccessful: func(err error) bool { return err == nil || benign(err) || OutOfMemory(err) || redirected(err) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			level := LevelWarn
			if to == gobreaker.StateOpen {
				stats.BreakerOpens.Add(1)
				level = LevelError // caching has stopped: worth a page
			}
			log.always(level, "gormflight: Redis circuit breaker %s -> %s", from, to)
		},
	})
}

// benign errors are answers, not failures: a missing key, a lock another
// instance holds.
func benign(err error) bool {
	return errors.Is(err, redis.Nil) || errors.Is(err, errLockTaken)
}

// answered reports whether err is Redis refusing a command (out of memory,
// an ACL, a read-only replica, a script error) rather than a failure to
// reach it: the connection stays usable.
func answered(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}

// OutOfMemory reports whether err is Redis refusing a command because it
// is over maxmemory (with maxmemory-policy noeviction, Redis's default).
func OutOfMemory(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "OOM ")
}

// guard runs one Redis operation through the breaker and counts its
// failure. While the breaker is open it fails at once with an error wrapping
// gobreaker.ErrOpenState.
func (e *Engine) guard(op func() error) error {
	_, err := e.breaker.Execute(func() (struct{}, error) { return struct{}{}, op() })
	if (err == nil || benign(err)) && e.down.Load() {
		e.down.Store(false) // Redis is back: failovers are waited for again
	}
	if err != nil && !benign(err) && !refused(err) && !redirected(err) {
		e.stats.RedisErrors.Add(1)
		if !answered(err) { // an error reply leaves the connection usable
			e.warm.failed() // a timeout or I/O error cost it: replace it
		}
		e.Warnf(LogRedis, "gormflight: Redis operation failed, answering from the database: %v", err)
	}
	return err
}

// refused reports whether err is the breaker refusing the operation, not a
// Redis failure: nothing was sent, so there is nothing to count or log
// (the breaker's opening was).
func refused(err error) bool {
	return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
}

// redisUnavailable is the error a fail-closed plugin returns instead of querying
// the database without Redis.
func redisUnavailable(err error) error {
	return fmt.Errorf("%w: %w", ErrRedisUnavailable, err)
}
