// Package observe is what gormflight and sqlflight tell about each cached
// statement, for tracing and metrics: how the cache answered it (Outcome),
// how long it waited for a load elsewhere and how long the database took.
// It also holds Stats, the counters both adapters keep, so that a metrics
// adapter can read them without importing GORM.
//
// The package has no dependency outside the standard library. Adapters to
// OpenTelemetry (github.com/gormflight/gormflight/extra/otel) and to
// Prometheus (github.com/gormflight/gormflight/extra/prometheus) are
// modules of their own, so that the library's dependencies stay as they
// are.
//
// Set an Observer in gormflight.Config or sqlflight.Config:
//
//	p, err := gormflight.New(gormflight.Config{Redis: rdb, Observer: obs})
package observe

import (
	"context"
	"time"
)

// Outcome is how the cache answered one cached statement.
type Outcome uint8

// The outcomes. The zero Outcome is none of them: String reports it as
// "unknown".
const (
	// Hit: this call's flight found a current entry in Redis.
	Hit Outcome = iota + 1
	// LocalHit: the call was served from this instance's near cache
	// (gormflight.Local), with no round trip.
	LocalHit
	// Shared: the call joined a flight another caller in this instance had
	// started, and took its result.
	Shared
	// Wait: the call's flight waited, for another instance's load (or a
	// write's end), then took the entry stored meanwhile.
	Wait
	// Load: the call's flight ran the query on the database under the
	// cluster-wide lock, and stored its result.
	Load
	// Fallback: the query ran on the database without the cluster-wide
	// lock, and its result was not stored, because Redis failed, the wait
	// ran out or the plugin was closing; with Config.FailClosed, the call
	// failed with ErrRedisUnavailable instead.
	Fallback
	// Bypass: the adapter ran the statement uncached although it asked for
	// the cache: inside a transaction, a statement that writes, reads the
	// catalog or changes the session, arguments no key can hold or that
	// changed after their key was computed, a session the adapter cannot
	// know, or a plugin that is closed.
	Bypass
)

var outcomeNames = [...]string{"unknown", "hit", "local_hit", "shared", "wait", "load", "fallback", "bypass"}

// String returns the outcome's lower-case name, as metrics label it:
// "hit", "local_hit", "shared", "wait", "load", "fallback" or "bypass".
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return outcomeNames[0]
}

// Outcomes returns every outcome, in the order of their declaration: what a
// metrics adapter creates a series for up front.
func Outcomes() []Outcome {
	return []Outcome{Hit, LocalHit, Shared, Wait, Load, Fallback, Bypass}
}

// Event is one cached statement, as the adapter reports it once its result
// is known.
type Event struct {
	// Outcome is how the cache answered.
	Outcome Outcome
	// Key is the statement's cache key: a hash, in hex, of the dialect,
	// the database and session, the SQL text, its arguments and its
	// tables. It never holds SQL text or argument values. It is empty when
	// the adapter bypassed the cache before it made the key.
	Key string
	// Tables are the tables the statement's rows depend on (those it reads
	// and those declared with Tables), as the generations are named; nil
	// when unknown. Shared with the adapter: do not modify them.
	Tables []string
	// Start is when the adapter took the statement.
	Start time.Time
	// Duration is how long the adapter took to have the statement's
	// result: until the rows are ready to be read (a hit's rows are in
	// memory; an uncached query's are read from the driver afterwards).
	Duration time.Duration
	// Wait is how long the call waited for a load by another instance
	// (Wait), by another caller's flight (Shared), or for a write's end.
	Wait time.Duration
	// Load is how long the database took, when this call's flight ran the
	// query (Load, Fallback); for Bypass, how long the uncached query took
	// to return its rows.
	Load time.Duration
	// Err is the statement's error, if any. A call that gave up (Err is its
	// context's error) reports what it was waiting for: Load or Fallback
	// while its flight ran the query, Wait otherwise. A database's error
	// message may quote values of the statement: an Observer that exports
	// events should not export it as it is.
	Err error
}

// Observer receives an Event per cached statement. The adapter calls
// Observe on the caller's goroutine, after the statement's result is
// known, from every goroutine that runs statements: it must be safe for
// concurrent use, and quick, since the statement's caller waits for it.
type Observer interface {
	Observe(ctx context.Context, ev Event)
}

// ObserverFunc is a function as an Observer.
type ObserverFunc func(ctx context.Context, ev Event)

// Observe calls f(ctx, ev).
func (f ObserverFunc) Observe(ctx context.Context, ev Event) { f(ctx, ev) }

// Join returns an Observer that passes each event to every non-nil
// observer in turn, for tracing and metrics at once.
func Join(observers ...Observer) Observer {
	var all multi
	for _, o := range observers {
		if o != nil {
			all = append(all, o)
		}
	}
	return all
}

type multi []Observer

func (m multi) Observe(ctx context.Context, ev Event) {
	for _, o := range m {
		o.Observe(ctx, ev)
	}
}
