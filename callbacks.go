package gormflight

import (
	"database/sql"
	"fmt"

	"gorm.io/gorm"
)

// registerCallbacks hooks the plugin in before GORM's own query and row
// callbacks. Nothing of GORM is replaced: the hook only swaps the
// statement's connection pool, the way gorm.io/plugin/dbresolver does.
func (p *Plugin) registerCallbacks(db *gorm.DB) error {
	if err := db.Callback().Query().Before("gorm:query").Register("gormflight:query", p.useCachedPool); err != nil {
		return fmt.Errorf("gormflight: register query callback: %w", err)
	}
	if err := db.Callback().Row().Before("gorm:row").Register("gormflight:row", p.useCachedPool); err != nil {
		return fmt.Errorf("gormflight: register row callback: %w", err)
	}
	for _, r := range []struct {
		name string
		err  error
	}{
		{"raw", db.Callback().Raw().After("gorm:raw").Register("gormflight:raw_session", p.noteSession)},
		{"query", db.Callback().Query().After("gorm:query").Register("gormflight:query_session", p.noteSession)},
		{"row", db.Callback().Row().After("gorm:row").Register("gormflight:row_session", p.noteSession)},
	} {
		if r.err != nil {
			return fmt.Errorf("gormflight: register %s session callback: %w", r.name, r.err)
		}
	}
	return p.registerObserver(db)
}

// useCachedPool routes an opted-in statement's reads through the cache.
// GORM's gorm:query and gorm:row callbacks then run unchanged and call
// QueryContext or QueryRowContext on the cached pool.
func (p *Plugin) useCachedPool(db *gorm.DB) {
	if db.Error != nil || db.Statement.ConnPool == nil {
		return
	}
	if c, ok := db.Statement.ConnPool.(*cachedPool); ok {
		// Swapped already: a statement reused (a chain in db.Connection),
		// or one cloned from it (Session, a preload). Decided again, as a
		// new statement is: its session is read again (a SET since may
		// have changed it), a clone that dropped the settings (NewDB)
		// reads the database, and no two statements share a cachedPool.
		db.Statement.ConnPool = c.ConnPool
	}
	v, ok := db.Statement.Settings.Load(settingKey)
	if !ok {
		return
	}
	s, ok := v.(*cacheSettings)
	if !ok {
		return
	}
	switch db.Statement.ConnPool.(type) {
	case gorm.TxCommitter:
		// Inside a transaction reads bypass the cache, so a transaction
		// always reads its own writes.
		p.stats.Bypassed.Add(1)
		p.markBypass(db)
		return
	default:
		if !p.fillWhereRouted {
			readFromSource(db)
		}
		scope, ok := p.scope(db.Statement.Context, db.Statement.ConnPool)
		if !ok {
			p.stats.Bypassed.Add(1) // the session cannot be known
			p.markBypass(db)
			return
		}
		p.unmarkBypass(db)
		_, dedicated := db.Statement.ConnPool.(*sql.Conn)
		db.Statement.ConnPool = &cachedPool{ConnPool: db.Statement.ConnPool, plugin: p, settings: s,
			scope: scope, onPool: !dedicated}
	}
}

// Names gorm.io/plugin/dbresolver gives its pool-switching callback and the
// statement settings its Write and Read clauses store.
const (
	resolverCallback = "gorm:db_resolver"
	resolverWrite    = "gorm:db_resolver:write"
	resolverRead     = "gorm:db_resolver:read"
)

// readFromSource sends a statement that gorm.io/plugin/dbresolver routed to
// a replica to a source instead, as its Write clause would (the same
// settings, then its own callback again). A fill stores what it reads for
// every instance, stamped with the generations read before it: a replica
// that has not yet replayed a write whose bump it saw would store older
// rows for as long as the entry lives. Without dbresolver it does nothing.
//
// Checking instead that the replica has replayed the primary's WAL position
// recorded with the bump would cost a query on every write and every fill,
// and right after a write, when fills happen, finds the replica behind and
// still goes to the source or waits out its lag (BenchmarkReplica).
func readFromSource(db *gorm.DB) {
	resolve := db.Callback().Query().Get(resolverCallback)
	if resolve == nil {
		return
	}
	db.Statement.Settings.Delete(resolverRead)
	db.Statement.Settings.Store(resolverWrite, struct{}{})
	resolve(db)
}
