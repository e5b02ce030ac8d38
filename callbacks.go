package gormflight

import (
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
	return nil
}

// useCachedPool routes an opted-in statement's reads through the cache.
// GORM's gorm:query and gorm:row callbacks then run unchanged and call
// QueryContext or QueryRowContext on the cached pool.
func (p *Plugin) useCachedPool(db *gorm.DB) {
	if db.Error != nil || db.Statement.ConnPool == nil {
		return
	}
	v, ok := db.Statement.Settings.Load(settingKey)
	if !ok {
		return
	}
	s, ok := v.(*cacheSettings)
	if !ok {
		return
	}
	switch pool := db.Statement.ConnPool.(type) {
	case *cachedPool:
		return // already swapped: a statement reused, or a preload inheriting it
	case gorm.TxCommitter:
		// Inside a transaction reads bypass the cache, so a transaction
		// always reads its own writes.
		p.stats.bypassed.Add(1)
		return
	default:
		db.Statement.ConnPool = &cachedPool{ConnPool: pool, plugin: p, settings: s}
	}
}
