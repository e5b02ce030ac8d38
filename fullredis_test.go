package gormflight

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
)

// fillRedis makes the redis-server behind rdb full the way production
// Redis is: data past maxmemory under maxmemory-policy noeviction, so every
// command that adds data is refused with OOM while reads and DEL still
// work. It stores about 8 MB of ballast, then lowers maxmemory below the
// memory in use; free deletes the ballast, which brings Redis back under
// its limit.
func fillRedis(t *testing.T, rdb *redis.Client, prefix string) (free func()) {
	t.Helper()
	ctx := context.Background()
	ballast := strings.Repeat("x", 128<<10)
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s:ballast:%d", prefix, i)
		if err := rdb.Set(ctx, keys[i], ballast, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	used := usedMemory(t, rdb)
	if err := rdb.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used-(4<<20), 10)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, prefix+":probe", "1", 0).Err(); !engine.OutOfMemory(err) {
		t.Fatalf("SET on the full Redis: %v, want an OOM error", err)
	}
	return func() {
		t.Helper()
		if err := rdb.Del(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.Set(ctx, prefix+":probe", "1", 0).Err(); err != nil {
			t.Fatalf("SET after freeing memory: %v", err)
		}
	}
}

func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no used_memory in INFO memory:\n%s", info)
	return 0
}

// writeRig is a table of rows, a writer instance and reader instances of
// one cluster, for tests that write while Redis is in trouble.
type writeRig struct {
	t         *testing.T
	db        *gorm.DB
	table     string
	tag       string
	writer    *instance
	readers   []*instance
	committed [writeRigRows + 1]atomic.Int64 // per row, the value of the last write to return
}

const writeRigRows = 4

// newWriteRig creates the table, the writer (with its own Redis client,
// wrdb) and two readers on the Redis at addr, and caches every row on both
// readers.
func newWriteRig(t *testing.T, addr string, wrdb *redis.Client) *writeRig {
	r := &writeRig{t: t, db: openDB(t), table: "gft_rig_" + randHex(5), tag: uniqueTag(t)}
	setupSchema(t, r.db)
	adminExec(t, r.db, "CREATE TABLE "+r.table+" (id int PRIMARY KEY, v int NOT NULL)")
	dropAtEnd(t, r.db, "DROP TABLE IF EXISTS "+r.table)
	adminExec(t, r.db, "INSERT INTO "+r.table+" SELECT g, 0 FROM generate_series(1, ?) g", writeRigRows)
	prefix := testPrefix(t)
	cfg := func(rdb *redis.Client) Config {
		c := testConfig(rdb, prefix)
		c.LockExpiry = 200 * time.Millisecond
		return c
	}
	r.writer = newInstance(t, cfg(wrdb))
	for range 2 {
		r.readers = append(r.readers, newInstance(t, cfg(openRedis(t, addr))))
	}
	for _, in := range r.readers {
		for id := 1; id <= writeRigRows; id++ {
			r.read(in, id)
		}
	}
	return r
}

func (r *writeRig) read(in *instance, id int) int {
	var v int
	err := in.db.Scopes(Cache(time.Minute)).
		Raw("SELECT v FROM "+r.table+" WHERE id = ? AND gft_record(?, 0) = 1", id, r.tag).Scan(&v).Error
	if err != nil {
		r.t.Error(err)
	}
	return v
}

// writeWhileReading runs writes, each raising one row's value, while two
// goroutines per reader read the rows, and fails the test for every read
// that returns a value older than a write that had returned when the read
// began.
func (r *writeRig) writeWhileReading(writes int) (reads, stale int64) {
	t := r.t
	var nreads, nstale atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, in := range r.readers {
		for w := range 2 {
			wg.Go(func() {
				for i := w; ; i++ {
					select {
					case <-done:
						return
					default:
					}
					id := 1 + i%writeRigRows
					floor := r.committed[id].Load()
					if v := r.read(in, id); int64(v) < floor {
						nstale.Add(1)
						t.Errorf("row %d read %d after a write of %d had returned", id, v, floor)
					}
					nreads.Add(1)
				}
			})
		}
	}
	for n := 1; n <= writes; n++ {
		// Reads between writes: some meet the write, some follow it.
		next := nreads.Load() + 8
		waitFor(t, "reads between writes", time.Minute, func() bool { return nreads.Load() >= next })
		id := 1 + n%writeRigRows
		if err := r.writer.db.Exec("UPDATE "+r.table+" SET v = ? WHERE id = ?", n, id).Error; err != nil {
			t.Fatal(err)
		}
		r.committed[id].Store(int64(n))
	}
	close(done)
	wg.Wait()
	return nreads.Load(), nstale.Load()
}

// cachedAgain waits until a round of reads of every row on every reader
// runs no query on PostgreSQL, checking each value read.
func (r *writeRig) cachedAgain() {
	for id := 1; id <= writeRigRows; id++ {
		want := r.committed[id].Load()
		waitFor(r.t, fmt.Sprintf("row %d to be cached again", id), waitTimeout, func() bool {
			before := calls(r.t, r.db, r.tag)
			for _, in := range r.readers {
				if v := r.read(in, id); int64(v) != want {
					r.t.Fatalf("row %d: read %d, want %d", id, v, want)
				}
			}
			return calls(r.t, r.db, r.tag) == before
		})
	}
}

// A full Redis (noeviction, Redis's default) refuses every command that
// adds data, yet goes on answering GETs with the entries it holds. Writes
// must still invalidate, readers on other instances see no stale row, a
// write leaves no announcement behind to make readers wait, and caching
// resumes once Redis has memory again.
func TestFullRedisServesNoStaleRows(t *testing.T) {
	addr, _, _ := startRedis(t, "--maxmemory-policy", "noeviction")
	r := newWriteRig(t, addr, openRedis(t, addr))
	admin := openRedis(t, addr)
	free := fillRedis(t, admin, testPrefix(t))

	reads, stale := r.writeWhileReading(60)
	rs := sumStats(r.readers...)
	t.Logf("full Redis: 60 writes, %d reads on 2 other instances, %d stale; readers: %d hits, %d loads, %d waits, %d fallbacks; writer's failed invalidations %d",
		reads, stale, rs.Hits, rs.Loads, rs.Waits, rs.Fallbacks, r.writer.p.Stats().InvalidationErrors)
	if err := admin.Set(context.Background(), testPrefix(t), "1", 0).Err(); !engine.OutOfMemory(err) {
		t.Fatalf("SET after the writes: %v; want OOM: Redis was not full throughout, the test did not test anything", err)
	}
	ctx := context.Background()
	e := r.writer.p.engine
	if n, err := admin.Exists(ctx, e.WritersKey(r.table), e.HeldKey(r.table)).Result(); err != nil || n != 0 {
		t.Errorf("after the last write returned, its table still has announcements (%d keys, %v): every reader waits for a bump that never comes", n, err)
	}

	free()
	r.cachedAgain()
}

// A Redis that answers but refuses a write's bump (here through an ACL
// that denies the writer scripts; in production, a full Redis that refuses
// the script, a replica turned read-only) must not leave the entries of the
// written table current: the writer deletes the table's generation, so
// readers on other instances see no stale row.
func TestRefusedBumpDropsGenerations(t *testing.T) {
	addr, _, _ := startRedis(t)
	admin := openRedis(t, addr)
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "gftwriter", "on", "nopass", "~*", "&*", "+@all",
		"-eval", "-evalsha", "-eval_ro", "-evalsha_ro", "-fcall", "-fcall_ro").Err(); err != nil {
		t.Fatal(err)
	}
	wrdb := redis.NewClient(&redis.Options{Addr: addr, Username: "gftwriter", Password: "any", ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = wrdb.Close() })
	r := newWriteRig(t, addr, wrdb)

	reads, stale := r.writeWhileReading(30)
	ws := r.writer.p.Stats()
	t.Logf("refused bumps: 30 writes, %d reads on 2 other instances, %d stale; writer's failed invalidations %d", reads, stale, ws.InvalidationErrors)
	if ws.InvalidationErrors == 0 {
		t.Fatal("no bump was refused: the test did not test anything")
	}
}
