package gormflight

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/testredis"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
)

// A Redis restarted from an older dataset (an RDB snapshot taken before a
// write, an everysec AOF missing its last second) has lost the generation
// bumps of writes that already returned, while it has kept, or other nodes
// have kept, entries stamped with the generations from before them. Those
// entries must not be served again: after the restart every read returns
// the rows of the last write. The tests restart redis-servers of their own
// from an RDB they took with SAVE; every count is PostgreSQL's, through the
// recording function.

// restartTable creates a table of the test's own, dropped when the test
// ends, holding one row (id 1) whose v is "old", and returns its name.
func restartTable(t *testing.T, pg *gorm.DB) string {
	t.Helper()
	table := "gft_restart_" + randHex(5)
	adminExec(t, pg, "CREATE TABLE "+table+" (id int PRIMARY KEY, v text NOT NULL); INSERT INTO "+table+" VALUES (1, 'old')")
	dropAtEnd(t, pg, "DROP TABLE IF EXISTS "+table)
	return table
}

// restartRead reads row 1's v through the cache. Each time the query runs,
// the database records "<tag>:<v it read>".
func restartRead(in *instance, table, tag string) (string, error) {
	var r struct {
		N int
		V string
	}
	err := in.db.Scopes(Cache(time.Minute)).
		Raw("SELECT gft_record(CAST(? AS text) || ':' || v, 0) AS n, v FROM "+table+" WHERE id = 1", tag).
		Scan(&r).Error
	if err == nil && r.N != 1 {
		err = fmt.Errorf("row 1 of %s not found", table)
	}
	return r.V, err
}

// restartReader reads through the instances of a test and checks what
// they return and what the database loaded.
type restartReader struct {
	t     *testing.T
	pg    *gorm.DB
	table string
}

// expect reads the query of tag through in and fails the test unless it
// returns want and the database loaded it loads more times (under
// tag:want) than before.
func (r restartReader) expect(what string, in *instance, tag, want string, loads int64) {
	r.t.Helper()
	before := calls(r.t, r.pg, tag+":"+want)
	got, err := restartRead(in, r.table, tag)
	if err != nil {
		r.t.Fatalf("%s: %v", what, err)
	}
	if got != want {
		r.t.Errorf("%s: read %q, want %q (the row as the last write left it)", what, got, want)
	}
	if n := calls(r.t, r.pg, tag+":"+want) - before; n != loads {
		r.t.Errorf("%s: the database loaded %q %d times, want %d", what, want, n, loads)
	}
}

// TestRestartFromSnapshot restarts a single Redis from an RDB snapshot
// taken before a write: the write's bump is lost, and the entry filled
// before the write, whose stamp matches the table's generation again, is
// back. Two instances then read: each must get the written row, the first
// loading it from the database and the second hitting its fill.
func TestRestartFromSnapshot(t *testing.T) {
	addr, stop, restart := startRedis(t)
	pg := openDB(t)
	table := restartTable(t, pg)
	prefix := testPrefix(t)
	rdbs := []*redis.Client{openRedis(t, addr), openRedis(t, addr)}
	a := newInstance(t, testConfig(rdbs[0], prefix))
	b := newInstance(t, testConfig(rdbs[1], prefix))
	raw := openRedis(t, addr)
	ctx := context.Background()
	r := restartReader{t: t, pg: pg, table: table}
	tag := uniqueTag(t)
	genKey := a.p.engine.GenKey(table)

	r.expect("A, first read", a, tag, "old", 1)
	r.expect("B, before the write", b, tag, "old", 0)
	g0, err := raw.Get(ctx, genKey).Result()
	if err != nil {
		t.Fatalf("the generation %s after the fill: %v", genKey, err)
	}
	probe := prefix + ":probe"
	if err := raw.Set(ctx, probe, "before SAVE", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := raw.Save(ctx).Err(); err != nil {
		t.Fatalf("SAVE: %v", err)
	}

	if err := a.db.Exec("UPDATE " + table + " SET v = 'new' WHERE id = 1").Error; err != nil {
		t.Fatal(err)
	}
	if g1, err := raw.Get(ctx, genKey).Result(); err != nil || g1 == g0 {
		t.Fatalf("the write did not bump %s: %q, %v (before it: %q)", genKey, g1, err, g0)
	}
	r.expect("A, after the write", a, tag, "new", 1)
	r.expect("B, after the write", b, tag, "new", 0)

	stop()
	restart()
	if v, err := raw.Get(ctx, probe).Result(); err != nil || v != "before SAVE" {
		t.Fatalf("Redis did not load its snapshot: %s is %q, %v", probe, v, err)
	}
	if g, err := raw.Get(ctx, genKey).Result(); err != nil || g != g0 {
		t.Fatalf("the snapshot's generation %s is %q, %v; want %q, the value SAVE wrote", genKey, g, err, g0)
	}
	// The instances' connections died with the server: replace them
	// before reading, so that no read falls back on a dead connection.
	for i, c := range rdbs {
		waitFor(t, fmt.Sprintf("instance %d's client to reach the restarted Redis", i), waitTimeout, func() bool {
			return c.Ping(ctx).Err() == nil
		})
	}

	r.expect("A, after the restart", a, tag, "new", 1)
	r.expect("B, after the restart", b, tag, "new", 0)
	r.expect("A, read again", a, tag, "new", 0)
}

// TestClusterNodeRestartFromSnapshot restarts from its RDB snapshot, taken
// before a write, the master of a Redis Cluster that holds the table's
// generation; it comes back as the same master (replicas never fail over
// on their own here). Two queries of the table were cached before the
// snapshot: "on", whose entry lies on that master, restored with it, and
// "off", whose entry lies on another master and was not read again after
// the write, so that it still holds the old rows with the old stamp. The
// snapshot's generation matches both stamps again; both queries must read
// the written row.
func TestClusterNodeRestartFromSnapshot(t *testing.T) {
	c := testredis.StartCluster(t, "--cluster-replica-no-failover", "yes")
	pg := openDB(t)
	table := restartTable(t, pg)
	prefix := testPrefix(t)
	rdbs := []*redis.ClusterClient{c.Client(t), c.Client(t)}
	a := newInstance(t, testConfig(rdbs[0], prefix))
	b := newInstance(t, testConfig(rdbs[1], prefix))
	r := restartReader{t: t, pg: pg, table: table}
	tag := uniqueTag(t)
	genKey := a.p.engine.GenKey(table)
	genMaster := c.MasterOf(genKey)

	// Fill queries (each its own tag) until one has its entry on the
	// generation's master and another elsewhere.
	entryPattern := escapeGlob(prefix) + ":{*}:" + engine.EntryKind
	entryNode := func(q string) *testredis.Node {
		t.Helper()
		var at *testredis.Node
		for _, m := range c.Masters() {
			keys, err := m.Do("KEYS", entryPattern).StringSlice()
			if err != nil {
				t.Fatalf("KEYS on %s: %v", m.Addr, err)
			}
			if len(keys) > 0 {
				at = m
			}
			for _, k := range keys {
				if err := m.Do("DEL", k).Err(); err != nil { // so that the next query's entry is the only one
					t.Fatal(err)
				}
			}
		}
		if at == nil {
			t.Fatalf("query %s left no entry on any master", q)
		}
		return at
	}
	var on, off string
	for i := 0; on == "" || off == ""; i++ {
		if i == 64 {
			t.Fatalf("64 queries and still no entry on %s and one elsewhere (on %q, off %q)", genMaster.Addr, on, off)
		}
		q := fmt.Sprintf("%s/%d", tag, i)
		r.expect("A, placing query "+q, a, q, "old", 1)
		if entryNode(q) == genMaster {
			if on == "" {
				on = q
			}
		} else if off == "" {
			off = q
		}
	}
	// entryNode deleted the entries it found: fill the two queries again.
	for _, q := range []string{on, off} {
		r.expect("A, filling "+q, a, q, "old", 1)
		r.expect("B, "+q+" before the write", b, q, "old", 0)
	}
	g0, err := genMaster.Do("GET", genKey).Text()
	if err != nil {
		t.Fatalf("the generation %s after the fills: %v", genKey, err)
	}
	probe := genKey + ":probe" // the generation's slot
	if err := genMaster.Do("SET", probe, "before SAVE").Err(); err != nil {
		t.Fatal(err)
	}
	if err := genMaster.Do("SAVE").Err(); err != nil {
		t.Fatalf("SAVE on %s: %v", genMaster.Addr, err)
	}

	if err := a.db.Exec("UPDATE " + table + " SET v = 'new' WHERE id = 1").Error; err != nil {
		t.Fatal(err)
	}
	if g1, err := genMaster.Do("GET", genKey).Text(); err != nil || g1 == g0 {
		t.Fatalf("the write did not bump %s: %q, %v (before it: %q)", genKey, g1, err, g0)
	}
	// off is not read again: its entry keeps the old rows and stamp.
	r.expect("A, "+on+" after the write", a, on, "new", 1)
	r.expect("B, "+on+" after the write", b, on, "new", 0)

	genMaster.Kill()
	genMaster.Restart()
	c.WaitHealthy()
	if v, err := genMaster.Do("GET", probe).Text(); err != nil || v != "before SAVE" {
		t.Fatalf("%s did not load its snapshot: %s is %q, %v", genMaster.Addr, probe, v, err)
	}
	if m := c.MasterOf(genKey); m != genMaster {
		t.Fatalf("%s owns %s after the restart, not the restarted %s", m.Addr, genKey, genMaster.Addr)
	}
	if g, err := genMaster.Do("GET", genKey).Text(); err != nil || g != g0 {
		t.Fatalf("the snapshot's generation %s is %q, %v; want %q, the value SAVE wrote", genKey, g, err, g0)
	}
	ctx := context.Background()
	for i, rdb := range rdbs {
		waitFor(t, fmt.Sprintf("instance %d's client to reach every master", i), waitTimeout, func() bool {
			return rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.Ping(ctx).Err() }) == nil
		})
	}

	for _, q := range []string{on, off} {
		r.expect("A, "+q+" after the restart", a, q, "new", 1)
		r.expect("B, "+q+" after the restart", b, q, "new", 0)
	}
}
