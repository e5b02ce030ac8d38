package gormflight

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"gorm.io/gorm"
)

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
	engine *engine.Engine
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
	engine *engine.Engine
	pool   *trackingPool // nil for a transaction begun elsewhere (trackStartedTx)

	mu       sync.Mutex
	written  map[string]struct{}
	implicit bool // a statement committed it implicitly (MySQL): its writes commit as they run
}

// implicitCommit reports whether the transaction's writes may commit as
// they run: a statement in it committed it implicitly (MySQL's DDL), now
// (commits) or before. Its writes are then bumped as they run, recorded
// all the same, and bumped again when it ends, Rollback included: a
// statement taken for one that commits costs extra bumps only.
func (t *trackingTx) implicitCommit(commits bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.implicit = t.implicit || commits
	return t.implicit
}

// recorded returns the tables recorded so far, sorted, and keeps them.
func (t *trackingTx) recorded() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	tables := make([]string, 0, len(t.written))
	for name := range t.written {
		tables = append(tables, name)
	}
	slices.Sort(tables)
	return tables
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
	announced := e.Announce(context.Background(), tables, false)
	err := t.Tx.Commit()
	_ = e.Invalidate(context.Background(), tables, announced)
	return err
}

// Rollback drops what the transaction wrote, unless a statement in it
// committed it implicitly: those writes stay, and are bumped again.
func (t *trackingTx) Rollback() error {
	tables := t.take()
	err := t.Tx.Rollback()
	if t.implicitCommit(false) {
		_ = t.engine.Invalidate(context.Background(), tables, engine.Announcement{})
	}
	return err
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
