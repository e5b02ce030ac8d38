package gormflight

import (
	"errors"
	"fmt"

	"github.com/gormflight/gormflight/internal/dialect"
	"github.com/gormflight/gormflight/internal/engine"
)

// Sentinel errors. Match them with errors.Is.
var (
	// ErrNoRedis is returned by New when Config.Redis is nil.
	ErrNoRedis = engine.ErrNoRedis

	// ErrInvalidConfig is wrapped by New's errors for out-of-range Config fields.
	ErrInvalidConfig = engine.ErrInvalidConfig

	// ErrInvalidTTL is added to the statement's errors when Cache is given a
	// TTL outside [MinTTL, MaxTTL]: Redis keeps expiries in whole
	// milliseconds and refuses an expiry of 0.
	ErrInvalidTTL = engine.ErrInvalidTTL

	// ErrWaitTimeout is returned to callers that waited Config.MaxWait for
	// another instance's result, when Config.FailOnWaitTimeout is set.
	ErrWaitTimeout = engine.ErrWaitTimeout

	// ErrRedisUnavailable is returned instead of querying the database when
	// Redis fails and Config.FailClosed is set. It wraps the Redis error.
	ErrRedisUnavailable = engine.ErrRedisUnavailable

	// ErrInvalidTableName is added to a statement's errors by Tables, and
	// returned by Invalidate, for a name that is not a table reference
	// ("my-view", "1abc"): read loosely, it would name another table, and
	// the writes it was meant to follow would not invalidate the query.
	ErrInvalidTableName = dialect.ErrInvalidTableName

	// ErrAlreadyInitialized is returned by Initialize when the plugin is
	// installed again on the *gorm.DB it serves, or on a second one: create
	// one Plugin per database handle. The connections gorm.io/plugin/dbresolver
	// opens for the handle it serves are accepted, with nothing installed.
	ErrAlreadyInitialized = errors.New("gormflight: plugin already initialized")

	// ErrUnsupportedDialect is returned by Initialize for a database whose
	// SQL the plugin cannot read: it would cache reads that no write
	// invalidates. PostgreSQL ("postgres"), MySQL and MariaDB ("mysql") and
	// SQLite ("sqlite") are supported.
	ErrUnsupportedDialect = dialect.ErrUnsupported
)

// errNotInitialized is what Invalidate answers before Initialize: table
// names are read in the dialect of the database the plugin serves.
var errNotInitialized = errors.New("gormflight: Invalidate before the plugin was installed with db.Use")

// errNotNew is what a zero Plugin answers: it has no Redis client.
var errNotNew = fmt.Errorf("%w: create the Plugin with New", ErrNoRedis)
