package gormflight

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gormflight/gormflight/internal/dialect"
	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/gormflight/gormflight/internal/sqlscan"
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
// rollback drops them. (See internal/engine/stamps.go for why writes announce.)

// announcedKey is the setting that carries the tables a statement
// announced from the before to the after callback. It names the statement
// instance (Settings are shared by the statements of a session, and copied
// to the next one), as GORM's InstanceSet would, without building a
// string: the callbacks that read it run after every statement, cached
// hits included.
type announcedKey struct{ stmt *gorm.Statement }

// registerWriteCallbacks hooks the write tracking into every processor. For
// Create, Update and Delete the recorder runs before GORM commits the
// statement's own transaction, so the tables reach that transaction's Commit.
func (p *Plugin) registerWriteCallbacks(db *gorm.DB) error {
	cb := db.Callback()
	for _, r := range []struct {
		name string
		err  error
	}{
		{"create", cb.Create().Before("gorm:create").Register("gormflight:create_announce", p.announceWrites(true, false))},
		{"update", cb.Update().Before("gorm:update").Register("gormflight:update_announce", p.announceWrites(true, false))},
		{"delete", cb.Delete().Before("gorm:delete").Register("gormflight:delete_announce", p.announceWrites(true, false))},
		{"raw", cb.Raw().Before("gorm:raw").Register("gormflight:raw_announce", p.announceWrites(false, false))},
		{"query", cb.Query().Before("gorm:query").Register("gormflight:query_announce", p.announceWrites(false, false))},
		{"row", cb.Row().Before("gorm:row").Register("gormflight:row_announce", p.announceWrites(false, true))},
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
	if next := cb.Row().Get("gorm:row"); next != nil {
		if err := cb.Row().Replace("gorm:row", p.rowQuery(next)); err != nil {
			return fmt.Errorf("gormflight: replace gorm:row: %w", err)
		}
	}
	return nil
}

// oneResult reports whether a statement that writes returns one result
// set, which rowQuery reads to its end into an entry. A CALL, or a string
// that may hold several statements, can return several, which an entry
// cannot hold: it runs as GORM runs it, announced as held
// (announceWrites), since it may commit only after its bump.
func (p *Plugin) oneResult(query string) bool {
	k := p.dialect.Classify(query)
	return (k == sqlscan.Write || k == sqlscan.Query) && !strings.Contains(query, ";")
}

// rowQuery wraps next, the row processor's query (db.Rows() and db.Row(),
// and Raw(...).Scan, which reads through Rows). next returns the result
// unread, and a statement that writes, an UPDATE ... RETURNING, may not
// have committed then: PostgreSQL commits it once the client has read all
// of a result too large for the socket's buffers. Its bump, right after
// next, would come before the commit, and a fill in between would store
// the rows from before the write under the new generation. So a statement
// that writes is read to its end here, which completes it, and its caller
// gets the rows replayed from memory, as a cache hit's.
func (p *Plugin) rowQuery(next func(*gorm.DB)) func(*gorm.DB) {
	return func(db *gorm.DB) {
		stmt := db.Statement
		if db.Error != nil || db.DryRun || len(writtenTables(p.dialect, db, false)) == 0 ||
			!p.oneResult(stmt.SQL.String()) || !p.engine.Enter() {
			next(db)
			return
		}
		defer p.engine.Exit()
		rows := false
		if v, ok := db.Get("rows"); ok {
			rows, _ = v.(bool)
			stmt.Settings.Delete("rows")
		}
		live, err := stmt.ConnPool.QueryContext(stmt.Context, stmt.SQL.String(), stmt.Vars...)
		var ent *rowcodec.Entry
		if err == nil {
			ent, err = rowcodec.Capture(live) // closes live
		}
		db.RowsAffected = -1
		if !rows {
			stmt.Dest = p.replay.Row(stmt.Context, ent, err)
			return
		}
		if err != nil {
			_ = db.AddError(err)
			return
		}
		stmt.Dest, err = p.replay.Rows(stmt.Context, ent)
		_ = db.AddError(err)
	}
}

// writtenTables returns the tables a statement writes, as far as can be
// known now: from its SQL once built (Exec and Raw build it before the
// callbacks run), and its own table for Create, Update and Delete.
func writtenTables(d *dialect.Dialect, db *gorm.DB, withTable bool) []string {
	var tables []string
	if db.Statement.SQL.Len() > 0 {
		query := db.Statement.SQL.String()
		if withTable || d.Classify(query) != sqlscan.Select {
			_, tables = d.Tables(query)
		}
	}
	if withTable {
		for _, t := range statementTables(d, db.Statement) {
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
func statementTables(d *dialect.Dialect, stmt *gorm.Statement) []string {
	if stmt.TableExpr != nil {
		read, _ := d.Tables("SELECT * FROM " + stmt.TableExpr.SQL)
		return read
	}
	if stmt.Table == "" {
		return nil
	}
	var b strings.Builder
	stmt.QuoteTo(&b, stmt.Table)
	if t := d.NormTable(b.String()); t != "" {
		return []string{t}
	}
	return nil
}

// commitsImplicitly reports whether db's statement ends the transaction it
// runs in (COMMIT run as SQL; MySQL's DDL and transaction statements).
func (p *Plugin) commitsImplicitly(db *gorm.DB) bool {
	return db.Statement.SQL.Len() > 0 && p.dialect.CommitsImplicitly(db.Statement.SQL.String())
}

// beginsSQLTx reports whether db's statement string begins a transaction in
// SQL (BEGIN; UPDATE ...; COMMIT in one Exec): its writes are announced as
// those of a transaction the plugin cannot follow.
func (p *Plugin) beginsSQLTx(db *gorm.DB) bool {
	return db.Statement.SQL.Len() > 0 && p.dialect.ChangesSession(db.Statement.SQL.String()).Adds&dialect.AspTx != 0
}

// announceWrites returns the callback that announces the tables a statement
// is about to write: outside a transaction, before it runs (it commits as it
// runs); inside a transaction this plugin cannot follow to its commit (one
// not begun through GORM's Begin on the database, such as one begun in
// db.Connection), before it runs too, and then the announcement is held
// until its lifetime ends, since no bump can know when the commit comes.
// So is a statement of the row processor (rows) that rowQuery does not
// read to its end.
func (p *Plugin) announceWrites(withTable, rows bool) func(*gorm.DB) {
	return func(db *gorm.DB) {
		if db.DryRun || db.Error != nil {
			return
		}
		_, inTx := db.Statement.ConnPool.(gorm.TxCommitter)
		tables := writtenTables(p.dialect, db, withTable)
		if tx := trackedTx(db.Statement.ConnPool); inTx && tx != nil {
			if !tx.implicitCommit(p.commitsImplicitly(db)) {
				return // announced by the transaction's Commit
			}
			// MySQL committed the transaction before this statement (or
			// commits it now): what it wrote so far, and this statement,
			// are announced now and bumped after it (and again at its end).
			tables, inTx = dialect.MergeTables(tables, tx.recorded()), false
		}
		// A row statement whose result rowQuery leaves unread may commit
		// only after its bump.
		unread := rows && len(tables) > 0 && !p.oneResult(db.Statement.SQL.String())
		inTx = inTx || p.session.inSQLTx(db.Statement.ConnPool) || p.beginsSQLTx(db) || unread
		if a := p.engine.Announce(db.Statement.Context, p.cascadeBefore(db, tables), inTx); !a.Empty() {
			db.Statement.Settings.Store(announcedKey{db.Statement}, a)
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
		var announced engine.Announcement
		if v, ok := db.Statement.Settings.LoadAndDelete(announcedKey{db.Statement}); ok {
			announced, _ = v.(engine.Announcement)
		} else if cachedRead(db) {
			return // it wrote nothing, and announced nothing
		}
		tables := writtenTables(p.dialect, db, withTable)
		for _, t := range announced.Tables() {
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
			if !tx.implicitCommit(false) {
				return
			}
		}
		// Outside a transaction the write has committed by now. A
		// transaction this plugin cannot follow has not: its writes are
		// bumped now, and its held announcement keeps every instance from
		// serving or storing entries of the tables until the announcement
		// expires (Config.LoadTimeout), by when it has most likely committed.
		if announced.Held() || engine.UncertainOutcome(db.Error) {
			announced = engine.Announcement{} // it ends on its own: the commit may come later
		}
		_ = p.engine.Invalidate(db.Statement.Context, tables, announced)
	}
}
