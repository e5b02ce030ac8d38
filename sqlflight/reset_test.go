package sqlflight_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/testdb"
	"github.com/gormflight/gormflight/sqlflight"
)

// A reset of a connection's session counts only once it surely took
// effect. Each case sets search_path to tenant B's schema on a *sql.Conn,
// then resets in a way PostgreSQL undoes: inside a transaction that rolls
// back (whole, or to a savepoint), or in a string of statements that fails
// (rolled back whole). The connection is still in B's schema, so its
// cached read must be B's rows, not the pool's entry (tenant A's). Each
// reset used to count, and the cached read returned A's rows.
func TestUndoneResetKeepsSession(t *testing.T) {
	for _, c := range []struct {
		name  string
		reset func(ctx context.Context, conn *sql.Conn) error
	}{
		{"rolled back", func(ctx context.Context, conn *sql.Conn) error {
			tx, err := conn.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "RESET ALL"); err != nil {
				return err
			}
			return tx.Rollback()
		}},
		{"rolled back to a savepoint", func(ctx context.Context, conn *sql.Conn) error {
			tx, err := conn.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			for _, s := range []string{"SAVEPOINT s1", "RESET ALL", "ROLLBACK TO SAVEPOINT s1"} {
				if _, err := tx.ExecContext(ctx, s); err != nil {
					return fmt.Errorf("%s: %w", s, err)
				}
			}
			return tx.Commit()
		}},
		{"failed", func(ctx context.Context, conn *sql.Conn) error {
			if _, err := conn.ExecContext(ctx, "RESET ALL; SELECT 1/0"); err == nil {
				return fmt.Errorf("RESET ALL; SELECT 1/0 succeeded; the test needs it to fail")
			}
			return nil
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			in, table, schema := tenantTables(t)
			ctx := context.Background()
			cached := sqlflight.WithCache(ctx, time.Minute)
			q := "SELECT id, name FROM " + table + " ORDER BY id"
			if got := readNames(t, in.db, cached, q); got != "1:tenant-a 2:tenant-a2" {
				t.Fatalf("the pool's cached read returned %s before the test", got)
			}
			conn, err := in.db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.ExecContext(ctx, "SET search_path TO "+schema); err != nil {
				t.Fatal(err)
			}
			if err := c.reset(ctx, conn); err != nil {
				t.Fatal(err)
			}
			live := readNames(t, conn, ctx, q)
			if live != "1:tenant-b" {
				t.Fatalf("the connection read %s, want tenant B's 1:tenant-b: PostgreSQL did not undo the reset", live)
			}
			if got := readNames(t, conn, cached, q); got != live {
				t.Errorf("the connection's cached read returned %s, the database %s", got, live)
			}
		})
	}
}

// tenantTables creates a table in public (the pool's tenant, A) and in a
// schema of its own (tenant B), and an instance on PostgreSQL.
func tenantTables(t *testing.T) (in *instance, table, schema string) {
	t.Helper()
	plain := sql.OpenDB(testdb.Connector(t, "postgres"))
	t.Cleanup(func() { _ = plain.Close() })
	testdb.Ping(t, "postgres", plain)
	r := &rig{name: "postgres", t: t, plain: plain, prefix: testdb.Unique("gft-test:reset:")}
	table, schema = testdb.Unique("gft_reset_"), testdb.Unique("gft_reset_b_")
	for _, s := range []string{
		"CREATE TABLE public." + table + " (id bigint PRIMARY KEY, name text NOT NULL)",
		"INSERT INTO public." + table + " VALUES (1, 'tenant-a'), (2, 'tenant-a2')",
		"CREATE SCHEMA " + schema,
		"CREATE TABLE " + schema + "." + table + " (id bigint PRIMARY KEY, name text NOT NULL)",
		"INSERT INTO " + schema + "." + table + " VALUES (1, 'tenant-b')",
	} {
		if _, err := plain.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	t.Cleanup(func() {
		_, _ = plain.Exec("DROP TABLE IF EXISTS public." + table)
		_, _ = plain.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE")
	})
	return r.instance(t), table, schema
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// readNames runs query on q and renders its rows of an id and a text,
// as "1:one 2:two".
func readNames(t *testing.T, q queryer, ctx context.Context, query string) string {
	t.Helper()
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d:%s", id, name))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, " ")
}
