package sqlflight_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/testdb"
	"github.com/gormflight/gormflight/sqlflight"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Defects an adversarial review found in sqlflight: each test failed before
// its fix, and its comment says what the defect was.

// reviewCount reads count(*) of table, cached.
func reviewCount(t *testing.T, db *sql.DB, table string) int64 {
	t.Helper()
	var n int64
	ctx := sqlflight.WithCache(context.Background(), time.Minute)
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A writing QueryContext (DELETE ... RETURNING) invalidates when
// QueryContext returns, before the statement commits (the commit comes when
// the rows are read and closed). A read on another instance in between
// fills the cache with the rows from before the write, and keeps serving
// them after rows.Close has returned.
func TestDefectReturningQueryStaleAfterClose(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		table := r.table(t)
		n, pad := 2, "val"
		if r.name != "sqlite" {
			// Enough bytes that the server blocks on the socket before the
			// statement ends (and so before its autocommit).
			n, pad = 600, "repeat('x', 100000)"
			if _, err := r.plain.Exec(r.q("INSERT INTO " + table + " (id, val) SELECT id + 2, val FROM (SELECT id, val FROM " + table + ") s")); err != nil {
				t.Fatal(err)
			}
			for cur := 4; cur < n; cur *= 2 {
				if _, err := r.plain.Exec(fmt.Sprintf("INSERT INTO %s (id, val) SELECT id + %d, val FROM %s WHERE id + %d <= %d", table, cur, table, cur, n)); err != nil {
					t.Fatal(err)
				}
			}
		}
		a, b := r.instance(t), r.instance(t)
		if got := reviewCount(t, b.db, table); got != int64(n) {
			t.Fatalf("before: count %d, want %d", got, n)
		}
		rows, err := a.db.QueryContext(context.Background(), "DELETE FROM "+table+" RETURNING id, "+pad)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		during := reviewCount(t, b.db, table) // another instance reads meanwhile
		got := 0
		for rows.Next() {
			got++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		if got != n {
			t.Fatalf("RETURNING gave %d rows, want %d", got, n)
		}
		var direct int64
		if err := r.plain.QueryRow("SELECT count(*) FROM " + table).Scan(&direct); err != nil || direct != 0 {
			t.Fatalf("the database counts %d (%v) after the delete, want 0", direct, err)
		}
		for name, in := range map[string]*instance{"A": a, "B": b} {
			if c := reviewCount(t, in.db, table); c != 0 {
				t.Errorf("%s: count %d after the DELETE ... RETURNING's rows were closed, want 0 (read during the statement: %d)", name, c, during)
			}
		}
	})
}

// sql.Conn.Raw hands the driver's own connection to the callback without
// the wrapper; with it, the callback gets the wrapper's unexported *conn,
// so code that reaches the driver (pgx's *stdlib.Conn for CopyFrom,
// LISTEN, ...; the MySQL or SQLite conn) fails its type assertion.
func TestDefectRawConnIsTheDriversConn(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		in := r.instance(t)
		typeOf := func(db *sql.DB) string {
			c, err := db.Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var s string
			if err := c.Raw(func(dc any) error { s = fmt.Sprintf("%T", sqlflight.Unwrap(dc)); return nil }); err != nil {
				t.Fatal(err)
			}
			return s
		}
		if got, want := typeOf(in.db), typeOf(r.plain); got != want {
			t.Errorf("sqlflight.Unwrap of sql.Conn.Raw's connection gave a %s, want the driver's %s (as without the wrapper)", got, want)
		}
	})
}

// DDL run inside a transaction begun in SQL (BEGIN; CREATE TABLE ... REFERENCES
// ... ON DELETE CASCADE; COMMIT, through Exec on a sql.Conn) reloads the
// foreign-key graph right after the CREATE, on the wrapper's other pool,
// which cannot see the uncommitted table; nothing reloads it after COMMIT.
// For a minute, a delete of a parent row then does not invalidate the
// child table its cascade empties. The autocommit control passes.
func TestDefectDDLInSQLTransactionMissesCascade(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		if r.name == "mysql" {
			t.Skip("MySQL's DDL commits implicitly")
		}
		for _, mode := range []string{"autocommit", "BEGIN in SQL"} {
			t.Run(mode, func(t *testing.T) {
				parent := r.table(t)
				child := testdb.Unique("gft_sqlf_child_")
				t.Cleanup(func() { _, _ = r.plain.Exec("DROP TABLE IF EXISTS " + child) })
				// LoadTimeout bounds a held announcement's life (the CREATE run
				// in an SQL transaction is held): 2 s instead of a minute.
				short := func(c *sqlflight.Config) { c.LoadTimeout = 2 * time.Second }
				a, b := r.instanceWith(t, short), r.instanceWith(t, short)
				_ = r.read(t, a.db, parent) // A's graph is loaded
				ctx := context.Background()
				c, err := a.db.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				stmts := []string{
					"CREATE TABLE " + child + " (id bigint PRIMARY KEY, pid bigint NOT NULL REFERENCES " + parent + "(id) ON DELETE CASCADE)",
					"INSERT INTO " + child + " VALUES (1, 1)",
				}
				if mode != "autocommit" {
					stmts = append(append([]string{"BEGIN"}, stmts...), "COMMIT")
				}
				for _, s := range stmts {
					if _, err := c.ExecContext(ctx, s); err != nil {
						t.Fatalf("%s: %v", s, err)
					}
				}
				_ = c.Close()
				time.Sleep(3 * time.Second) // the held announcement ends; the graph is 3 s old
				if got := reviewCount(t, b.db, child); got != 1 {
					t.Fatalf("child count %d, want 1", got)
				}
				if _, err := a.db.Exec(r.q("DELETE FROM "+parent+" WHERE id = ?"), 1); err != nil {
					t.Fatal(err)
				}
				for name, in := range map[string]*instance{"A": a, "B": b} {
					if got := reviewCount(t, in.db, child); got != 0 {
						t.Errorf("%s: child count %d after the parent's row (ON DELETE CASCADE) was deleted, want 0", name, got)
					}
				}
			})
		}
	})
}

// legacyConnector's connections implement only the pre-context interfaces
// (driver.Execer, driver.Queryer) and cannot prepare statements, as some
// drivers and proxies do. database/sql runs Exec and Query through them.
type legacyConnector struct{ inner driver.Connector }

func (l legacyConnector) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := l.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &legacyConn{in: c}, nil
}
func (l legacyConnector) Driver() driver.Driver { return l.inner.Driver() }

type legacyConn struct{ in driver.Conn }

var errNoPrepare = errors.New("legacy driver: statements cannot be prepared")

func (c *legacyConn) Prepare(string) (driver.Stmt, error) { return nil, errNoPrepare }
func (c *legacyConn) Close() error                        { return c.in.Close() }
func (c *legacyConn) Begin() (driver.Tx, error)           { return c.in.Begin() } //nolint:staticcheck
func named(args []driver.Value) []driver.NamedValue {
	out := make([]driver.NamedValue, len(args))
	for i, a := range args {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return out
}
func (c *legacyConn) Exec(q string, args []driver.Value) (driver.Result, error) { //nolint:staticcheck
	return c.in.(driver.ExecerContext).ExecContext(context.Background(), q, named(args))
}
func (c *legacyConn) Query(q string, args []driver.Value) (driver.Rows, error) { //nolint:staticcheck
	return c.in.(driver.QueryerContext).QueryContext(context.Background(), q, named(args))
}

// Exec and Query on a driver with only driver.Execer / driver.Queryer:
// database/sql uses them; the wrapper answers ErrSkip, so database/sql
// prepares instead, and a driver that cannot prepare fails.
func TestDefectLegacyExecerQueryer(t *testing.T) {
	tb := t
	plain := sql.OpenDB(legacyConnector{testdb.Connector(tb, "sqlite")})
	t.Cleanup(func() { _ = plain.Close() })
	if _, err := plain.Exec("CREATE TABLE legacy (id integer PRIMARY KEY, val text)"); err != nil {
		t.Fatalf("without the wrapper: %v", err)
	}
	c, err := sqlflight.New(legacyConnector{testdb.Connector(tb, "sqlite")}, sqlflight.Config{
		Redis: redisClient(t), Dialect: "sqlite", Prefix: testdb.Unique("gft-test:sqlflight:"),
	})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Exec("INSERT INTO legacy VALUES (?, ?)", 1, "one"); err != nil {
		t.Errorf("Exec through the wrapper: %v, want nil as without it", err)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM legacy").Scan(&n); err != nil {
		t.Errorf("Query through the wrapper: %v, want nil as without it", err)
	}
}

// pgx-specific arguments, with and without WithCache, give what they give
// without the wrapper.
func TestDefectPgxArgs(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		if r.name != "postgres" {
			t.Skip("pgx only")
		}
		table := r.table(t)
		in := r.instance(t)
		cases := []struct {
			name  string
			query string
			args  []any
		}{
			{"array", "SELECT id, val FROM " + table + " WHERE id = ANY($1) ORDER BY id", []any{[]int64{1, 2}}},
			{"NamedArgs", "SELECT id, val FROM " + table + " WHERE id = @id", []any{pgx.NamedArgs{"id": 2}}},
			{"pgtype", "SELECT id, val FROM " + table + " WHERE id = $1", []any{pgtype.Int8{Int64: 1, Valid: true}}},
			{"simple protocol", "SELECT id, val FROM " + table + " WHERE id = $1", []any{pgx.QueryExecModeSimpleProtocol, 1}},
			{"sql.Named", "SELECT id, val FROM " + table + " WHERE id = $1", []any{sql.Named("id", 1)}},
			{"NullInt", "SELECT id, val FROM " + table + " WHERE id = $1", []any{sql.NullInt64{Int64: 2, Valid: true}}},
		}
		run := func(ctx context.Context, db *sql.DB, q string, args []any) string {
			rows, err := db.QueryContext(ctx, q, args...)
			if err != nil {
				return "error: " + err.Error()
			}
			defer rows.Close()
			var out []string
			for rows.Next() {
				var id int64
				var val string
				if err := rows.Scan(&id, &val); err != nil {
					return "scan: " + err.Error()
				}
				out = append(out, fmt.Sprintf("%d:%s", id, val))
			}
			if err := rows.Err(); err != nil {
				return "rows: " + err.Error()
			}
			return strings.Join(out, " ")
		}
		for _, c := range cases {
			want := run(context.Background(), r.plain, c.query, c.args)
			if got := run(context.Background(), in.db, c.query, c.args); got != want {
				t.Errorf("%s without WithCache: %q, want %q", c.name, got, want)
			}
			for i := range 2 {
				if got := run(sqlflight.WithCache(context.Background(), time.Minute), in.db, c.query, c.args); got != want {
					t.Errorf("%s with WithCache (run %d): %q, want %q", c.name, i, got, want)
				}
			}
		}
	})
}

// A write whose context ends while it waits on a row lock: go-sql-driver
// closes its socket and returns, the wrapper bumps its tables and ends the
// announcement; but MariaDB's thread keeps waiting for the lock and commits
// the UPDATE later. Another instance fills its cache in between with the
// row from before the write, and serves it after the database has it.
func TestDefectCancelledWriteCommitsLater(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		if r.name != "mysql" {
			t.Skip("pgx cancels the statement on the server; SQLite interrupts it")
		}
		table := r.table(t)
		a, b := r.instance(t), r.instance(t)
		if got := r.read(t, b.db, table); got != "1:one 2:two" {
			t.Fatalf("before: %s", got)
		}
		lock, err := r.plain.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lock.Exec("SELECT val FROM " + table + " WHERE id = 1 FOR UPDATE"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, werr := a.db.ExecContext(ctx, "UPDATE "+table+" SET val = 'new' WHERE id = 1")
		t.Logf("the write returned %v", werr)
		during := r.read(t, b.db, table) // read after the write returned
		if err := lock.Commit(); err != nil {
			t.Fatal(err)
		}
		var val string
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if err := r.plain.QueryRow("SELECT val FROM " + table + " WHERE id = 1").Scan(&val); err != nil {
				t.Fatal(err)
			}
			if val == "new" {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if val != "new" {
			t.Skipf("the server did not apply the cancelled write (%s)", val)
		}
		if got := r.read(t, b.db, table); got != "1:new 2:two" {
			t.Errorf("B reads %s after the database holds 1:new (read while the write was pending: %s)", got, during)
		}
	})
}

// closeCounter is a connector with Close, counting its calls.
type closeCounter struct {
	driver.Connector
	n *int
}

func (c closeCounter) Close() error {
	*c.n++
	if *c.n > 1 {
		return errors.New("connector closed twice")
	}
	return nil
}

// Closing the *sql.DB closes the inner connector twice: once through the
// wrapper's own pool (sql.DB.Close closes its connector) and once more
// explicitly.
func TestDefectInnerConnectorClosedTwice(t *testing.T) {
	n := 0
	c, err := sqlflight.New(closeCounter{testdb.Connector(t, "sqlite"), &n}, sqlflight.Config{
		Redis: redisClient(t), Dialect: "sqlite", Prefix: testdb.Unique("gft-test:sqlflight:"),
	})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	err = db.Close()
	if n != 1 || err != nil {
		t.Errorf("db.Close: inner connector closed %d times, error %v; want once, nil", n, err)
	}
}

// A PostgreSQL DO block that updates a table runs through Exec and
// invalidates nothing: the analyser reads no write in it (nor "*").
func TestDefectDOBlockWrite(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		if r.name != "postgres" {
			t.Skip("PostgreSQL's DO")
		}
		table := r.table(t)
		a, b := r.instance(t), r.instance(t)
		r.read(t, b.db, table)
		if _, err := a.db.Exec("DO $$ BEGIN UPDATE " + table + " SET val = 'new' WHERE id = 1; END $$"); err != nil {
			t.Fatal(err)
		}
		if got := r.read(t, b.db, table); got != "1:new 2:two" {
			t.Errorf("B reads %s after the DO block returned, want 1:new 2:two", got)
		}
	})
}

// Invalidate on a Connector whose *sql.DB opened no connection yet expands
// nothing: the foreign-key graph is read by the first Connect. A parent
// invalidated after a cascading delete run elsewhere leaves the child's
// entries served.
func TestDefectInvalidateBeforeFirstConnectSkipsCascade(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		for _, pinged := range []bool{true, false} {
			t.Run(fmt.Sprintf("pinged=%v", pinged), func(t *testing.T) { r.invalidateCascade(t, pinged) })
		}
	})
}

func (r *rig) invalidateCascade(t *testing.T, pinged bool) {
	{
		parent := r.table(t)
		child := testdb.Unique("gft_sqlf_child_")
		for _, s := range []string{
			"CREATE TABLE " + child + " (id bigint PRIMARY KEY, pid bigint NOT NULL REFERENCES " + parent + "(id) ON DELETE CASCADE)",
			"INSERT INTO " + child + " VALUES (1, 1)",
		} {
			if _, err := r.plain.Exec(s); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { _, _ = r.plain.Exec("DROP TABLE IF EXISTS " + child) })
		b := r.instance(t)
		if got := reviewCount(t, b.db, child); got != 1 {
			t.Fatalf("child count %d, want 1", got)
		}
		// A write outside the wrapper, then an invalidating service that
		// has not used its pool yet.
		if _, err := r.plain.Exec(r.q("DELETE FROM "+parent+" WHERE id = ?"), 1); err != nil {
			t.Fatal(err)
		}
		x := r.instance(t)
		if pinged { // the control: the graph is read
			if err := x.db.Ping(); err != nil {
				t.Fatal(err)
			}
		}
		if err := x.c.Invalidate(context.Background(), parent); err != nil {
			t.Fatal(err)
		}
		if got := reviewCount(t, b.db, child); got != 0 {
			t.Errorf("child count %d after Invalidate(%s) of its ON DELETE CASCADE parent, want 0", got, parent)
		}
	}
}

// ccConnector's statements convert arguments with a driver.ColumnConverter
// that takes driver.Values only, relying on database/sql to call a
// driver.Valuer's Value first (as database/sql's ccChecker does).
type ccConnector struct{ inner driver.Connector }

func (c ccConnector) Connect(ctx context.Context) (driver.Conn, error) {
	in, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &ccConn{in: in}, nil
}
func (c ccConnector) Driver() driver.Driver { return c.inner.Driver() }

type ccConn struct{ in driver.Conn }

func (c *ccConn) Prepare(q string) (driver.Stmt, error) {
	s, err := c.in.Prepare(q)
	if err != nil {
		return nil, err
	}
	return &ccStmt{in: s}, nil
}
func (c *ccConn) Close() error              { return c.in.Close() }
func (c *ccConn) Begin() (driver.Tx, error) { return c.in.Begin() } //nolint:staticcheck

type ccStmt struct{ in driver.Stmt }

func (s *ccStmt) Close() error  { return s.in.Close() }
func (s *ccStmt) NumInput() int { return s.in.NumInput() }
func (s *ccStmt) Exec(args []driver.Value) (driver.Result, error) { //nolint:staticcheck
	return s.in.(driver.StmtExecContext).ExecContext(context.Background(), named(args))
}
func (s *ccStmt) Query(args []driver.Value) (driver.Rows, error) { //nolint:staticcheck
	return s.in.(driver.StmtQueryContext).QueryContext(context.Background(), named(args))
}
func (s *ccStmt) ColumnConverter(int) driver.ValueConverter { return strictConverter{} }

type strictConverter struct{}

func (strictConverter) ConvertValue(v any) (driver.Value, error) {
	if driver.IsValue(v) {
		return v, nil
	}
	return nil, fmt.Errorf("strict converter: %T is no driver.Value", v)
}

// A Valuer argument of a driver whose statements have a ColumnConverter:
// database/sql calls Value before the converter; the wrapper's
// stmt.CheckNamedValue hands the converter the Valuer itself.
func TestDefectColumnConverterGetsValuer(t *testing.T) {
	plain := sql.OpenDB(ccConnector{testdb.Connector(t, "sqlite")})
	t.Cleanup(func() { _ = plain.Close() })
	if _, err := plain.Exec("CREATE TABLE cc (id integer PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	arg := sql.NullInt64{Int64: 5, Valid: true}
	if _, err := plain.Exec("INSERT INTO cc VALUES (?)", arg); err != nil {
		t.Fatalf("without the wrapper: %v", err)
	}
	c, err := sqlflight.New(ccConnector{testdb.Connector(t, "sqlite")}, sqlflight.Config{
		Redis: redisClient(t), Dialect: "sqlite", Prefix: testdb.Unique("gft-test:sqlflight:"),
	})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { _ = db.Close() })
	arg.Int64 = 6
	if _, err := db.Exec("INSERT INTO cc VALUES (?)", arg); err != nil {
		t.Errorf("through the wrapper: %v, want nil as without it", err)
	}
}

// MySQL's LOCK TABLES ... WRITE on a sql.Conn, then a cached read of the
// table on that same connection: without the wrapper it runs on the
// connection that holds the lock; with it, the load runs on the wrapper's
// own pool and waits for the caller's own lock (lock_wait_timeout, a day
// by default on MariaDB): a self-deadlock.
func TestDefectLockTablesSelfDeadlock(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		if r.name != "mysql" {
			t.Skip("MySQL's LOCK TABLES")
		}
		table := r.table(t)
		in := r.instance(t)
		ctx := context.Background()
		c, err := in.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.ExecContext(ctx, "LOCK TABLES "+table+" WRITE"); err != nil {
			t.Fatal(err)
		}
		defer c.ExecContext(ctx, "UNLOCK TABLES") //nolint:errcheck
		qctx, cancel := context.WithTimeout(sqlflight.WithCache(ctx, time.Minute), 3*time.Second)
		defer cancel()
		var n int
		start := time.Now()
		if err := c.QueryRowContext(qctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 2 {
			t.Errorf("a cached read on the connection holding LOCK TABLES: %d, %v after %v; want 2, nil at once", n, err, time.Since(start).Round(time.Millisecond))
		}
	})
}

// A cached query whose caller gives up (its context ends) leaves its flight
// running on its arguments. When the arguments are not all plain values,
// they were not copied, and a []byte argument the caller reuses after
// the call returned is read by the load later: the entry stored under the
// key of the first bytes holds the rows of the second.
func TestDefectAbandonedFlightReadsReusedBuffer(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		if r.name != "postgres" {
			t.Skip("pgx passes pgtype values through")
		}
		in := r.instance(t)
		query := "SELECT encode($2::bytea, 'escape') AS b, $1::int8 AS n, pg_sleep(0.3)::text AS s"
		buf := []byte("aaa")
		n := pgtype.Int8{Int64: 1, Valid: true} // keyable, but no plain value: the args are not frozen
		ctx, cancel := context.WithTimeout(sqlflight.WithCache(context.Background(), time.Minute), 50*time.Millisecond)
		var got string
		err := in.db.QueryRowContext(ctx, query, n, buf).Scan(&got, new(int64), new(string))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("first call: %v, want the deadline", err)
		}
		copy(buf, "bbb") // the caller's buffer, reused once its call returned
		time.Sleep(600 * time.Millisecond)
		err = in.db.QueryRowContext(sqlflight.WithCache(context.Background(), time.Minute), query, n, []byte("aaa")).Scan(&got, new(int64), new(string))
		if err != nil || got != "aaa" {
			t.Errorf("cached query with argument \"aaa\": %q, %v; want \"aaa\"", got, err)
		}
	})
}

// Wrap with a Config New refuses returns a Connector whose Close does not
// close the inner connector, which sql.DB.Close closes without the wrapper.
func TestDefectWrapErrorLeaksInnerConnector(t *testing.T) {
	n := 0
	db := sql.OpenDB(sqlflight.Wrap(closeCounter{testdb.Connector(t, "sqlite"), &n}, sqlflight.Config{Dialect: "sqlite"}))
	if err := db.Ping(); !errors.Is(err, sqlflight.ErrNoRedis) {
		t.Fatalf("ping: %v, want ErrNoRedis", err)
	}
	_ = db.Close()
	if n != 1 {
		t.Errorf("db.Close closed the inner connector %d times, want 1", n)
	}
}

// An in-memory SQLite database is refused: fills run on the wrapper's own
// pool, whose connections would read another, empty database.
func TestDefectSQLiteInMemoryRefused(t *testing.T) {
	testdb.RegisterSQLiteRecording()
	plain, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	c, err := sqlflight.New(plainConnector{plain.Driver(), ":memory:"}, sqlflight.Config{
		Redis: redisClient(t), Dialect: "sqlite", Database: "memory", Prefix: testdb.Unique("gft-test:sqlflight:"),
	})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	if err := db.Ping(); !errors.Is(err, sqlflight.ErrUnsupportedDialect) {
		t.Errorf("an in-memory SQLite database: %v, want ErrUnsupportedDialect", err)
	}
}

// plainConnector opens a driver's connections by DSN.
type plainConnector struct {
	d   driver.Driver
	dsn string
}

func (c plainConnector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c plainConnector) Driver() driver.Driver                        { return c.d }

// A flight goes on after the caller that started it gave up, and runs the
// query once the lock is free. The caller's Valuer, changed from id 1 to
// id 2 after its call returned, must not make the flight store id 2's rows
// under id 1's key, nor may the flight read it at all: it is the caller's
// again. PostgreSQL only: pgx takes arguments as they are, the
// other drivers turn a Valuer into its value before the wrapper sees it.
func TestFlightOutlivingCallerIgnoresChangedArgs(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		if r.name != "postgres" {
			t.Skip("the driver passes the wrapper Values, not Valuers")
		}
		table := r.table(t)
		gate := table + "_gate"
		// gate(1) sleeps 400 ms and fails while the _fail table has a row.
		for _, s := range []string{
			"CREATE TABLE " + table + "_fail (on_ bool)",
			"INSERT INTO " + table + "_fail VALUES (true)",
			`CREATE FUNCTION ` + gate + `(p_id bigint) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	IF p_id = 1 AND EXISTS (SELECT 1 FROM ` + table + `_fail) THEN
		PERFORM pg_sleep(0.4);
		RAISE EXCEPTION 'gate failing';
	END IF;
	RETURN true;
END $$`,
		} {
			if _, err := r.plain.Exec(s); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() {
			_, _ = r.plain.Exec("DROP FUNCTION IF EXISTS " + gate + "(bigint)")
			_, _ = r.plain.Exec("DROP TABLE IF EXISTS " + table + "_fail")
		})
		a, b := r.instance(t), r.instance(t)
		q := "SELECT val FROM " + table + " WHERE id = $1 AND " + gate + "($2)"
		read := func(ctx context.Context, in *instance, id *testdb.MutableID) ([]string, error) {
			rows, err := in.db.QueryContext(sqlflight.WithCache(ctx, time.Minute), q, id, id)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			var vals []string
			for rows.Next() {
				var v string
				if err := rows.Scan(&v); err != nil {
					return nil, err
				}
				vals = append(vals, v)
			}
			return vals, rows.Err()
		}
		rdb := redisClient(t)
		keys := func(kind string) int {
			ks, err := rdb.Keys(context.Background(), r.prefix+"*:"+kind).Result()
			if err != nil {
				t.Fatal(err)
			}
			return len(ks)
		}
		// B loads id 1 and holds the key's lock for 400 ms, then fails.
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = read(context.Background(), b, testdb.NewMutableID(1))
		}()
		testdb.WaitFor(t, "B to hold the lock", func() bool { return keys("l") == 1 })
		// A asks for id 1, gives up while its flight waits for B's lock,
		// then reuses its argument for id 2.
		id := testdb.NewMutableID(1)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		got, err := read(ctx, a, id)
		cancel()
		if err == nil {
			t.Fatalf("A's read returned %q while B held the lock: the test cannot tell", got)
		}
		calls := id.Calls()
		id.Set(2)
		// B's query has passed its check of the _fail table: it still
		// fails. A's flight, which takes the lock then, succeeds.
		if _, err := r.plain.Exec("DELETE FROM " + table + "_fail"); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for _, in := range []*instance{a, b} {
			got, err := read(context.Background(), in, testdb.NewMutableID(1))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, []string{"one"}) {
				t.Errorf("id 1 read %q, want [one]: id 1's key holds another query's rows", got)
			}
		}
		// A's read waited for A's flight, if it still ran.
		if n := id.Calls() - calls; n != 0 {
			t.Errorf("the flight called the Value of the caller's argument %d times after the call returned", n)
		}
	})
}
