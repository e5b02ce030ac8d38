package engine

import (
	"errors"
	"fmt"
)

// Errors a caller of Do can get besides its own query's. The gormflight
// package exports them under the same names.
var (
	// ErrNoRedis: an adapter's Config has no Redis client.
	ErrNoRedis = errors.New("gormflight: Config.Redis is required")
	// ErrInvalidTTL: a query's TTL (or StaleFor, Local) is out of range.
	ErrInvalidTTL = errors.New("gormflight: cache TTL out of range")
	// ErrWaitTimeout: the flight waited Config.MaxWait and
	// Config.FailOnWaitTimeout is set.
	ErrWaitTimeout = errors.New("gormflight: timed out waiting for another instance's result")

	// ErrRedisUnavailable wraps the Redis error when Config.FailClosed is set.
	ErrRedisUnavailable = errors.New("gormflight: Redis unavailable")

	// ErrInvalidConfig is wrapped by New's error for a Config it cannot use.
	ErrInvalidConfig = errors.New("gormflight: invalid config")

	// ErrInvalidRequest is Do's error for a Request without a hash, tables
	// or a load function, or with a TTL outside [MinTTL, MaxTTL], and what
	// an Engine not made by New answers.
	ErrInvalidRequest = errors.New("gormflight: invalid cache request")
)

// panicError carries a panic out of a shared flight so that every caller of
// the flight re-panics with the original value and the stack where it happened.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string {
	return fmt.Sprintf("gormflight: panic in shared query: %v\n\n%s", p.value, p.stack)
}

// Unwrap lets errors.Is and errors.As see an error that was the panic value.
func (p *panicError) Unwrap() error {
	err, _ := p.value.(error)
	return err
}
