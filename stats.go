package gormflight

import (
	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/observe"
)

// Stats is a snapshot of a Plugin's counters since New (its fields are
// documented on observe.Stats, which the database/sql middleware's
// sqlflight.Stats shares). All counts are per Plugin (one application
// instance); add them up across instances for the cluster's view.
//
// Hits, Misses, Waits and Loads count flights (one per key at a time in an
// instance), Shared counts callers. A flight that misses and then waits for
// another instance counts one Miss, one Wait and, when the result arrives,
// one Hit; so Hits + Misses is not the number of flights.
type Stats = observe.Stats

// snapshot returns the values of c.
func snapshot(c *engine.Counters) Stats { return c.Snapshot() }
