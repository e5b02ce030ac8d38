package sqlflight_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/testdb"
	"github.com/gormflight/gormflight/sqlflight"
	"github.com/jmoiron/sqlx"
)

// Linearizability through the wrapper (internal/testdb's suite): reads
// through *sql.DB and sqlx, writes through Exec, a transaction and sqlx's
// NamedExec, on three instances; and the checker's control, whose
// injected bug is writes through a *sql.DB without the wrapper.
func TestLinearizability(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		base := r.linRegisters(t)
		clients := make([]testdb.LinClient, 3)
		for i := range clients {
			in := r.instance(t)
			clients[i] = r.linClient(in, in.db, base)
		}
		testdb.LinRun(t, clients, 8, 400)
	})
}

func TestLinearizabilityCheckerCatchesMissingInvalidation(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		testdb.LinControl(t, func(t *testing.T, plainWrites bool) []testdb.LinClient {
			base := r.linRegisters(t)
			a, b := r.instance(t), r.instance(t)
			wa, wb := a.db, b.db
			if plainWrites {
				wa, wb = r.plain, r.plain // no wrapper: its writes bump nothing
			}
			return []testdb.LinClient{r.linClient(a, wa, base), r.linClient(b, wb, base)}
		})
	})
}

// linRegisters makes a run's registers and returns the first id.
func (r *rig) linRegisters(t *testing.T) int64 {
	t.Helper()
	for _, s := range testdb.LinSchema {
		if _, err := r.plain.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	base := testdb.LinBase()
	statements, args := testdb.LinRegisterRows(base)
	for i, s := range statements {
		if _, err := r.plain.Exec(r.q(s), args[i]...); err != nil {
			t.Fatal(err)
		}
	}
	return base
}

// linClient reads the registers through in and writes them through
// writer (in's own *sql.DB, or one without the wrapper).
func (r *rig) linClient(in *instance, writer *sql.DB, base int64) testdb.LinClient {
	cached := func() context.Context { return sqlflight.WithCache(context.Background(), time.Minute) }
	x := sqlx.NewDb(in.db, r.sqlxDriver())
	update := r.q("UPDATE gft_lin_reg SET val = ? WHERE id = ?")
	return testdb.LinClient{
		First: func(k int) (v int64, err error) {
			err = in.db.QueryRowContext(cached(), r.q("SELECT val FROM gft_lin_reg WHERE id = ?"), base+int64(k)).Scan(&v)
			return v, err
		},
		All: func() ([]int64, error) {
			var rows []struct{ ID, Val int64 }
			err := x.SelectContext(cached(), &rows, r.q("SELECT id, val FROM gft_lin_reg WHERE id BETWEEN ? AND ? ORDER BY id"), base, base+testdb.LinRegisters-1)
			if err != nil {
				return nil, err
			}
			ids, vals := make([]int64, len(rows)), make([]int64, len(rows))
			for i, row := range rows {
				ids[i], vals[i] = row.ID, row.Val
			}
			return testdb.LinAll(base, ids, vals)
		},
		Join: func(k int) (v int64, err error) {
			var name string
			err = in.db.QueryRowContext(cached(), r.q("SELECT r.val, n.name FROM gft_lin_reg r JOIN gft_lin_name n ON n.id = r.id WHERE r.id = ?"), base+int64(k)).Scan(&v, &name)
			return v, err
		},
		Writes: []testdb.LinWrite{
			{Kind: "Exec", Write: func(k int, v int64) error {
				_, err := writer.Exec(update, v, base+int64(k))
				return err
			}},
			{Kind: "Transaction", Write: func(k int, v int64) error {
				tx, err := writer.Begin()
				if err != nil {
					return err
				}
				if _, err := tx.Exec(update, v, base+int64(k)); err != nil {
					_ = tx.Rollback()
					return err
				}
				return tx.Commit()
			}},
			{Kind: "sqlx", Write: func(k int, v int64) error {
				_, err := sqlx.NewDb(writer, r.sqlxDriver()).NamedExec("UPDATE gft_lin_reg SET val = :val WHERE id = :id", map[string]any{"val": v, "id": base + int64(k)})
				return err
			}},
		},
		Hits: func() uint64 { return in.c.Stats().Hits },
	}
}

// A connection whose statements changed its session reads uncached, and
// BEGIN run as SQL makes its writes wait for the COMMIT: after it returns,
// every instance reads them.
func TestSessionsAndSQLTransactions(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		table := r.table(t)
		a, b := r.instance(t), r.instance(t)
		before := r.read(t, b.db, table) // cached
		ctx := context.Background()
		conn, err := a.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, s := range []string{"BEGIN", r.q("UPDATE " + table + " SET val = 'new' WHERE id = 1")} {
			if _, err := conn.ExecContext(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		var val string
		if err := conn.QueryRowContext(sqlflight.WithCache(ctx, time.Minute), r.q("SELECT val FROM "+table+" WHERE id = ?"), 1).Scan(&val); err != nil || val != "new" {
			t.Fatalf("the transaction read %q, %v: want its own write", val, err)
		}
		if got := r.read(t, b.db, table); got != before {
			t.Errorf("B read %s while the transaction was open, want the committed %s", got, before)
		}
		if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
		for name, in := range map[string]*instance{"A": a, "B": b} {
			if got := r.read(t, in.db, table); got != "1:new 2:two" {
				t.Errorf("%s read %s after COMMIT returned, want 1:new 2:two", name, got)
			}
		}
	})
}
