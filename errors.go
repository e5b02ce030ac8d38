package gormflight

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is.
var (
	// ErrNoRedis is returned by New when Config.Redis is nil.
	ErrNoRedis = errors.New("gormflight: Config.Redis is required")

	// ErrInvalidConfig is wrapped by New's errors for out-of-range Config fields.
	ErrInvalidConfig = errors.New("gormflight: invalid config")

	// ErrInvalidTTL is added to the statement's errors when Cache is given a
	// TTL outside [MinTTL, MaxTTL]: Redis keeps expiries in whole
	// milliseconds and refuses an expiry of 0.
	ErrInvalidTTL = errors.New("gormflight: cache TTL out of range")

	// ErrWaitTimeout is returned to callers that waited Config.MaxWait for
	// another instance's result, when Config.FailOnWaitTimeout is set.
	ErrWaitTimeout = errors.New("gormflight: timed out waiting for another instance's result")

	// ErrRedisUnavailable is returned instead of querying the database when
	// Redis fails and Config.FailClosed is set. It wraps the Redis error.
	ErrRedisUnavailable = errors.New("gormflight: Redis unavailable")

	// ErrAlreadyInitialized is returned by Initialize when the plugin is
	// installed again on the *gorm.DB it serves, or on a second one: create
	// one Plugin per database handle. The connections gorm.io/plugin/dbresolver
	// opens for the handle it serves are accepted, with nothing installed.
	ErrAlreadyInitialized = errors.New("gormflight: plugin already initialized")

	// ErrUnsupportedDialect is returned by Initialize for a database whose
	// SQL the plugin cannot read: it would cache reads that no write
	// invalidates. Only PostgreSQL (dialect "postgres") is supported.
	ErrUnsupportedDialect = errors.New("gormflight: unsupported database dialect")
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
