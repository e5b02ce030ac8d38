package sqlflight_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/testdb"
	"github.com/gormflight/gormflight/sqlflight"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
)

// The middleware's suites run on the three databases, through *sql.DB and
// through sqlx, counted by the database (internal/testdb's gft_record).

// rig is one database: a plain *sql.DB on it (no wrapper) and a Redis
// prefix its instances share.
type rig struct {
	name   string
	t      testing.TB // whose database (for SQLite, whose file) the rig's connections open
	plain  *sql.DB
	prefix string
}

// forEachDB runs fn per database.
func forEachDB(t *testing.T, fn func(t *testing.T, r *rig)) {
	for _, name := range testdb.Names {
		t.Run(name, func(t *testing.T) {
			plain := sql.OpenDB(testdb.Connector(t, name))
			t.Cleanup(func() { _ = plain.Close() })
			testdb.Ping(t, name, plain)
			for _, s := range testdb.RecordingSQL[name] {
				if _, err := plain.Exec(s); err != nil {
					t.Fatalf("%s: %v", s, err)
				}
			}
			fn(t, &rig{name: name, t: t, plain: plain, prefix: testdb.Unique("gft-test:sqlflight:")})
		})
	}
}

// redisClient opens a client of the shared test Redis.
func redisClient(t testing.TB) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		testdb.Unavailable(t, "Redis", err)
	}
	return rdb
}

// instance is one application instance: its own *sql.DB on a wrapped
// connector, and its own Redis client.
type instance struct {
	db *sql.DB
	c  *sqlflight.Connector
}

func (r *rig) instance(t *testing.T) *instance {
	t.Helper()
	return r.instanceWith(t, nil)
}

// instanceWith is instance with a Config that mod changes (its Redis
// client, an Observer).
func (r *rig) instanceWith(t *testing.T, mod func(*sqlflight.Config)) *instance {
	t.Helper()
	cfg := sqlflight.Config{
		Redis: redisClient(t), Dialect: r.name, Prefix: r.prefix,
		RedisTimeout: 3 * time.Second, MaxWait: time.Minute,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := sqlflight.New(testdb.Connector(r.t, r.name), cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	// A caller waiting for a flight holds its connection: bound them, as
	// an application should (PostgreSQL's max_connections is 100).
	db.SetMaxOpenConns(8)
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &instance{db: db, c: c}
}

// q writes query with the database's placeholders.
func (r *rig) q(query string) string { return testdb.Placeholders(r.name, query) }

// sqlxDriver is the driver name sqlx reads bind variables by.
func (r *rig) sqlxDriver() string {
	if r.name == "postgres" {
		return "pgx"
	}
	return r.name
}

// table creates a table (id, val) with rows 1 and 2, dropped at the end.
func (r *rig) table(t *testing.T) string {
	t.Helper()
	name := testdb.Unique("gft_sqlf_")
	for _, s := range []string{
		"CREATE TABLE " + name + " (id bigint PRIMARY KEY, val varchar(64) NOT NULL)",
		"INSERT INTO " + name + " VALUES (1, 'one'), (2, 'two')",
	} {
		if _, err := r.plain.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	t.Cleanup(func() { _, _ = r.plain.Exec("DROP TABLE IF EXISTS " + name) })
	return name
}

// A cold key read by 4 instances x 25 callers at once runs once, through
// *sql.DB and through sqlx.
func TestStampede(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		for _, via := range []string{"sql.DB", "sqlx"} {
			t.Run(via, func(t *testing.T) {
				const instances, callers = 4, 25
				tag := testdb.Unique("stampede-")
				query := r.q("SELECT gft_record(?, 200) AS n, ? AS tag")
				start := make(chan struct{})
				var wg sync.WaitGroup
				errs := make(chan error, instances*callers)
				for range instances {
					in := r.instance(t)
					x := sqlx.NewDb(in.db, r.sqlxDriver())
					for range callers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							<-start
							ctx := sqlflight.WithCache(context.Background(), time.Minute)
							var row struct {
								N   int64
								Tag string
							}
							var err error
							if via == "sqlx" {
								err = x.GetContext(ctx, &row, query, tag, tag)
							} else {
								err = in.db.QueryRowContext(ctx, query, tag, tag).Scan(&row.N, &row.Tag)
							}
							if err == nil && (row.N != 1 || row.Tag != tag) {
								err = fmt.Errorf("got %+v", row)
							}
							errs <- err
						}()
					}
				}
				close(start)
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				if n := testdb.Calls(t, r.name, r.plain, tag); n != 1 {
					t.Errorf("%s ran the query %d times for %d callers, want 1", r.name, n, instances*callers)
				}
			})
		}
	})
}

// read reads the table's rows, cached, as "1:one 2:two".
func (r *rig) read(t *testing.T, db *sql.DB, table string) string {
	t.Helper()
	ctx := sqlflight.WithCache(context.Background(), time.Minute)
	return readNames(t, db, ctx, "SELECT id, val FROM "+table+" ORDER BY id")
}

// After a write through one instance returns, both instances read it:
// ExecContext, a transaction, a prepared statement and sqlx.
func TestReadAfterWrite(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		for _, c := range []struct {
			name  string
			write func(in *instance, table string) error
		}{
			{"Exec", func(in *instance, table string) error {
				_, err := in.db.Exec(r.q("UPDATE "+table+" SET val = ? WHERE id = 1"), "new")
				return err
			}},
			{"Transaction", func(in *instance, table string) error {
				tx, err := in.db.Begin()
				if err != nil {
					return err
				}
				if _, err := tx.Exec(r.q("UPDATE "+table+" SET val = ? WHERE id = 1"), "new"); err != nil {
					_ = tx.Rollback()
					return err
				}
				return tx.Commit()
			}},
			{"Prepared", func(in *instance, table string) error {
				st, err := in.db.Prepare(r.q("UPDATE " + table + " SET val = ? WHERE id = 1"))
				if err != nil {
					return err
				}
				defer st.Close()
				_, err = st.Exec("new")
				return err
			}},
			{"sqlx", func(in *instance, table string) error {
				x := sqlx.NewDb(in.db, r.sqlxDriver())
				_, err := x.NamedExec("UPDATE "+table+" SET val = :val WHERE id = :id", map[string]any{"val": "new", "id": 1})
				return err
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				table := r.table(t)
				a, b := r.instance(t), r.instance(t)
				before := r.read(t, a.db, table)
				hits := b.c.Stats().Hits
				if got := r.read(t, b.db, table); got != before || b.c.Stats().Hits == hits {
					t.Fatalf("B read %s (hits %d -> %d), want %s from the cache", got, hits, b.c.Stats().Hits, before)
				}
				if err := c.write(a, table); err != nil {
					t.Fatal(err)
				}
				for name, in := range map[string]*instance{"A": a, "B": b} {
					if got := r.read(t, in.db, table); got != "1:new 2:two" {
						t.Errorf("%s read %s after the write returned, want 1:new 2:two", name, got)
					}
				}
			})
		}
	})
}

// A rolled-back transaction invalidates nothing a reader needs, and a
// query inside a transaction runs uncached.
func TestTransactionRollback(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		table := r.table(t)
		in := r.instance(t)
		before := r.read(t, in.db, table)
		tx, err := in.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(r.q("UPDATE "+table+" SET val = ? WHERE id = 1"), "rolled-back"); err != nil {
			t.Fatal(err)
		}
		var val string
		ctx := sqlflight.WithCache(context.Background(), time.Minute)
		if err := tx.QueryRowContext(ctx, r.q("SELECT val FROM "+table+" WHERE id = ?"), 1).Scan(&val); err != nil || val != "rolled-back" {
			t.Fatalf("the transaction read %q, %v: want its own write", val, err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if got := r.read(t, in.db, table); got != before {
			t.Errorf("after the rollback read %s, want %s", got, before)
		}
	})
}

// WithCache with a TTL out of range fails the query; a query without
// WithCache runs uncached.
func TestInvalidTTLAndPassThrough(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		in := r.instance(t)
		var n int
		err := in.db.QueryRowContext(sqlflight.WithCache(context.Background(), 0), "SELECT 1").Scan(&n)
		if !errors.Is(err, sqlflight.ErrInvalidTTL) {
			t.Errorf("TTL 0: %v, want ErrInvalidTTL", err)
		}
		tag := testdb.Unique("plain-")
		for range 2 {
			if err := in.db.QueryRow(r.q("SELECT gft_record(?, 0)"), tag).Scan(&n); err != nil {
				t.Fatal(err)
			}
		}
		if got := testdb.Calls(t, r.name, r.plain, tag); got != 2 {
			t.Errorf("two reads without WithCache ran %d times, want 2", got)
		}
	})
}
