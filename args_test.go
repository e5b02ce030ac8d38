package gormflight

import (
	"context"
	"database/sql/driver"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/testdb"
	"github.com/gormflight/gormflight/observe"
)

// argsRow is a row of argsTable's table.
type argsRow struct {
	ID  int
	Val string
}

// argsTable creates a table with rows (1, one) and (2, two), and a
// function gate(id) that, while the table's "_fail" table holds a row,
// sleeps 400 ms and then fails for id 1: a load of id 1 that holds the
// key's lock long enough for another instance's caller to give up.
func argsTable(t *testing.T, in *instance) (table string) {
	t.Helper()
	table = "gft_args_" + randHex(4)
	adminExec(t, in.db, "CREATE TABLE "+table+" (id int PRIMARY KEY, val text NOT NULL)")
	adminExec(t, in.db, "CREATE TABLE "+table+"_fail (on_ bool)")
	dropAtEnd(t, in.db, "DROP FUNCTION IF EXISTS "+table+"_gate(int)", "DROP TABLE IF EXISTS "+table,
		"DROP TABLE IF EXISTS "+table+"_fail")
	adminExec(t, in.db, "INSERT INTO "+table+" VALUES (1, 'one'), (2, 'two')")
	adminExec(t, in.db, `CREATE FUNCTION `+table+`_gate(p_id int) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	IF p_id = 1 AND EXISTS (SELECT 1 FROM `+table+`_fail) THEN
		PERFORM pg_sleep(0.4);
		RAISE EXCEPTION 'gate % failing', p_id;
	END IF;
	RETURN true;
END $$`)
	return table
}

// A flight goes on after the caller that started it gave up, and runs the
// query once the lock is free. The caller's Valuer, changed from id 1 to
// id 2 after its call returned, must not make the flight store id 2's rows
// under id 1's key; nor may the flight read it at all: it is the caller's
// again (-race reported a plain pointer's).
func TestFlightOutlivingCallerIgnoresChangedArgs(t *testing.T) {
	ins := newInstances(t, 2, nil)
	a, b := ins[0], ins[1]
	table := argsTable(t, a)
	adminExec(t, a.db, "INSERT INTO "+table+"_fail VALUES (true)")
	q := "SELECT id, val FROM " + table + " WHERE id = ? AND " + table + "_gate(?)"
	read := func(ctx context.Context, in *instance, id *testdb.MutableID) ([]argsRow, error) {
		var rows []argsRow
		err := in.db.WithContext(ctx).Scopes(Cache(time.Minute)).Raw(q, id, id).Scan(&rows).Error
		return rows, err
	}

	// B loads id 1 and holds the key's lock for 400 ms, then fails.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = read(context.Background(), b, testdb.NewMutableID(1))
	}()
	waitFor(t, "B to hold the lock", waitTimeout, func() bool {
		return len(behOfKind(behKeys(t, a.p.cfg.Redis, a.p.cfg.Prefix), "l")) == 1
	})
	// A asks for id 1, gives up while its flight waits for B's lock, then
	// reuses its argument for id 2.
	id := testdb.NewMutableID(1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	rows, err := read(ctx, a, id)
	cancel()
	if err == nil {
		t.Fatalf("A's read returned %v while B held the lock: the test cannot tell", rows)
	}
	calls := id.Calls()
	id.Set(2)
	// B's query has passed its check of the _fail table: it still fails.
	// A's flight, which takes the lock then, succeeds.
	adminExec(t, a.db, "DELETE FROM "+table+"_fail")
	wg.Wait()

	// A's read waits for A's flight, if it still runs: it started before.
	for _, in := range ins {
		got, err := read(context.Background(), in, testdb.NewMutableID(1))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != (argsRow{1, "one"}) {
			t.Errorf("id 1 read %+v, want [{1 one}]: id 1's key holds another query's rows", got)
		}
	}
	if n := id.Calls() - calls; n != 0 {
		t.Errorf("the flight called the Value of the caller's argument %d times after the call returned", n)
	}
}

// countingID is a driver.Valuer whose value is new each time it is asked
// for: no two reads of it are the same query.
type countingID struct{ n atomic.Int64 }

func (c *countingID) Value() (driver.Value, error) { return c.n.Add(1), nil }

// A caller whose argument changes between its key and its query gets the
// query's rows as it ran, reported as a bypass, and nothing is stored under
// the key, which no later call would read.
func TestChangingValuerRunsUncached(t *testing.T) {
	rec := new(recorder)
	cfg := testConfig(openRedis(t, ""), testPrefix(t))
	cfg.Observer = rec
	in := newInstance(t, cfg)
	var got struct{ N int64 }
	err := in.db.Scopes(Cache(time.Minute)).Raw("SELECT ?::bigint AS n", new(countingID)).Scan(&got).Error
	if err != nil {
		t.Fatal(err)
	}
	// Value gave the key 1; the query ran with a later one.
	if got.N < 2 {
		t.Errorf("read n = %d, want a value the argument took after its key's, 1", got.N)
	}
	if entries := behOfKind(behKeys(t, in.p.cfg.Redis, in.p.cfg.Prefix), engine.EntryKind); len(entries) != 0 {
		t.Errorf("stored %q for a query whose argument changed", entries)
	}
	if evs := rec.take(); len(evs) != 1 || evs[0].Outcome != observe.Bypass {
		t.Errorf("observed %q, want one bypass: the result is stored nowhere", outcomes(evs))
	}
}
