package gormflight

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"
)

// Writes are found from the SQL every GORM statement runs: Create,
// Update(s), UpdateColumn(s), Save and Delete (the statement's table and any
// table its SQL writes), Exec, and Raw statements that write.
//
// Outside a transaction a statement commits as it runs, so its tables are
// announced before it runs and bumped after it, before it returns to its
// caller. Inside a transaction begun through GORM they are recorded, then
// announced just before the outermost Commit and bumped once it returned; a
// rollback drops them. (See generations.go for why writes announce.)

// announcedKey is the statement instance setting that carries the tables a
// statement announced from the before to the after callback.
const announcedKey = "gormflight:announced"

// registerWriteCallbacks hooks the write tracking into every processor. For
// Create, Update and Delete the recorder runs before GORM commits the
// statement's own transaction, so the tables reach that transaction's Commit.
func (p *Plugin) registerWriteCallbacks(db *gorm.DB) error {
	cb := db.Callback()
	for _, r := range []struct {
		name string
		err  error
	}{
		{"create", cb.Create().Before("gorm:create").Register("gormflight:create_announce", p.announceWrites(true))},
		{"update", cb.Update().Before("gorm:update").Register("gormflight:update_announce", p.announceWrites(true))},
		{"delete", cb.Delete().Before("gorm:delete").Register("gormflight:delete_announce", p.announceWrites(true))},
		{"raw", cb.Raw().Before("gorm:raw").Register("gormflight:raw_announce", p.announceWrites(false))},
		{"query", cb.Query().Before("gorm:query").Register("gormflight:query_announce", p.announceWrites(false))},
		{"row", cb.Row().Before("gorm:row").Register("gormflight:row_announce", p.announceWrites(false))},
		{"create", cb.Create().Before("gorm:commit_or_rollback_transaction").Register("gormflight:create_writes", p.recordWrites(true))},
		{"update", cb.Update().Before("gorm:commit_or_rollback_transaction").Register("gormflight:update_writes", p.recordWrites(true))},
		{"delete", cb.Delete().Before("gorm:commit_or_rollback_transaction").Register("gormflight:delete_writes", p.recordWrites(true))},
		{"raw", cb.Raw().After("gorm:raw").Register("gormflight:raw_writes", p.recordWrites(false))},
		{"query", cb.Query().After("gorm:query").Register("gormflight:query_writes", p.recordWrites(false))},
		{"row", cb.Row().After("gorm:row").Register("gormflight:row_writes", p.recordWrites(false))},
		{"create", cb.Create().After("gorm:begin_transaction").Before("gormflight:create_announce").Register("gormflight:create_track_tx", p.trackStartedTx)},
		{"update", cb.Update().After("gorm:begin_transaction").Before("gormflight:update_announce").Register("gormflight:update_track_tx", p.trackStartedTx)},
		{"delete", cb.Delete().After("gorm:begin_transaction").Before("gormflight:delete_announce").Register("gormflight:delete_track_tx", p.trackStartedTx)},
	} {
		if r.err != nil {
			return fmt.Errorf("gormflight: register %s write callback: %w", r.name, r.err)
		}
	}
	return nil
}

// writtenTables returns the tables a statement writes, as far as can be
// known now: from its SQL once built (Exec and Raw build it before the
// callbacks run), and its own table for Create, Update and Delete.
func writtenTables(db *gorm.DB, withTable bool) []string {
	var tables []string
	if db.Statement.SQL.Len() > 0 {
		query := db.Statement.SQL.String()
		if withTable || !isSelect(query) {
			_, tables = sqlTables(query)
		}
	}
	if withTable {
		for _, t := range statementTables(db.Statement) {
			if i, found := slices.BinarySearch(tables, t); !found {
				tables = slices.Insert(tables, i, t)
			}
		}
	}
	return tables
}

// statementTables returns the generation names of the table a Create,
// Update or Delete names, before its SQL is built. They are taken from the
// table as the SQL will name it, so that they are the names reads of that
// SQL are keyed by: GORM quotes Statement.Table (so "AdvRevMixed" keeps its
// case), and a table expression (db.Table("users u")) is parsed as a FROM
// item (Statement.Table is then the alias).
func statementTables(stmt *gorm.Statement) []string {
	if stmt.TableExpr != nil {
		read, _ := sqlTables("SELECT * FROM " + stmt.TableExpr.SQL)
		return read
	}
	if stmt.Table == "" {
		return nil
	}
	var b strings.Builder
	stmt.QuoteTo(&b, stmt.Table)
	if t := normTable(b.String()); t != "" {
		return []string{t}
	}
	return nil
}

// trackStartedTx makes the transaction GORM just began for a Create,
// Update or Delete a trackingTx, when it did not come from a tracking pool:
// a statement in db.Connection begins it on a *sql.Conn, one routed by
// gorm.io/plugin/dbresolver on a pool of its own. Its writes are then
// invalidated when GORM commits it, not before. GORM commits it through the
// statement's pool, so replacing that pool is enough; a prepared-statement
// transaction is replaced by a copy, never changed in place.
func (p *Plugin) trackStartedTx(db *gorm.DB) {
	if _, started := db.InstanceGet("gorm:started_transaction"); !started {
		return
	}
	switch tx := db.Statement.ConnPool.(type) {
	case *sql.Tx:
		db.Statement.ConnPool = &trackingTx{Tx: tx, engine: p.engine}
	case *gorm.PreparedStmtTX:
		if tx.Tx != nil && trackedTx(tx) == nil {
			db.Statement.ConnPool = &gorm.PreparedStmtTX{
				Tx:             &trackingTx{Tx: tx.Tx, engine: p.engine},
				PreparedStmtDB: tx.PreparedStmtDB,
			}
		}
	}
}

// announceWrites returns the callback that announces the tables a statement
// is about to write: outside a transaction, before it runs (it commits as it
// runs); inside a transaction this plugin cannot follow to its commit (one
// not begun through GORM's Begin on the database, such as one begun in
// db.Connection), before it runs too, and then the announcement is held
// until its lifetime ends, since no bump can know when the commit comes.
func (p *Plugin) announceWrites(withTable bool) func(*gorm.DB) {
	return func(db *gorm.DB) {
		if db.DryRun || db.Error != nil {
			return
		}
		_, inTx := db.Statement.ConnPool.(gorm.TxCommitter)
		if inTx && trackedTx(db.Statement.ConnPool) != nil {
			return // announced by the transaction's Commit
		}
		if a := p.engine.announce(db.Statement.Context, p.cascadeBefore(db, writtenTables(db, withTable)), inTx); len(a.tables) > 0 {
			db.InstanceSet(announcedKey, a)
		}
	}
}

// recordWrites returns the callback that records the tables a statement
// wrote, after it ran. A statement that failed is recorded too: it may have
// written before it failed, and an extra invalidation costs only a miss.
func (p *Plugin) recordWrites(withTable bool) func(*gorm.DB) {
	return func(db *gorm.DB) {
		if db.DryRun {
			return
		}
		// Taken, not read: a *gorm.DB that is not a new session (the one
		// db.Connection hands out, a chain reused) runs every statement on
		// one Statement, and a later statement must not find this one's
		// announcement and bump its tables again.
		var announced announcement
		if v, ok := db.Statement.Settings.LoadAndDelete(fmt.Sprintf("%p", db.Statement) + announcedKey); ok {
			announced, _ = v.(announcement)
		}
		tables := writtenTables(db, withTable)
		for _, t := range announced.tables {
			if i, found := slices.BinarySearch(tables, t); !found {
				tables = slices.Insert(tables, i, t)
			}
		}
		tables = p.cascadeAfter(db, tables) // foreign-key cascades and AlsoWrites (cascade.go)
		if len(tables) == 0 {
			return
		}
		if tx := trackedTx(db.Statement.ConnPool); tx != nil {
			tx.record(tables)
			return
		}
		// Outside a transaction the write has committed by now. A
		// transaction this plugin cannot follow has not: its writes are
		// bumped now, and its held announcement keeps every instance from
		// serving or storing entries of the tables until the announcement
		// expires (Config.LoadTimeout), by when it has most likely committed.
		if announced.held {
			announced = announcement{}
		}
		_ = p.engine.invalidate(db.Statement.Context, tables, announced)
	}
}

// trackPool returns pool with the transactions begun on it tracked: those
// of db.Begin and db.Transaction, and GORM's own around a write. Begin and
// Commit run no GORM callback, so only the pool a transaction begins on can
// follow it to its commit. GORM's prepared-statement manager stays one, so
// that db.ConnPool.(*gorm.PreparedStmtDB) still finds it: the copy shares
// the original's statement store and lock (Close and Reset act on the
// statements the handle prepared) and tracks the pool under it.
func (p *Plugin) trackPool(pool gorm.ConnPool) gorm.ConnPool {
	if pdb, ok := pool.(*gorm.PreparedStmtDB); ok {
		return &gorm.PreparedStmtDB{Stmts: pdb.Stmts, Mux: pdb.Mux, ConnPool: p.trackPool(pdb.ConnPool)}
	}
	return &trackingPool{ConnPool: pool, engine: p.engine}
}

// trackingPool wraps a connection pool so that transactions begun on it are
// trackingTx.
type trackingPool struct {
	gorm.ConnPool
	engine *engine
}

func (t *trackingPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	var tx gorm.ConnPool
	var err error
	switch b := t.ConnPool.(type) {
	case gorm.TxBeginner:
		var stx *sql.Tx
		if stx, err = b.BeginTx(ctx, opts); err == nil {
			tx = stx
		}
	case gorm.ConnPoolBeginner:
		tx, err = b.BeginTx(ctx, opts)
	default:
		return nil, gorm.ErrInvalidTransaction
	}
	if err != nil {
		return nil, err
	}
	gtx, ok := tx.(gorm.Tx)
	if !ok {
		return tx, nil // cannot wrap: writes are invalidated as they run
	}
	return &trackingTx{Tx: gtx, engine: t.engine, pool: t}, nil
}

// GetDBConn lets db.DB() reach the *sql.DB behind the wrapper.
func (t *trackingPool) GetDBConn() (*sql.DB, error) {
	switch c := t.ConnPool.(type) {
	case *sql.DB:
		return c, nil
	case gorm.GetDBConnector:
		return c.GetDBConn()
	}
	return nil, errors.New("gormflight: connection pool has no *sql.DB")
}

// The setters below let the connection settings gorm.io/plugin/dbresolver
// applies to its sources (SetMaxOpenConns and the like, found by type
// assertion) reach the *sql.DB when this pool is one: with no sources of its
// own, dbresolver writes through the handle's pool.

func (t *trackingPool) SetMaxOpenConns(n int) {
	if db, err := t.GetDBConn(); err == nil {
		db.SetMaxOpenConns(n)
	}
}

func (t *trackingPool) SetMaxIdleConns(n int) {
	if db, err := t.GetDBConn(); err == nil {
		db.SetMaxIdleConns(n)
	}
}

func (t *trackingPool) SetConnMaxLifetime(d time.Duration) {
	if db, err := t.GetDBConn(); err == nil {
		db.SetConnMaxLifetime(d)
	}
}

func (t *trackingPool) SetConnMaxIdleTime(d time.Duration) {
	if db, err := t.GetDBConn(); err == nil {
		db.SetConnMaxIdleTime(d)
	}
}

// trackingTx is a transaction that invalidates the tables written in it
// once Commit has succeeded.
type trackingTx struct {
	gorm.Tx
	engine *engine
	pool   *trackingPool // nil for a transaction begun elsewhere (trackStartedTx)

	mu      sync.Mutex
	written map[string]struct{}
}

func (t *trackingTx) record(tables []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.written == nil {
		t.written = make(map[string]struct{}, len(tables))
	}
	for _, name := range tables {
		t.written[name] = struct{}{}
	}
}

func (t *trackingTx) take() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	tables := make([]string, 0, len(t.written))
	for name := range t.written {
		tables = append(tables, name)
	}
	t.written = nil
	slices.Sort(tables)
	return tables
}

// Commit announces what the transaction wrote, commits, then invalidates it
// before returning: once Commit has returned, no instance serves older rows.
// A failed commit still ends its announcements (the bump is harmless).
func (t *trackingTx) Commit() error {
	tables := t.take()
	e := t.engine
	announced := e.announce(context.Background(), tables, false)
	err := t.Tx.Commit()
	_ = e.invalidate(context.Background(), tables, announced)
	return err
}

func (t *trackingTx) Rollback() error {
	t.take()
	return t.Tx.Rollback()
}

func (t *trackingTx) GetDBConn() (*sql.DB, error) {
	if t.pool != nil {
		return t.pool.GetDBConn()
	}
	return nil, errors.New("gormflight: transaction has no *sql.DB")
}

// trackedTx returns the trackingTx behind a statement's pool, if any. A
// PrepareStmt session on a PrepareStmt handle nests GORM's
// prepared-statement transactions two deep.
func trackedTx(pool gorm.ConnPool) *trackingTx {
	for {
		switch p := pool.(type) {
		case *trackingTx:
			return p
		case *gorm.PreparedStmtTX:
			pool = p.Tx
		default:
			return nil
		}
	}
}

// Invalidate marks tables as written, so that no instance serves entries
// computed before the call. Use it after writes made outside GORM: by
// another program, by SQL run on the *sql.DB directly, or by a trigger.
// Table names are matched as in SQL (unquoted names fold to lower case; a
// schema qualifier is ignored). If Redis cannot be reached the error is
// returned, and this instance serves the tables uncached until a background
// retry succeeds.
func (p *Plugin) Invalidate(ctx context.Context, tables ...string) error {
	norm := make([]string, 0, len(tables))
	for _, t := range tables {
		norm = append(norm, normTable(t))
	}
	slices.Sort(norm)
	return p.engine.invalidate(ctx, p.schema.graph.Load().expand(slices.Compact(norm), false), announcement{})
}

// isSelect reports whether query is a single statement that starts with the
// keyword SELECT, after white space. Data-modifying statements can hide only
// in WITH, never under a leading SELECT, so such a query needs no parsing
// for writes. A query with a semicolon may hold more statements (simple
// protocol: "SELECT ...; UPDATE ..."), so it is parsed.
func isSelect(query string) bool {
	if strings.IndexByte(query, ';') >= 0 {
		return false
	}
	query = strings.TrimLeft(query, " \t\r\n(")
	return len(query) >= 6 && strings.EqualFold(query[:6], "select") &&
		(len(query) == 6 || !isIdentByte(query[6]))
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}
