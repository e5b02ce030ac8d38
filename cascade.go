package gormflight

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gormflight/gormflight/internal/dialect"
	"github.com/gormflight/gormflight/internal/engine"
	"gorm.io/gorm"
)

// Some writes change tables their SQL does not name, and the database knows
// exactly which: a foreign key whose ON UPDATE or ON DELETE action is
// CASCADE, SET NULL or SET DEFAULT changes the referencing table, and
// TRUNCATE ... CASCADE empties every referencing table whatever its actions.
// The plugin reads these edges from the catalog (pg_constraint,
// information_schema, SQLite's pragma_foreign_key_list; the dialect's
// SchemaSQL, internal/dialect) and bumps every table a write can reach through them,
// transitively. Triggers and rules are code
// the plugin cannot follow: their writes are declared in Config.AlsoWrites,
// which joins the same closure, and tables with undeclared triggers are
// named in a warning.
//
// The graph is read at Initialize and again after each DDL statement run
// through the plugin's *gorm.DB, before that statement returns. DDL run
// elsewhere (another instance, a migration tool) is picked up by the first
// write outside a transaction once the graph is schemaMaxAge old: one
// catalog query a minute per writing instance, and no goroutine to own.

const (
	// schemaMaxAge is how old the graph may grow before a write reloads it,
	// which bounds how long DDL run elsewhere goes unseen.
	schemaMaxAge = time.Minute
	// schemaRetry is how soon a failed reload is tried again.
	schemaRetry = 5 * time.Second
	// schemaLoadTimeout bounds one catalog query. Catalog reads take no
	// lock a user statement holds, so this only guards a stuck connection.
	schemaLoadTimeout = 5 * time.Second
	// maxWarnTables caps how many tables one trigger warning names.
	maxWarnTables = 20
)

// schemaState is the plugin's view of the schema.
type schemaState struct {
	graph    atomic.Pointer[dialect.Graph]
	declared map[string][]string // Config.AlsoWrites normalised; fixed at Initialize
	pool     gorm.ConnPool       // the pool at Initialize: queries on it run no GORM callbacks
	maxAge   time.Duration       // schemaMaxAge; tests shorten it before any write
	mu       sync.Mutex          // serialises reloads, so a later reading is stored later
}

// loadSchema reads the graph at Initialize, so that the first write already
// reaches every table its cascades change, and warns about tables with
// triggers AlsoWrites does not declare. A database that cannot be read
// fails Initialize: without the graph, cascaded writes would go unseen.
func (p *Plugin) loadSchema(db *gorm.DB) error {
	s := &p.schema
	declared, err := dialect.NormAlsoWrites(p.dialect.TableName, p.cfg.AlsoWrites)
	if err != nil {
		return err
	}
	s.declared, s.maxAge = declared, schemaMaxAge
	s.pool = db.ConnPool
	ctx := context.Background()
	g, err := p.dialect.ReadSchema(ctx, s.pool, declared)
	if err != nil {
		return fmt.Errorf("gormflight: read foreign keys and triggers: %w", err)
	}
	s.graph.Store(g)
	p.warnTriggers(ctx, g, nil)
	return nil
}

// cascadeBefore expands the tables a statement is about to write, for its
// announcement.
func (p *Plugin) cascadeBefore(db *gorm.DB, tables []string) []string {
	if len(tables) == 0 {
		return tables
	}
	return p.schema.graph.Load().Expand(tables, p.dialect.TruncatesCascade(db.Statement.SQL.String()))
}

// cascadeAfter expands the tables a statement wrote, after it ran. A DDL
// statement first reloads the graph, so the writes after it returns
// already follow the foreign keys it added; a write outside a transaction
// reloads a graph older than maxAge, to learn DDL run elsewhere.
func (p *Plugin) cascadeAfter(db *gorm.DB, tables []string) []string {
	s := &p.schema
	if s.pool != nil && db.Statement.SQL.Len() > 0 && p.dialect.IsDDL(db.Statement.SQL.String()) {
		pool, inTx := p.schemaConn(db)
		if !inTx || db.Error == nil { // a failed statement aborted the transaction
			s.mu.Lock()
			p.reloadSchema(db.Statement.Context, pool, inTx)
			s.mu.Unlock()
		}
	} else if s.pool != nil && len(tables) > 0 && time.Since(s.graph.Load().Loaded) >= s.maxAge {
		if pool, inTx := p.schemaConn(db); !inTx && s.mu.TryLock() { // one reload at a time; the rest go on
			if time.Since(s.graph.Load().Loaded) >= s.maxAge {
				p.reloadSchema(db.Statement.Context, pool, false)
			}
			s.mu.Unlock()
		}
	}
	return p.cascadeBefore(db, tables)
}

// schemaConn returns the connection a reload after db's statement reads
// the catalog on: the statement's own transaction (the only one that sees
// its uncommitted DDL) or dedicated connection (taking another from a full
// pool could wait forever), else the pool from Initialize.
func (p *Plugin) schemaConn(db *gorm.DB) (pool gorm.ConnPool, inTx bool) {
	pool = db.Statement.ConnPool
	if c, ok := pool.(*cachedPool); ok {
		pool = c.ConnPool
	}
	switch pool.(type) {
	case gorm.TxCommitter:
		return pool, true
	case *sql.Conn:
		return pool, false
	}
	return p.schema.pool, false
}

// reloadSchema reads the graph again and stores it; merge keeps the edges
// of the old one too (a reading inside a transaction). A failure keeps the
// old graph, logs, and lets a write retry after schemaRetry. The caller
// holds p.schema.mu.
func (p *Plugin) reloadSchema(ctx context.Context, pool gorm.ConnPool, merge bool) {
	s := &p.schema
	old := s.graph.Load()
	g, err := p.dialect.ReadSchema(ctx, pool, s.declared)
	if err != nil {
		p.logf(ctx, engine.LevelError, "gormflight: could not reload foreign keys and triggers, keeping those read at %s (writes through foreign keys added since are not followed): %v", old.Loaded.Format(time.RFC3339), err)
		retry := *old
		retry.Loaded = time.Now().Add(schemaRetry - s.maxAge)
		s.graph.Store(&retry)
		return
	}
	if merge {
		g = g.Union(old)
	}
	s.graph.Store(g)
	p.warnTriggers(ctx, g, old)
}

// warnTriggers logs, once per table, the tables with triggers that
// AlsoWrites does not declare: the plugin cannot see what a trigger writes.
func (p *Plugin) warnTriggers(ctx context.Context, g, old *dialect.Graph) {
	var names []string
	for _, t := range g.Triggers {
		if _, ok := p.schema.declared[t]; ok {
			continue
		}
		if old != nil {
			if _, seen := slices.BinarySearch(old.Triggers, t); seen {
				continue
			}
		}
		names = append(names, t)
	}
	if len(names) == 0 {
		return
	}
	more := ""
	if len(names) > maxWarnTables {
		more = fmt.Sprintf(" and %d more", len(names)-maxWarnTables)
		names = names[:maxWarnTables]
	}
	p.logf(ctx, engine.LevelWarn, "gormflight: tables %s%s have triggers the plugin cannot follow: if a trigger writes other tables, declare them in Config.AlsoWrites (an empty list declares one that writes none), or cached reads of those tables can stay stale until Invalidate or their TTL", strings.Join(names, ", "), more)
}
