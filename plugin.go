package gormflight

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gormflight/gormflight/internal/dialect"
	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/gormflight/gormflight/observe"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Config configures a Plugin. The zero value of every field except Redis
// means its documented default.
//
// One rule covers negative values. A negative count, size or fraction
// (MaxEntrySize, MemoSize, BreakerFailures, MaxRefreshes, TTLJitter,
// RefreshBeta) turns off the limit
// or the feature it sets. A negative duration is refused with
// ErrInvalidConfig: each one bounds a wait or a lifetime that must stay
// bounded.
type Config struct {
	// Redis stores entries, locks and generations and carries the ready
	// messages. Required. A *redis.Client, *redis.ClusterClient or failover
	// client all fit.
	Redis redis.UniversalClient

	// Prefix namespaces every Redis key and channel. Instances that should
	// share entries must use the same prefix. Default "gormflight".
	Prefix string

	// Database names the database in cache keys, so that two databases
	// behind one Redis never share entries. Default: what the database
	// reports at Initialize (PostgreSQL: current_database(); MySQL and
	// MariaDB: DATABASE(); SQLite: the main database's file, so an
	// in-memory database needs a Database of its own).
	Database string

	// LockExpiry is how long a loader's lock lives without being extended.
	// The holder extends it every third of this while its query runs, so it
	// bounds how long waiters wait for a dead holder, not how long a query
	// may take. Default 2s.
	LockExpiry time.Duration

	// MaxWait bounds how long a flight waits for another instance's result.
	// Past it the flight queries the database itself, or fails with
	// ErrWaitTimeout when FailOnWaitTimeout is set. Default 10s.
	MaxWait time.Duration

	// FailOnWaitTimeout makes a flight that waited MaxWait return
	// ErrWaitTimeout instead of querying the database itself. Default false.
	FailOnWaitTimeout bool

	// MaxEntrySize caps the size of a stored entry in bytes. Larger results
	// are returned to their callers but not stored. Default 1 MiB; a
	// negative value removes the cap, and then RedisTimeout bounds what
	// can be stored: a store that takes longer fails as a Redis error.
	MaxEntrySize int

	// TTLJitter adds a random extra of up to this fraction of the TTL to each
	// stored entry, so entries filled together do not expire together.
	// Default 0.1; a negative value disables it.
	TTLJitter float64

	// RedisTimeout bounds each Redis operation, through its context: create
	// the client with ContextTimeoutEnabled so that go-redis applies context
	// deadlines to socket reads (otherwise its ReadTimeout, 3s by default,
	// bounds them). A new connection costs go-redis several round trips,
	// more than an operation at a round trip near RedisTimeout can spare:
	// after a failed operation the plugin opens connections in the
	// background, each under 8 x RedisTimeout, so caching resumes whenever
	// the round trip is under RedisTimeout. Default 250ms.
	RedisTimeout time.Duration

	// FailClosed makes queries fail with ErrRedisUnavailable when Redis
	// cannot be used, instead of running on the database without the
	// cluster-wide lock. Default false: fail open, the database answers.
	FailClosed bool

	// BreakerFailures is how many consecutive Redis failures open the
	// circuit breaker, after which Redis is not tried until BreakerCooldown
	// has passed. Default 5; a negative value disables the breaker, so every
	// operation tries Redis and waits up to RedisTimeout for it.
	BreakerFailures int

	// BreakerCooldown is how long the open breaker waits before letting one
	// probe through to Redis. Default 1s.
	BreakerCooldown time.Duration

	// MemoSize bounds the memory, in bytes, of the recently decoded entries
	// this instance keeps: a hit on one of them fetches from Redis only the
	// head of the stored value (its stamp and a tag unique to it), and when
	// that is unchanged it is served without fetching or decoding the rest.
	// It counts what an entry really holds (its decoded
	// rows and their boxed values, its columns, the head, the key and the
	// memo's bookkeeping). The least recently used are evicted, an
	// entry leaves when it expires in Redis, and an entry larger than a
	// quarter of MemoSize is not kept. Default 8 MiB; a negative value
	// disables the memo.
	MemoSize int

	// RefreshBeta sets how early a hit refreshes an entry that is about to
	// expire, in the background, for the whole cluster, while every caller
	// is answered at once with the entry it found. A hit in the last
	// RefreshBeta x Δ of an entry's life (Δ: how long its query took)
	// refreshes when Δ x RefreshBeta x -ln(rand) is at least the time left,
	// the XFetch rule. The TTL still bounds how stale an entry can be
	// against writes the plugin cannot see. Default 1; a negative value
	// disables refreshing ahead.
	RefreshBeta float64

	// MaxRefreshes caps the background refreshes this instance runs at
	// once (one per key); a hit that would start one more does not, and
	// the entry is reloaded when it expires. Default 16; a negative value
	// removes the cap.
	MaxRefreshes int

	// WaitReplicas makes every write's announcement and bump wait until
	// this many replicas of the Redis node holding the table's keys have
	// acknowledged it (Redis's WAIT, for at most half of RedisTimeout), so
	// that a failover cannot lose a bump and let entries from before the
	// write be served again. A node with fewer replicas connected waits for
	// those it has, except that a master which lost replicas it was seen
	// with is expected to have them for 5 s (its replica may have been
	// promoted in its place). A write whose announcement or bump is not
	// acknowledged, or finds no master, tries again for up to FailoverWait,
	// so that it lands on a new master before the write goes on. After
	// that, an announcement is given up (the write commits unannounced)
	// and a bump counts as failed: this instance serves the tables
	// uncached and retries it until one is acknowledged. A cached query
	// that finds no master waits for one as long (and at most MaxWait),
	// instead of reading the database. It needs a *redis.Client, a failover
	// client or a *redis.ClusterClient. Default 0: no waiting (see the
	// README on Redis failover).
	WaitReplicas int

	// FailoverWait is, with WaitReplicas, how long an operation waits for a
	// failover to end, from its first failure (its last try may take one
	// RedisTimeout more). Once one has waited that long in vain (or a
	// cached query failed until its MaxWait), Redis is taken as down:
	// operations go on without it at once until a Redis operation
	// succeeds. Set it to what a failover takes in your
	// deployment (on Redis Cluster, about twice cluster-node-timeout; with
	// Sentinel, down-after-milliseconds plus the failover), and MaxWait at
	// least as long. Default LockExpiry.
	FailoverWait time.Duration

	// KeyCopies is how many copies of each table's generation and
	// announcement keys Redis holds, in slots spread over a Redis Cluster.
	// Every hit reads its tables' keys, so with one copy a popular table's
	// hits all go to the shard of its slot; with n copies each query reads
	// one copy (by its key) and a write updates all n before it returns.
	// Default 16 on a *redis.ClusterClient, else 1.
	KeyCopies int

	// Local is the near cache's staleness bound for every cached query
	// that does not choose its own with the Local option. Default 0: no
	// query is served from the near cache unless it asks.
	Local time.Duration

	// LocalSize bounds the memory, in bytes, of the near cache (Local),
	// counted as MemoSize counts it; an entry larger than a quarter of it
	// is not kept. Default 32 MiB; a negative value disables the near
	// cache, and Local then has no effect.
	LocalSize int

	// LoadTimeout bounds a shared database query, which runs detached from
	// its callers' contexts (each caller still gives up on its own context).
	// Default 1m.
	LoadTimeout time.Duration

	// AlsoWrites declares writes no catalog shows: a write to a key table
	// also changes the tables listed for it (a trigger or rule that writes
	// elsewhere), so they are invalidated with it, transitively and together
	// with the tables foreign-key cascades reach. Names are matched as in the
	// database's SQL (PostgreSQL: unquoted names fold to lower case; MySQL
	// and SQLite: every name does; a schema qualifier is ignored): New
	// refuses a name no dialect reads, Initialize one its database's does
	// not. A key
	// with an empty list declares a trigger that writes no other table, which
	// silences the warning Initialize logs for tables with undeclared
	// triggers. Default nil: no declared writes.
	AlsoWrites map[string][]string

	// SessionSettings names custom settings (such as "app.tenant") that
	// change what queries return, for instance through a function a
	// row-level security policy calls: their values are part of every
	// cache key. Settings a policy reads with current_setting('name') are
	// found by themselves, and so is every built-in setting (search_path,
	// role, ...). On MySQL and MariaDB they name user variables (without
	// the @) that a function reads; SQLite has none, and Initialize refuses
	// any. Default nil.
	SessionSettings []string

	// Observer receives an observe.Event for every statement that asked for
	// the cache (Cache or CacheClause): how the cache answered it (a hit,
	// a wait, a load, a fallback, ...), how long it waited and how long the
	// database took. It is called on the statement's goroutine, once the
	// statement's result is known, so it must be quick and safe for
	// concurrent use; events never hold SQL text or argument values.
	// Adapters to OpenTelemetry and Prometheus are the modules
	// github.com/gormflight/gormflight/extra/otel and extra/prometheus.
	// Default nil: nothing is observed, at no cost.
	Observer observe.Observer
}

// setDefaults fills the defaults and refuses what they cannot mend; the
// engine's own Config.validate checks the rest (the Prefix's braces, the
// shortest LockExpiry) when New builds it.
func (c *Config) setDefaults() error {
	if c.Redis == nil {
		return ErrNoRedis
	}
	ec := c.engineConfig()
	if err := ec.SetDefaults(); err != nil {
		return err
	}
	c.Prefix, c.LockExpiry, c.MaxWait, c.LoadTimeout, c.RedisTimeout = ec.Prefix, ec.LockExpiry, ec.MaxWait, ec.LoadTimeout, ec.RedisTimeout
	c.MaxEntrySize, c.TTLJitter, c.MemoSize, c.LocalSize = ec.MaxEntrySize, ec.TTLJitter, ec.MemoSize, ec.LocalSize
	c.BreakerFailures, c.BreakerCooldown, c.RefreshBeta, c.MaxRefreshes = ec.BreakerFailures, ec.BreakerCooldown, ec.RefreshBeta, ec.MaxRefreshes
	c.FailoverWait = ec.FailoverWait
	if c.Local < 0 {
		return fmt.Errorf("%w: Local must not be negative, got %v", ErrInvalidConfig, c.Local)
	}
	return checkAlsoWrites(c.AlsoWrites)
}

// engineConfig is the engine's part of c.
func (c *Config) engineConfig() engine.Config {
	return engine.Config{
		Redis:             c.Redis,
		Prefix:            c.Prefix,
		LockExpiry:        c.LockExpiry,
		MaxWait:           c.MaxWait,
		FailOnWaitTimeout: c.FailOnWaitTimeout,
		LoadTimeout:       c.LoadTimeout,
		RedisTimeout:      c.RedisTimeout,
		FailClosed:        c.FailClosed,
		MaxEntrySize:      c.MaxEntrySize,
		TTLJitter:         c.TTLJitter,
		MemoSize:          c.MemoSize,
		LocalSize:         c.LocalSize,
		BreakerFailures:   c.BreakerFailures,
		BreakerCooldown:   c.BreakerCooldown,
		RefreshBeta:       c.RefreshBeta,
		MaxRefreshes:      c.MaxRefreshes,
		WaitReplicas:      c.WaitReplicas,
		FailoverWait:      c.FailoverWait,
		KeyCopies:         c.KeyCopies,
	}
}

// checkAlsoWrites refuses AlsoWrites with a name no dialect reads, so that
// New fails, not db.Use; Initialize reads it again in its database's
// dialect.
func checkAlsoWrites(also map[string][]string) error {
	var err error
	for _, d := range dialect.Dialects {
		if _, err = dialect.NormAlsoWrites(func(n string) (string, error) { return dialect.TableNameIn(d, n) }, also); err == nil {
			return nil
		}
	}
	return err
}

// Plugin is the gormflight GORM plugin. Create it with New and install it
// with db.Use; one Plugin serves one *gorm.DB. It is safe for concurrent
// use. Close it when the application stops. A zero Plugin is inert: its
// Initialize and Invalidate fail with an error wrapping ErrNoRedis, Stats
// is zero and Close does nothing.
type Plugin struct {
	cfg    Config
	stats  engine.Counters
	engine *engine.Engine
	replay *rowcodec.Replayer

	dialect *dialect.Dialect // from Initialize

	mu      sync.Mutex
	served  *gorm.DB                         // the handle Initialize installed the plugin on
	logger  atomic.Pointer[logger.Interface] // the GORM logger, from Initialize
	schema  schemaState                      // foreign keys and declared writes (cascade.go)
	session sessionState                     // the sessions cache keys depend on (session.go)

	// fillWhereRouted leaves a cached query where gorm.io/plugin/dbresolver
	// routed it, a lagging replica included, instead of sending it to a
	// source (readFromSource). It exists for the tests alone, which set it
	// to inject the stale fill readFromSource prevents and show that their
	// checks catch it; no Config field reaches it.
	fillWhereRouted bool
}

// logf reports through the GORM logger of the database the plugin is
// installed on: failed invalidations and an opening breaker as errors,
// everything else as warnings.
func (p *Plugin) logf(ctx context.Context, level engine.Level, format string, args ...any) {
	l := p.logger.Load()
	if l == nil {
		return
	}
	if level == engine.LevelError {
		(*l).Error(ctx, format, args...)
	} else {
		(*l).Warn(ctx, format, args...)
	}
}

var _ gorm.Plugin = (*Plugin)(nil)

// New returns a Plugin for cfg, with defaults filled in. It fails with
// ErrNoRedis without a Redis client and with ErrInvalidConfig for
// out-of-range fields. It starts three goroutines (the pub/sub dispatcher,
// the retrier of failed invalidations and the connection warmer), which
// Close stops; the memo's sweeper runs on a timer Close stops too, and
// Close cancels and waits for the refreshes ahead of expiry hits start.
func New(cfg Config) (*Plugin, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	p := &Plugin{cfg: cfg}
	ec := cfg.engineConfig()
	ec.Log, ec.Stats = p.logf, &p.stats
	e, err := engine.New(ec)
	if err != nil {
		return nil, err
	}
	p.engine, p.replay = e, rowcodec.NewReplayer()
	return p, nil
}

// Name returns "gormflight".
func (p *Plugin) Name() string { return "gormflight" }

// Initialize registers the plugin's callbacks on db and makes the
// transactions begun on its pool invalidate what they wrote when they
// commit. GORM calls it from db.Use. It fails with ErrUnsupportedDialect on
// a database other than PostgreSQL, MySQL, MariaDB and SQLite (or on MySQL
// with an sql_mode that changes how statements read), and with ErrAlreadyInitialized on a
// second handle, except on the connections gorm.io/plugin/dbresolver opens
// for the handle it serves (see resolverConnection).
//
// db.ConnPool keeps its type with PrepareStmt: it is still a
// *gorm.PreparedStmtDB, sharing the original's statement store. Without
// PrepareStmt it becomes a wrapper of the pool: db.DB() still returns the
// *sql.DB.
func (p *Plugin) Initialize(db *gorm.DB) error {
	if p.engine == nil {
		return errNotNew
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.served != nil {
		if p.resolverConnection(db) {
			return nil
		}
		return ErrAlreadyInitialized
	}
	d, err := dialect.Of(db.Dialector.Name())
	if err != nil {
		return err
	}
	l := db.Logger
	p.logger.Store(&l)
	if !contextTimeouts(p.cfg.Redis) {
		l.Warn(context.Background(), "gormflight: the Redis client was created without ContextTimeoutEnabled, so go-redis bounds socket reads by its ReadTimeout instead of Config.RedisTimeout (%v)", p.cfg.RedisTimeout)
	}
	p.dialect = d
	ps, err := d.Open(context.Background(), db.ConnPool, p.cfg.Database, p.cfg.SessionSettings)
	if err != nil {
		return err
	}
	p.session.PoolSession = ps
	if err := p.loadSchema(db); err != nil {
		return err
	}
	if err := p.registerCallbacks(db); err != nil {
		return err
	}
	if err := p.registerWriteCallbacks(db); err != nil {
		return err
	}
	db.ConnPool = p.trackPool(db.ConnPool)
	db.Statement.ConnPool = db.ConnPool
	p.served = db
	return nil
}

// resolverConnection reports whether db is a connection that
// gorm.io/plugin/dbresolver, installed on the handle the plugin serves, is
// opening for its sources and replicas. It opens each with gorm.Open and a
// copy of that handle's configuration, so GORM initializes the plugins the
// copy lists, this one among them, on a *gorm.DB with callbacks of its own
// (the handle and its sessions share theirs). Statements never run through
// that *gorm.DB's callbacks, dbresolver only takes its pool, so nothing is
// installed on it: the handle's callbacks serve the statements dbresolver
// routes to it.
func (p *Plugin) resolverConnection(db *gorm.DB) bool {
	return db.Callback() != p.served.Callback() &&
		db.Plugins[p.Name()] == gorm.Plugin(p) &&
		p.served.Callback().Query().Get(resolverCallback) != nil
}

// Stats returns a snapshot of the plugin's counters.
func (p *Plugin) Stats() Stats { return snapshot(&p.stats) }

// Close stops the plugin: flights still waiting for another instance query
// the database instead, Close waits for cached queries and flights in
// progress, then closes the pub/sub connection. Opted-in queries after Close
// run uncached. It does not close the Redis client, which the caller owns.
// Calling Close again returns nil.
func (p *Plugin) Close() error {
	if p.engine == nil {
		return nil // a zero Plugin: nothing was started
	}
	closed, err := p.engine.Close()
	if !closed {
		return nil
	}
	if cerr := p.replay.Close(); err == nil {
		err = cerr
	}
	return err
}

// Invalidate marks tables as written, so that no instance serves entries
// computed before the call. Use it after writes made outside GORM: by
// another program, by SQL run on the *sql.DB directly, or by a trigger.
// Table names are matched as in the database's SQL, as AlsoWrites' are; a
// name that is not a table name fails with ErrInvalidTableName and
// invalidates nothing. A call before Initialize fails: names are read in
// the dialect of the database the plugin serves. If Redis cannot be reached
// the error is returned, and this instance serves the tables uncached until
// a background retry succeeds.
func (p *Plugin) Invalidate(ctx context.Context, tables ...string) error {
	if p.engine == nil {
		return errNotNew
	}
	d := p.initialized()
	if d == nil {
		return errNotInitialized
	}
	norm := make([]string, 0, len(tables))
	for _, t := range tables {
		n, err := d.TableName(t)
		if err != nil {
			return err
		}
		norm = append(norm, n)
	}
	slices.Sort(norm)
	return p.engine.Invalidate(ctx, p.schema.graph.Load().Expand(slices.Compact(norm), false), engine.Announcement{})
}

// initialized returns the dialect Initialize chose, or nil before it.
func (p *Plugin) initialized() *dialect.Dialect {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dialect
}

// contextTimeouts reports whether the client applies context deadlines to
// socket I/O, as far as its options tell.
func contextTimeouts(rdb redis.UniversalClient) bool {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true // unknown kinds: assume the user configured it
}
