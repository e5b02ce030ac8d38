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

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/sqlscan"
	"gorm.io/gorm"
)

// Some writes change tables their SQL does not name, and the database knows
// exactly which: a foreign key whose ON UPDATE or ON DELETE action is
// CASCADE, SET NULL or SET DEFAULT changes the referencing table, and
// TRUNCATE ... CASCADE empties every referencing table whatever its actions.
// The plugin reads these edges from the catalog (pg_constraint,
// information_schema, SQLite's pragma_foreign_key_list; the dialect's
// schemaSQL) and bumps every table a write can reach through them,
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

// schemaGraph is one immutable reading of the schema. Readers load it
// without locking; a reload replaces it whole.
type schemaGraph struct {
	modifies map[string][]string // table -> tables a write to it changes: FK actions, AlsoWrites
	empties  map[string][]string // modifies plus every referencing table: TRUNCATE ... CASCADE
	triggers []string            // sorted: tables with user triggers
	loaded   time.Time           // when to count schemaMaxAge from
}

// schemaState is the plugin's view of the schema.
type schemaState struct {
	graph    atomic.Pointer[schemaGraph]
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
	declared, err := normAlsoWrites(p.dialect.tableName, p.cfg.AlsoWrites)
	if err != nil {
		return err
	}
	s.declared, s.maxAge = declared, schemaMaxAge
	s.pool = db.ConnPool
	ctx := context.Background()
	g, err := p.dialect.readSchema(ctx, s.pool, declared)
	if err != nil {
		return fmt.Errorf("gormflight: read foreign keys and triggers: %w", err)
	}
	s.graph.Store(g)
	p.warnTriggers(ctx, g, nil)
	return nil
}

// normAlsoWrites normalises Config.AlsoWrites with tableName, rejecting
// names that are not table references. A key with no tables stays: it
// declares a trigger that writes no other table.
func normAlsoWrites(tableName func(string) (string, error), also map[string][]string) (map[string][]string, error) {
	if len(also) == 0 {
		return nil, nil
	}
	out := make(map[string][]string, len(also))
	for k, vs := range also {
		key, err := tableName(k)
		if err != nil {
			return nil, fmt.Errorf("%w: AlsoWrites key: %w", ErrInvalidConfig, err)
		}
		tables := out[key]
		for _, v := range vs {
			t, err := tableName(v)
			if err != nil {
				return nil, fmt.Errorf("%w: AlsoWrites[%q]: %w", ErrInvalidConfig, k, err)
			}
			tables = append(tables, t)
		}
		out[key] = tableSet(tables)
	}
	return out, nil
}

// fkEdge is one foreign key: writes to parent may change child.
type fkEdge struct {
	parent, child string
	modifies      bool // an ON UPDATE/ON DELETE action writes the child
}

// readSchema runs the dialect's schemaSQL on pool and builds the graph.
// Its rows are (kind, parent, child, modifies): kind 'f' is a foreign key
// (modifies: an action changes the child), 't' a table with a trigger a
// user created (in parent).
func (d *dialect) readSchema(ctx context.Context, pool gorm.ConnPool, declared map[string][]string) (*schemaGraph, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), schemaLoadTimeout)
	defer cancel()
	rows, err := pool.QueryContext(ctx, d.schemaSQL)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var edges []fkEdge
	var triggers []string
	for rows.Next() {
		var kind string
		var e fkEdge
		if err := rows.Scan(&kind, &e.parent, &e.child, &e.modifies); err != nil {
			return nil, err
		}
		e.parent, e.child = d.catalogName(e.parent), d.catalogName(e.child)
		if kind == "t" {
			triggers = append(triggers, e.parent)
		} else {
			edges = append(edges, e)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return buildGraph(edges, triggers, declared, time.Now()), nil
}

// buildGraph turns the edges and declarations into a graph.
func buildGraph(edges []fkEdge, triggers []string, declared map[string][]string, loaded time.Time) *schemaGraph {
	g := &schemaGraph{
		modifies: make(map[string][]string),
		empties:  make(map[string][]string),
		triggers: tableSet(triggers),
		loaded:   loaded,
	}
	for _, e := range edges {
		if e.modifies {
			g.modifies[e.parent] = append(g.modifies[e.parent], e.child)
		}
		g.empties[e.parent] = append(g.empties[e.parent], e.child)
	}
	for k, vs := range declared {
		g.modifies[k] = append(g.modifies[k], vs...)
		g.empties[k] = append(g.empties[k], vs...)
	}
	for _, m := range []map[string][]string{g.modifies, g.empties} {
		for k, vs := range m {
			if vs = tableSet(vs); len(vs) == 0 {
				delete(m, k)
			} else {
				m[k] = vs
			}
		}
	}
	return g
}

// union returns a graph with the edges and triggers of both g and old, and
// old's age: a reading taken inside a transaction may show DDL that will
// roll back, and may miss edges the transaction dropped but will restore.
func (g *schemaGraph) union(old *schemaGraph) *schemaGraph {
	if old == nil {
		return g
	}
	u := &schemaGraph{
		modifies: make(map[string][]string),
		empties:  make(map[string][]string),
		triggers: tableSet(append(slices.Clone(g.triggers), old.triggers...)),
		loaded:   old.loaded,
	}
	for _, pair := range [][2]map[string][]string{{u.modifies, g.modifies}, {u.modifies, old.modifies}, {u.empties, g.empties}, {u.empties, old.empties}} {
		for k, vs := range pair[1] {
			pair[0][k] = tableSet(append(slices.Clone(pair[0][k]), vs...))
		}
	}
	return u
}

// expand returns tables (sorted, without duplicates) together with every
// table a write to them can change, transitively: through modifying
// foreign keys and AlsoWrites, or through every foreign key when the write
// is a TRUNCATE ... CASCADE. It returns tables itself when nothing is added.
func (g *schemaGraph) expand(tables []string, truncateCascade bool) []string {
	if g == nil || len(tables) == 0 {
		return tables
	}
	next := g.modifies
	if truncateCascade {
		next = g.empties
	}
	if !slices.ContainsFunc(tables, func(t string) bool { return len(next[t]) > 0 }) {
		return tables
	}
	seen := make(map[string]struct{}, len(tables)*2)
	queue := make([]string, 0, len(tables)*2)
	for _, t := range tables {
		seen[t] = struct{}{}
		queue = append(queue, t)
	}
	for i := 0; i < len(queue); i++ { // queue grows: the closure, cycles included
		for _, c := range next[queue[i]] {
			if _, ok := seen[c]; !ok {
				seen[c] = struct{}{}
				queue = append(queue, c)
			}
		}
	}
	return tableSet(queue)
}

// cascadeBefore expands the tables a statement is about to write, for its
// announcement.
func (p *Plugin) cascadeBefore(db *gorm.DB, tables []string) []string {
	if len(tables) == 0 {
		return tables
	}
	return p.schema.graph.Load().expand(tables, p.dialect.truncatesCascade(db.Statement.SQL.String()))
}

// cascadeAfter expands the tables a statement wrote, after it ran. A DDL
// statement first reloads the graph, so the writes after it returns
// already follow the foreign keys it added; a write outside a transaction
// reloads a graph older than maxAge, to learn DDL run elsewhere.
func (p *Plugin) cascadeAfter(db *gorm.DB, tables []string) []string {
	s := &p.schema
	if s.pool != nil && db.Statement.SQL.Len() > 0 && p.dialect.isDDL(db.Statement.SQL.String()) {
		pool, inTx := p.schemaConn(db)
		if !inTx || db.Error == nil { // a failed statement aborted the transaction
			s.mu.Lock()
			p.reloadSchema(db.Statement.Context, pool, inTx)
			s.mu.Unlock()
		}
	} else if s.pool != nil && len(tables) > 0 && time.Since(s.graph.Load().loaded) >= s.maxAge {
		if pool, inTx := p.schemaConn(db); !inTx && s.mu.TryLock() { // one reload at a time; the rest go on
			if time.Since(s.graph.Load().loaded) >= s.maxAge {
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
	g, err := p.dialect.readSchema(ctx, pool, s.declared)
	if err != nil {
		p.logf(ctx, engine.LevelError, "gormflight: could not reload foreign keys and triggers, keeping those read at %s (writes through foreign keys added since are not followed): %v", old.loaded.Format(time.RFC3339), err)
		retry := *old
		retry.loaded = time.Now().Add(schemaRetry - s.maxAge)
		s.graph.Store(&retry)
		return
	}
	if merge {
		g = g.union(old)
	}
	s.graph.Store(g)
	p.warnTriggers(ctx, g, old)
}

// warnTriggers logs, once per table, the tables with triggers that
// AlsoWrites does not declare: the plugin cannot see what a trigger writes.
func (p *Plugin) warnTriggers(ctx context.Context, g, old *schemaGraph) {
	var names []string
	for _, t := range g.triggers {
		if _, ok := p.schema.declared[t]; ok {
			continue
		}
		if old != nil {
			if _, seen := slices.BinarySearch(old.triggers, t); seen {
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

// isDDL reports whether query holds DDL: a statement that may change
// foreign keys or triggers. Extra reloads only cost a catalog query.
func (d *dialect) isDDL(query string) bool { return d.analyze(query).DDL }

// truncatesCascade reports whether query holds a TRUNCATE statement with
// CASCADE, which empties every table referencing the ones it names.
func (d *dialect) truncatesCascade(query string) bool {
	if !containsFold(query, "truncate") {
		return false
	}
	first, truncate := true, false
	for _, t := range sqlscan.Lex(d.sql, query) {
		word := t.Kind == sqlscan.TokWord
		switch {
		case t.Kind == sqlscan.TokSemi:
			first, truncate = true, false
			continue
		case word && first:
			truncate = strings.EqualFold(query[t.Pos:t.End], "truncate")
		case word && truncate && strings.EqualFold(query[t.Pos:t.End], "cascade"):
			return true
		}
		first = false
	}
	return false
}

// tableSet returns v sorted and without duplicates (nil if empty). It
// reuses v's memory: callers pass slices of their own.
func tableSet(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	slices.Sort(v)
	return slices.Clip(slices.Compact(v))
}
