package engine

import "github.com/gormflight/gormflight/observe"

// Stats is a snapshot of an adapter's counters; observe.Stats documents
// each count.
type Stats = observe.Stats

// Snapshot returns the counters' values.
func (c *Counters) Snapshot() Stats {
	return Stats{
		Hits:          c.Hits.Load(),
		Misses:        c.Misses.Load(),
		Loads:         c.Loads.Load(),
		Shared:        c.Shared.Load(),
		Waits:         c.Waits.Load(),
		Fallbacks:     c.Fallbacks.Load(),
		RedisErrors:   c.RedisErrors.Load(),
		Uncached:      c.Uncached.Load(),
		Bypassed:      c.Bypassed.Load(),
		DecodeErrors:  c.DecodeErrors.Load(),
		LockTakeovers: c.LockTakeovers.Load(),
		WaitTimeouts:  c.WaitTimeouts.Load(),

		BreakerOpens:       c.BreakerOpens.Load(),
		Invalidations:      c.Invalidations.Load(),
		InvalidationErrors: c.InvalidationErrors.Load(),
		RefreshesStarted:   c.RefreshesStarted.Load(),
		RefreshesSkipped:   c.RefreshesSkipped.Load(),
		RefreshErrors:      c.RefreshErrors.Load(),
		StaleServes:        c.StaleServes.Load(),
		LocalHits:          c.LocalHits.Load(),
		LocalInvalidations: c.LocalInvalidations.Load(),
		LocalResubscribes:  c.LocalResubscribes.Load(),
		Recoveries:         c.Recoveries.Load(),
	}
}
