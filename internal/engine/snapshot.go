package engine

// Stats is a snapshot of an adapter's counters (a gormflight.Plugin's, an
// sqlflight.Connector's) since it was made. All counts are per instance of
// the application; add them up across instances for the cluster's view.
//
// Hits, Misses, Waits and Loads count flights (one per key at a time in an
// instance), Shared counts callers. A flight that misses and then waits for
// another instance counts one Miss, one Wait and, when the result arrives,
// one Hit; so Hits + Misses is not the number of flights.
type Stats struct {
	// Hits counts flights answered by an entry stored in Redis.
	Hits uint64
	// Misses counts flights that found no valid entry in Redis.
	Misses uint64
	// Loads counts queries this instance ran against the database on behalf
	// of the cache, including Fallbacks.
	Loads uint64
	// Shared counts callers served by a flight another caller in this
	// instance started.
	Shared uint64
	// Waits counts flights that waited for another instance's result.
	Waits uint64
	// Fallbacks counts queries run on the database without the cluster-wide
	// lock because Redis failed, the wait timed out or the plugin closed.
	Fallbacks uint64
	// RedisErrors counts failed Redis operations.
	RedisErrors uint64
	// Uncached counts results returned to callers but not stored: larger than
	// Config.MaxEntrySize, or holding a value the entry codec cannot keep.
	Uncached uint64
	// Bypassed counts opted-in queries that ran uncached: inside a
	// transaction, statements that write, run DDL, read the system catalogs
	// or change session state, arguments that cannot be hashed, and reads on
	// a pool whose sessions may have changed (see the README's Multi-tenant
	// applications).
	Bypassed uint64
	// DecodeErrors counts stored entries that could not be decoded or were
	// larger than Config.MaxEntrySize; each was treated as a miss.
	DecodeErrors uint64
	// LockTakeovers counts waiting flights that took the lock over from an
	// instance that stopped extending it.
	LockTakeovers uint64
	// WaitTimeouts counts flights that gave up waiting after Config.MaxWait.
	WaitTimeouts uint64
	// BreakerOpens counts how often the Redis circuit breaker opened.
	BreakerOpens uint64
	// Invalidations counts table generations bumped after writes.
	Invalidations uint64
	// InvalidationErrors counts writes whose invalidation failed (after one
	// retry); their tables are read uncached by this instance until a
	// background retry succeeds.
	InvalidationErrors uint64
	// RefreshesStarted counts background refreshes ahead of expiry this
	// instance started (Config.RefreshBeta).
	RefreshesStarted uint64
	// RefreshesSkipped counts refreshes that did not run or gave up before
	// their query: the cap on refreshes running was reached, another
	// instance held the key's lock, a write to its tables was committing,
	// or Redis failed.
	RefreshesSkipped uint64
	// RefreshErrors counts refreshes whose query failed or panicked; the
	// entry was served until it expired.
	RefreshErrors uint64
	// StaleServes counts hits served past their entry's TTL, within the
	// StaleFor of their query.
	StaleServes uint64
	// LocalHits counts queries answered from this instance's near cache
	// (Local), with no round trip.
	LocalHits uint64
	// LocalInvalidations counts near-cache entries found ended by a write
	// to one of their tables (pushed by another instance's bump, or made
	// through this instance) and dropped.
	LocalInvalidations uint64
	// LocalResubscribes counts how often the near cache lost its
	// subscription to invalidations: every local entry was then dropped,
	// and none served until it subscribed again.
	LocalResubscribes uint64
}

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
	}
}
