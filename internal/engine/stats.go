package engine

import "sync/atomic"

// Counters is the single place where the engine and its adapter count. The
// adapter's Stats snapshot reads it; observe.Stats documents each count.
type Counters struct {
	Hits, Misses, Loads, Shared, Waits, Fallbacks     atomic.Uint64
	RedisErrors, Uncached, Bypassed, DecodeErrors     atomic.Uint64
	LockTakeovers, WaitTimeouts                       atomic.Uint64
	Invalidations, InvalidationErrors                 atomic.Uint64
	BreakerOpens                                      atomic.Uint64
	RefreshesStarted, RefreshesSkipped, RefreshErrors atomic.Uint64
	StaleServes                                       atomic.Uint64
	LocalHits, LocalInvalidations, LocalResubscribes  atomic.Uint64
	Recoveries                                        atomic.Uint64
}
