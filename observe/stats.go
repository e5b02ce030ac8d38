package observe

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
	// Config.MaxEntrySize, holding a value the entry codec cannot keep, or
	// read with arguments (a pointer, a driver.Valuer) that changed after
	// the query's key was computed from them.
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
	// Recoveries counts Redis servers (Redis Cluster: nodes) found to have
	// restarted, failed over or flushed their scripts since the prefix was
	// last recovered there: their generations were dropped, so every entry
	// they held (on a single server, every entry) was stale once.
	Recoveries uint64
}

// Counter is one count of a Stats, named for metrics.
type Counter struct {
	// Name is the field's name in snake case ("lock_takeovers"); metrics
	// adapters prefix it ("gormflight_lock_takeovers_total").
	Name string
	// Help says what it counts, in one sentence.
	Help  string
	Value uint64
}

// counters names every field of Stats, in their order; a test checks that
// none is missing.
var counters = [...]struct {
	name, help string
	get        func(*Stats) uint64
}{
	{"hits", "Flights answered by an entry stored in Redis.", func(s *Stats) uint64 { return s.Hits }},
	{"misses", "Flights that found no valid entry in Redis.", func(s *Stats) uint64 { return s.Misses }},
	{"loads", "Queries run on the database on behalf of the cache, fallbacks included.", func(s *Stats) uint64 { return s.Loads }},
	{"shared", "Callers served by a flight another caller in the instance started.", func(s *Stats) uint64 { return s.Shared }},
	{"waits", "Flights that waited for another instance's result or a write's end.", func(s *Stats) uint64 { return s.Waits }},
	{"fallbacks", "Queries run on the database without the cluster-wide lock (Redis failed, wait timed out, plugin closed).", func(s *Stats) uint64 { return s.Fallbacks }},
	{"redis_errors", "Failed Redis operations.", func(s *Stats) uint64 { return s.RedisErrors }},
	{"uncached", "Results returned to callers but not stored (too large, not encodable, or arguments changed after keying).", func(s *Stats) uint64 { return s.Uncached }},
	{"bypassed", "Opted-in queries that ran uncached (transactions, writes, catalog reads, unknown sessions).", func(s *Stats) uint64 { return s.Bypassed }},
	{"decode_errors", "Stored entries that could not be decoded, each treated as a miss.", func(s *Stats) uint64 { return s.DecodeErrors }},
	{"lock_takeovers", "Waiting flights that took the lock over from an instance that stopped extending it.", func(s *Stats) uint64 { return s.LockTakeovers }},
	{"wait_timeouts", "Flights that gave up waiting after MaxWait.", func(s *Stats) uint64 { return s.WaitTimeouts }},
	{"breaker_opens", "Times the Redis circuit breaker opened.", func(s *Stats) uint64 { return s.BreakerOpens }},
	{"invalidations", "Table generations bumped after writes.", func(s *Stats) uint64 { return s.Invalidations }},
	{"invalidation_errors", "Writes whose invalidation failed; their tables are read uncached until a retry succeeds.", func(s *Stats) uint64 { return s.InvalidationErrors }},
	{"refreshes_started", "Background refreshes ahead of expiry started.", func(s *Stats) uint64 { return s.RefreshesStarted }},
	{"refreshes_skipped", "Refreshes ahead of expiry that did not run or gave up before their query.", func(s *Stats) uint64 { return s.RefreshesSkipped }},
	{"refresh_errors", "Refreshes ahead of expiry whose query failed or panicked.", func(s *Stats) uint64 { return s.RefreshErrors }},
	{"stale_serves", "Hits served past their entry's TTL, within the query's StaleFor.", func(s *Stats) uint64 { return s.StaleServes }},
	{"local_hits", "Queries answered from the near cache, with no round trip.", func(s *Stats) uint64 { return s.LocalHits }},
	{"local_invalidations", "Near-cache entries ended by a write to one of their tables.", func(s *Stats) uint64 { return s.LocalInvalidations }},
	{"local_resubscribes", "Times the near cache lost its subscription to invalidations and dropped every entry.", func(s *Stats) uint64 { return s.LocalResubscribes }},
	{"recoveries", "Redis servers or nodes found restarted or failed over, whose generations were dropped.", func(s *Stats) uint64 { return s.Recoveries }},
}

// Counters returns every count of s with its name and meaning, in the
// order of Stats' fields, for metrics adapters: each is a monotonic
// counter over the adapter's life.
func (s Stats) Counters() []Counter {
	out := make([]Counter, len(counters))
	for i, c := range counters {
		out[i] = Counter{Name: c.name, Help: c.help, Value: c.get(&s)}
	}
	return out
}
