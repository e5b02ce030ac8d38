package gormflight

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/dialect"
	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/gormflight/gormflight/internal/sqlscan"
	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Behaviour tests: what a user of the plugin can observe. Database
// executions are counted by PostgreSQL (calls), never by the plugin, and
// goroutines coordinate through channels, WaitGroups and a PostgreSQL
// advisory lock (behGate) instead of sleeps.

// behKeys lists the Redis keys under prefix, sorted.
func behKeys(t testing.TB, rdb redis.UniversalClient, prefix string) []string {
	t.Helper()
	keys, err := rdb.Keys(context.Background(), escapeGlob(prefix)+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	// The KeyCopies every instance on the prefix agrees on, recorded by
	// the first one's New (engine.checkKeyCopies): no query's key.
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == prefix+":keycopies" })
	slices.Sort(keys)
	return keys
}

// behOfKind keeps the names ending in ":<kind>" (e: entry, l: lock, r: channel).
func behOfKind(names []string, kind string) []string {
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, ":"+kind) {
			out = append(out, n)
		}
	}
	return out
}

// behDecodeStored decodes a stored value "<stamp>|<meta>|<entry>".
func behDecodeStored(v []byte) error {
	_, _, entry, ok := engine.SplitStored(v)
	if !ok {
		return errors.New("not in the stored format")
	}
	_, err := rowcodec.Decode(entry)
	return err
}

// behChannels lists the pub/sub channels under prefix that have subscribers.
func behChannels(t testing.TB, rdb redis.UniversalClient, prefix string) []string {
	t.Helper()
	chans, err := rdb.PubSubChannels(context.Background(), escapeGlob(prefix)+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(chans)
	return chans
}

// behGate is a PostgreSQL advisory lock the test holds on a connection of
// its own. A gated query blocks in PostgreSQL until the test releases the
// gate, so a flight can be held open for as long as the test needs without
// any sleep, and PostgreSQL (pg_locks) reports when the query is running.
type behGate struct {
	key  int64
	db   *gorm.DB
	conn *sql.Conn
	once sync.Once
}

func behHoldGate(t testing.TB, db *gorm.DB) *behGate {
	t.Helper()
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := sqlDB.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	g := &behGate{key: rand.Int64N(1<<31-2) + 1, db: db, conn: conn}
	if _, err := conn.ExecContext(context.Background(), "SELECT pg_advisory_lock($1)", g.key); err != nil {
		_ = conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(g.release)
	return g
}

// release lets every gated query proceed. It may be called more than once.
func (g *behGate) release() {
	g.once.Do(func() {
		_, _ = g.conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", g.key)
		_ = g.conn.Close()
	})
}

// waiting returns how many PostgreSQL sessions are blocked on the gate.
func (g *behGate) waiting(t testing.TB) int64 {
	t.Helper()
	var n int64
	err := g.db.Session(&gorm.Session{NewDB: true}).Raw(
		`SELECT count(*) FROM pg_locks
		 WHERE locktype = 'advisory' AND NOT granted AND classid = 0 AND objid::bigint = ? AND objsubid = 1`,
		g.key).Scan(&n).Error
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// behGatedSQL records a call (gft_record) only once the gate is released:
// the FROM subquery takes the shared side of the advisory lock first.
const behGatedSQL = `SELECT gft_record(?, 0) AS n, ?::text AS tag, ?::text AS key
FROM (SELECT pg_advisory_xact_lock_shared(?)) AS gate`

// behGatedQuery is slowQuery with the gate in place of the sleep.
func behGatedQuery(ctx context.Context, in *instance, tag, key string, g *behGate) (slowRow, error) {
	var r slowRow
	err := in.db.WithContext(ctx).Scopes(Cache(time.Minute)).
		Raw(behGatedSQL, tag, tag, key, g.key).Scan(&r).Error
	return r, err
}

// Errors are never cached, whichever way GORM reads the result.
func TestBehaviourErrorsAreNeverCached(t *testing.T) {
	const callers = 20
	const q = "SELECT gft_maybe_fail(?) AS n"
	paths := []struct {
		name  string
		query func(db *gorm.DB, tag string) (int, error)
	}{
		{"Raw.Scan", func(db *gorm.DB, tag string) (int, error) {
			var n int
			err := db.Scopes(Cache(time.Minute)).Raw(q, tag).Scan(&n).Error
			return n, err
		}},
		{"Raw.Row", func(db *gorm.DB, tag string) (int, error) {
			var n int
			err := db.Scopes(Cache(time.Minute)).Raw(q, tag).Row().Scan(&n)
			return n, err
		}},
		{"Raw.Find", func(db *gorm.DB, tag string) (int, error) {
			var rows []struct{ N int }
			err := db.Scopes(Cache(time.Minute)).Raw(q, tag).Find(&rows).Error
			if err == nil && len(rows) != 1 {
				err = fmt.Errorf("%d rows", len(rows))
			}
			if err != nil {
				return 0, err
			}
			return rows[0].N, nil
		}},
	}
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			ins := newInstances(t, 2, nil)
			prefix, rdb, db := ins[0].p.cfg.Prefix, ins[0].p.cfg.Redis, ins[0].db
			tag := uniqueTag(t)
			if err := db.Exec("INSERT INTO gft_fail(tag) VALUES (?)", tag).Error; err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Exec("DELETE FROM gft_fail WHERE tag = ?", tag) })

			start := make(chan struct{})
			var wg sync.WaitGroup
			errs := make([]error, len(ins)*callers)
			for i, in := range ins {
				for c := range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						_, errs[i*callers+c] = path.query(in.db, tag)
					}()
				}
			}
			close(start)
			wg.Wait()

			raised := fmt.Sprintf("gft_maybe_fail: %s is failing", tag)
			for i, err := range errs {
				if err == nil || !strings.Contains(err.Error(), raised) {
					t.Errorf("instance %d caller %d: got error %v, want one containing %q", i/callers, i%callers, err, raised)
				}
			}
			keys := behKeys(t, rdb, prefix)
			if e := behOfKind(keys, engine.EntryKind); len(e) != 0 {
				t.Errorf("a failed query was stored: entries %v", e)
			}
			if l := behOfKind(keys, "l"); len(l) != 0 {
				t.Errorf("failed loads left their lock behind: %v", l)
			}

			if err := db.Exec("DELETE FROM gft_fail WHERE tag = ?", tag).Error; err != nil {
				t.Fatal(err)
			}
			before := calls(t, db, tag)
			n, err := path.query(ins[0].db, tag)
			if err != nil || n != 1 {
				t.Fatalf("after the failure cleared: got %d, %v; want 1, nil", n, err)
			}
			if got := calls(t, db, tag) - before; got != 1 {
				t.Errorf("the call after the failure cleared ran %d executions, want 1", got)
			}
			if e := behOfKind(behKeys(t, rdb, prefix), engine.EntryKind); len(e) != 1 {
				t.Errorf("the successful result should be stored once: entries %v", e)
			}
		})
	}
}

// One caller's cancellation never fails the others.
func TestBehaviourCancelledCallerDoesNotFailOthers(t *testing.T) {
	const others = 9 // callers B..J
	in := newInstances(t, 1, nil)[0]
	tag := uniqueTag(t)
	gate := behHoldGate(t, in.db)
	want := slowRow{N: 1, Tag: tag, Key: "k"}

	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	errA := make(chan error, 1)
	go func() {
		_, err := behGatedQuery(ctxA, in, tag, "k", gate)
		errA <- err
	}()
	// A's flight has started once its query waits on the gate in PostgreSQL.
	// (gft_record's own row only becomes visible when the statement commits.)
	waitFor(t, "A's query to run in PostgreSQL", waitTimeout, func() bool { return gate.waiting(t) == 1 })

	var started, done sync.WaitGroup
	results := make([]slowRow, others)
	errs := make([]error, others)
	for i := range others {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			results[i], errs[i] = behGatedQuery(context.Background(), in, tag, "k", gate)
		}()
	}
	started.Wait()
	cancelA()
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Errorf("A: got %v, want context.Canceled", err)
	}
	if n := gate.waiting(t); n != 1 {
		t.Errorf("after A gave up, %d queries wait in PostgreSQL, want the shared one still running", n)
	}
	gate.release()
	done.Wait()

	for i := range others {
		if errs[i] != nil || results[i] != want {
			t.Errorf("caller %c: got %+v, %v; want %+v, nil", 'B'+i, results[i], errs[i], want)
		}
	}
	if got := calls(t, in.db, tag); got != 1 {
		t.Errorf("PostgreSQL ran the query %d times, want 1", got)
	}
	st := in.p.Stats()
	if st.Loads != 1 {
		t.Errorf("Stats().Loads = %d, want 1", st.Loads)
	}
	t.Logf("stats after the flight: %+v", st)

	hits := in.p.Stats().Hits
	if r, err := behGatedQuery(context.Background(), in, tag, "k", gate); err != nil || r != want {
		t.Fatalf("follow-up: got %+v, %v; want %+v, nil", r, err, want)
	}
	if got := calls(t, in.db, tag); got != 1 {
		t.Errorf("the follow-up call ran the query again: %d executions, want 1", got)
	}
	if got := in.p.Stats().Hits; got != hits+1 {
		t.Errorf("Stats().Hits went from %d to %d, want one more", hits, got)
	}
}

// A flight whose only caller gave up still completes and stores its
// result: the next caller is served from Redis.
func TestBehaviourCancelledSoleCallerFlightCompletes(t *testing.T) {
	in := newInstances(t, 1, nil)[0]
	prefix, rdb := in.p.cfg.Prefix, in.p.cfg.Redis
	tag := uniqueTag(t)
	gate := behHoldGate(t, in.db)

	ctx, cancel := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() {
		_, err := behGatedQuery(ctx, in, tag, "k", gate)
		errA <- err
	}()
	waitFor(t, "the query to run in PostgreSQL", waitTimeout, func() bool { return gate.waiting(t) == 1 })
	cancel()
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	gate.release()
	waitFor(t, "the orphaned flight to store its entry", waitTimeout, func() bool {
		return len(behOfKind(behKeys(t, rdb, prefix), engine.EntryKind)) == 1
	})

	want := slowRow{N: 1, Tag: tag, Key: "k"}
	if r, err := behGatedQuery(context.Background(), in, tag, "k", gate); err != nil || r != want {
		t.Fatalf("next call: got %+v, %v; want %+v", r, err, want)
	}
	if got := calls(t, in.db, tag); got != 1 {
		t.Errorf("PostgreSQL ran the query %d times, want 1", got)
	}
}

// Results larger than Config.MaxEntrySize are returned but not stored.
func TestBehaviourSizeCap(t *testing.T) {
	const limit = 1024
	type bigRow struct {
		S string
		N int
	}
	// The query sleeps 20 ms: the stored value records how long its load
	// took, in milliseconds, and the boundary below needs that field to
	// have as many digits in each load (2, from 20 to 99 ms).
	query := func(in *instance, tag string, size int) (bigRow, error) {
		var r bigRow
		err := in.db.Scopes(Cache(time.Minute)).
			Raw("SELECT repeat('x', ?) AS s, gft_record(?, 20) AS n", size, tag).Scan(&r).Error
		return r, err
	}
	// check makes two calls of a size-byte result and reports whether it
	// was stored, and the stored value.
	check := func(t *testing.T, in *instance, size int) (stored []byte) {
		t.Helper()
		prefix, rdb := in.p.cfg.Prefix, in.p.cfg.Redis
		tag := uniqueTag(t)
		want := bigRow{S: strings.Repeat("x", size), N: 1}
		uncached := in.p.Stats().Uncached
		keysBefore := behOfKind(behKeys(t, rdb, prefix), engine.EntryKind)

		if r, err := query(in, tag, size); err != nil || r != want {
			t.Fatalf("first call: got %d bytes, %v; want %d bytes", len(r.S), err, size)
		}
		entries := behOfKind(behKeys(t, rdb, prefix), engine.EntryKind)
		newEntries := slices.DeleteFunc(slices.Clone(entries), func(k string) bool { return slices.Contains(keysBefore, k) })
		if len(newEntries) == 1 {
			v, err := rdb.Get(context.Background(), newEntries[0]).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			stored = v
		} else if len(newEntries) > 1 {
			t.Fatalf("one query stored %d entries: %v", len(newEntries), newEntries)
		}
		if r, err := query(in, tag, size); err != nil || r != want {
			t.Fatalf("second call: got %d bytes, %v; want %d bytes", len(r.S), err, size)
		}
		wantCalls, wantUncached := int64(1), uncached
		if stored == nil {
			wantCalls, wantUncached = 2, uncached+1
		}
		if got := calls(t, in.db, tag); got != wantCalls {
			t.Errorf("PostgreSQL ran the query %d times, want %d (stored: %v)", got, wantCalls, stored != nil)
		}
		if got := in.p.Stats().Uncached; got < wantUncached {
			t.Errorf("Stats().Uncached = %d, want at least %d", got, wantUncached)
		}
		if len(stored) > limit {
			t.Errorf("stored %d bytes, over MaxEntrySize %d", len(stored), limit)
		}
		return stored
	}

	t.Run("10KB result is not stored", func(t *testing.T) {
		in := newInstances(t, 1, func(c *Config) { c.MaxEntrySize = limit })[0]
		if check(t, in, 10000) != nil {
			t.Error("a 10 KB result was stored under a 1 KiB cap")
		}
		keys := behKeys(t, in.p.cfg.Redis, in.p.cfg.Prefix)
		if stored := append(behOfKind(keys, engine.EntryKind), behOfKind(keys, "l")...); len(stored) != 0 {
			t.Errorf("Redis holds %v, want nothing", stored)
		}
		if u := in.p.Stats().Uncached; u < 1 {
			t.Errorf("Stats().Uncached = %d, want >= 1", u)
		}
	})

	// The cap applies to the stored value: a value of exactly MaxEntrySize
	// bytes is stored, one byte more is not. Each extra character of a text
	// value between 256 and 65535 bytes adds exactly one byte to the entry.
	t.Run("boundary", func(t *testing.T) {
		in := newInstances(t, 1, func(c *Config) { c.MaxEntrySize = limit })[0]
		const probe = 600
		v := check(t, in, probe)
		if v == nil {
			t.Fatalf("a %d-byte result was not stored under a %d-byte cap", probe, limit)
		}
		exact := probe + limit - len(v)
		if got := check(t, in, exact); len(got) != limit {
			t.Errorf("a result whose entry is exactly MaxEntrySize (%d bytes) was stored as %d bytes (0: not stored)", limit, len(got))
		}
		if got := check(t, in, exact+1); got != nil {
			t.Errorf("an entry of MaxEntrySize+1 bytes was stored (%d bytes)", len(got))
		}
	})
}

// behPack returns "|<meta>|" followed by what build encodes: with the stamp
// the test puts before it, a stored value with a valid stamp and meta and a
// hand-made entry.
func behPack(build func(enc *msgpack.Encoder)) []byte {
	var buf bytes.Buffer
	build(msgpack.NewEncoder(&buf))
	return append([]byte("|handmade,0|"), buf.Bytes()...)
}

// behColumn encodes one well-formed column header (an int4 column "n").
func behColumn(enc *msgpack.Encoder) {
	_ = enc.EncodeString("n")
	_ = enc.EncodeString("INT4")
	_ = enc.EncodeUint(1) // scan type int64
	_ = enc.EncodeUint(0)
	_ = enc.EncodeInt(0)
	_ = enc.EncodeInt(0)
	_ = enc.EncodeInt(0)
}

// A corrupt entry is a miss: the query runs again and repairs it.
// oversized names the case of TestBehaviourCorruptEntry whose entry is well
// formed but over Config.MaxEntrySize.
const oversized = "oversized entry with wrong rows"

func TestBehaviourCorruptEntry(t *testing.T) {
	// Random bytes without a stamp separator; with one they would read as a
	// stamp that does not match, a stale entry rather than a corrupt one.
	rnd := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 256)
	for i := range random {
		for random[i] = engine.StampSep; random[i] == engine.StampSep; {
			random[i] = byte(rnd.UintN(256))
		}
	}
	cases := []struct {
		name    string
		corrupt func(valid []byte) []byte
	}{
		{"random bytes", func([]byte) []byte { return random }},
		// A stamp that cannot match is a stale entry: a miss, but not a
		// decode error.
		{"garbage stamp", func(v []byte) []byte { return append([]byte("garbage"), v...) }},
		{"stamp and random bytes", func([]byte) []byte { return append([]byte{engine.StampSep}, random...) }},
		{"no stamp", func([]byte) []byte { return []byte("not a gormflight entry") }},
		{"empty", func([]byte) []byte { return []byte{} }},
		{"stamp only", func([]byte) []byte { return []byte{engine.StampSep} }},
		{"stamp then 0xff 0xff", func([]byte) []byte { return []byte("|\xff\xff") }},
		{"truncated to half", func(v []byte) []byte { return v[:len(v)/2] }},
		{"truncated by one byte", func(v []byte) []byte { return v[:len(v)-1] }},
		{"trailing byte", func(v []byte) []byte { return append(slices.Clone(v), 0) }},
		{"unknown codec version", func([]byte) []byte {
			return behPack(func(enc *msgpack.Encoder) {
				_ = enc.EncodeUint(99)
				_ = enc.EncodeArrayLen(0)
				_ = enc.EncodeArrayLen(0)
			})
		}},
		{"2^31 rows claimed", func([]byte) []byte {
			return behPack(func(enc *msgpack.Encoder) {
				_ = enc.EncodeUint(rowcodec.Version)
				_ = enc.EncodeArrayLen(1)
				behColumn(enc)
				_ = enc.EncodeArrayLen(1 << 31)
				_ = enc.EncodeInt(1)
			})
		}},
		{"2^31 rows of no columns claimed", func([]byte) []byte {
			return behPack(func(enc *msgpack.Encoder) {
				_ = enc.EncodeUint(rowcodec.Version)
				_ = enc.EncodeArrayLen(0)
				_ = enc.EncodeArrayLen(1 << 31)
			})
		}},
		{"2^31 columns claimed", func([]byte) []byte {
			return behPack(func(enc *msgpack.Encoder) {
				_ = enc.EncodeUint(rowcodec.Version)
				_ = enc.EncodeArrayLen(1 << 31)
				behColumn(enc)
			})
		}},
		{"unknown scan type", func([]byte) []byte {
			return behPack(func(enc *msgpack.Encoder) {
				_ = enc.EncodeUint(rowcodec.Version)
				_ = enc.EncodeArrayLen(1)
				_ = enc.EncodeString("n")
				_ = enc.EncodeString("INT4")
				_ = enc.EncodeUint(200)
				_ = enc.EncodeUint(0)
				_ = enc.EncodeInt(0)
				_ = enc.EncodeInt(0)
				_ = enc.EncodeInt(0)
				_ = enc.EncodeArrayLen(0)
			})
		}},
		// A well-formed entry with the right stamp but wrong rows, larger
		// than MaxEntrySize (as an instance with a larger cap, or a hand,
		// might store): served, it would answer wrong rows.
		{oversized, func(v []byte) []byte {
			_, stamp, entry, ok := engine.SplitStored(v)
			if !ok {
				panic("the stored value is not in the stored format")
			}
			e, err := rowcodec.Decode(entry)
			if err != nil {
				panic(err)
			}
			rows := e.Values()
			for _, row := range rows {
				for j, name := range e.Names() {
					if name == "tag" {
						row[j] = strings.Repeat("wrong", 1<<18) // 1.25 MiB
					}
				}
			}
			wrong, err := rowcodec.NewEntry(e.Names(), rows)
			if err != nil {
				panic(err)
			}
			out, err := engine.EncodeStored(string(stamp), 0, 0, wrong, 0)
			if err != nil {
				panic(err)
			}
			return out
		}},
		{"time with unknown location kind", func([]byte) []byte {
			v := behPack(func(enc *msgpack.Encoder) {
				_ = enc.EncodeUint(rowcodec.Version)
				_ = enc.EncodeArrayLen(1)
				behColumn(enc)
				_ = enc.EncodeArrayLen(1)
				_ = enc.EncodeExtHeader(rowcodec.TimeExt, 13)
			})
			// 8 bytes of seconds, 4 of nanoseconds, location kind 9.
			return append(v, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 9)
		}},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stale := tc.name == "garbage stamp"
			wellFormed := stale || tc.name == oversized
			in := newInstances(t, 1, nil)[0]
			prefix, rdb := in.p.cfg.Prefix, in.p.cfg.Redis
			tag := uniqueTag(t)
			want := slowRow{N: 1, Tag: tag, Key: "k"}
			ctx := context.Background()
			query := func() (r slowRow, err error) {
				defer func() {
					if v := recover(); v != nil {
						t.Fatalf("the query panicked: %v", v)
					}
				}()
				return slowQuery(ctx, in, tag, "k", 0)
			}

			if r, err := query(); err != nil || r != want {
				t.Fatalf("priming call: got %+v, %v", r, err)
			}
			entries := behOfKind(behKeys(t, rdb, prefix), engine.EntryKind)
			if len(entries) != 1 {
				t.Fatalf("priming stored %v, want one entry", entries)
			}
			key := entries[0]
			valid, err := rdb.Get(ctx, key).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			garbage := tc.corrupt(valid)
			if len(garbage) > 0 && garbage[0] == engine.StampSep {
				// Hand-made with an empty stamp: give it the valid one (the
				// generation of sqlscan.AllTables every entry depends on).
				stamp, _, _ := bytes.Cut(valid, []byte{engine.StampSep})
				garbage = append(slices.Clone(stamp), garbage...)
			}
			if err := behDecodeStored(garbage); err == nil && !wellFormed {
				t.Fatalf("test bug: %q decodes", garbage)
			}
			if err := rdb.Set(ctx, key, garbage, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			decodeErrors := in.p.Stats().DecodeErrors

			if r, err := query(); err != nil || r != want {
				t.Fatalf("call after corruption: got %+v, %v; want %+v", r, err, want)
			}
			if got := calls(t, in.db, tag); got != 2 {
				t.Errorf("PostgreSQL ran the query %d times, want 2 (one more after the corruption)", got)
			}
			if got := in.p.Stats().DecodeErrors; got <= decodeErrors && !stale {
				t.Errorf("Stats().DecodeErrors stayed at %d", got)
			}
			repaired, err := rdb.Get(ctx, key).Bytes()
			if err != nil {
				t.Fatalf("the entry was not stored again: %v", err)
			}
			if err := behDecodeStored(repaired); err != nil {
				t.Errorf("the entry was not repaired: %v", err)
			}
			if r, err := query(); err != nil || r != want {
				t.Fatalf("call after repair: got %+v, %v", r, err)
			}
			if got := calls(t, in.db, tag); got != 2 {
				t.Errorf("the call after the repair ran the query again: %d executions, want 2", got)
			}
		})
	}
}

// behHookRow panics in its AfterFind hook, which GORM runs in the caller's
// goroutine after the rows are scanned.
type behHookRow struct {
	N   int
	Tag string
}

type behHookPanic struct{ tag string }

func (r *behHookRow) AfterFind(*gorm.DB) error { panic(behHookPanic{tag: r.Tag}) }

var errBehValuerPanic = errors.New("behaviour test: Value panicked inside the shared flight")

// behFlightPanicArg is a query argument whose Value panics while armed, but
// only when called from a flight: the driver converts arguments on the
// flight's goroutine, after the caller has computed the key with the same
// Value on its own goroutine.
type behFlightPanicArg struct {
	s     string
	armed *atomic.Bool
}

func (a behFlightPanicArg) Value() (driver.Value, error) {
	if a.armed.Load() && bytes.Contains(debug.Stack(), []byte("internal/engine.(*Engine).fly")) {
		panic(errBehValuerPanic)
	}
	return a.s, nil
}

// A panic in user code reaches the caller, and does not poison the key.
func TestBehaviourPanicReachesCaller(t *testing.T) {
	// concurrently runs f on two goroutines at once and returns what each
	// recovered.
	concurrently := func(f func()) [2]any {
		var out [2]any
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range out {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { out[i] = recover() }()
				<-start
				f()
			}()
		}
		close(start)
		wg.Wait()
		return out
	}

	t.Run("AfterFind hook", func(t *testing.T) {
		in := newInstances(t, 1, nil)[0]
		tag := uniqueTag(t)
		const q = "SELECT gft_record(?, 0) AS n, ?::text AS tag"
		recovered := concurrently(func() {
			var rows []behHookRow
			in.db.Scopes(Cache(time.Minute)).Raw(q, tag, tag).Find(&rows)
		})
		for i, v := range recovered {
			if v != (behHookPanic{tag: tag}) {
				t.Errorf("caller %d recovered %#v, want %#v", i, v, behHookPanic{tag: tag})
			}
		}
		// The same query into a type without the hook: a hit.
		var rows []struct {
			N   int
			Tag string
		}
		if err := in.db.Scopes(Cache(time.Minute)).Raw(q, tag, tag).Find(&rows).Error; err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].N != 1 || rows[0].Tag != tag {
			t.Errorf("after the panics: got %+v", rows)
		}
		if got := calls(t, in.db, tag); got != 1 {
			t.Errorf("PostgreSQL ran the query %d times, want 1", got)
		}
	})

	t.Run("Valuer in the shared flight", func(t *testing.T) {
		// Should the key stay locked, the follow-up call fails fast with
		// ErrWaitTimeout instead of waiting a minute.
		in := newInstances(t, 1, func(c *Config) {
			c.MaxWait = 2 * time.Second
			c.FailOnWaitTimeout = true
		})[0]
		prefix, rdb := in.p.cfg.Prefix, in.p.cfg.Redis
		tag := uniqueTag(t)
		var armed atomic.Bool
		armed.Store(true)
		arg := behFlightPanicArg{s: tag, armed: &armed}
		query := func() (slowRow, error) {
			var r slowRow
			err := in.db.Scopes(Cache(time.Minute)).
				Raw("SELECT gft_record(?, 0) AS n, ?::text AS tag, 'k'::text AS key", arg, tag).Scan(&r).Error
			return r, err
		}

		recovered := concurrently(func() { _, _ = query() })
		for i, v := range recovered {
			err, ok := v.(error)
			if !ok || !errors.Is(err, errBehValuerPanic) {
				t.Errorf("caller %d recovered %v, want a panic wrapping %v", i, v, errBehValuerPanic)
			}
		}
		if locks := behOfKind(behKeys(t, rdb, prefix), "l"); len(locks) != 0 {
			t.Errorf("the panicked flight left its lock held: %v (PTTL %v)", locks, rdb.PTTL(context.Background(), locks[0]).Val())
		}

		armed.Store(false)
		r, err := query()
		if want := (slowRow{N: 1, Tag: tag, Key: "k"}); err != nil || r != want {
			t.Errorf("after the panics: got %+v, %v; want %+v, nil", r, err, want)
		}
		if got := calls(t, in.db, tag); got != 1 {
			t.Errorf("PostgreSQL ran the query %d times, want 1", got)
		}
		if s := in.p.Stats(); s.WaitTimeouts != 0 || s.Fallbacks != 0 {
			t.Errorf("after the panic the key was not usable: Stats %+v", s)
		}
	})
}

// behTxRow is a row of gft_beh_tx, a table of these tests; rows are keyed
// by tag.
type behTxRow struct {
	ID  int64
	Tag string
	V   int
}

func (behTxRow) TableName() string { return "gft_beh_tx" }

var behSchemaSetup = schemaOnce{lock: schemaLockBehaviour}

func behSchema(t testing.TB, db *gorm.DB) {
	t.Helper()
	err := behSchemaSetup.do(db, func(tx *gorm.DB) error {
		return tx.Exec(`
CREATE TABLE IF NOT EXISTS gft_beh_tx (id bigserial PRIMARY KEY, tag text NOT NULL, v int NOT NULL DEFAULT 0);
CREATE OR REPLACE PROCEDURE gft_beh_bump(p_tag text, INOUT p_v int DEFAULT NULL) LANGUAGE plpgsql AS $$
BEGIN
	UPDATE gft_beh_tx SET v = v + 1 WHERE tag = p_tag RETURNING v INTO p_v;
END $$;`).Error
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Reads inside a transaction bypass the cache.
func TestBehaviourTransactionBypass(t *testing.T) {
	in := newInstances(t, 1, nil)[0]
	prefix, rdb := in.p.cfg.Prefix, in.p.cfg.Redis
	behSchema(t, in.db)
	tag := uniqueTag(t)
	const countSQL = "SELECT count(*) FROM gft_beh_tx WHERE tag = ?"

	bypassed := in.p.Stats().Bypassed
	errRollback := errors.New("roll back")
	err := in.db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&behTxRow{Tag: tag, V: 1}).Error; err != nil {
			return err
		}
		var n int64
		if err := tx.Scopes(Cache(time.Minute)).Raw(countSQL, tag).Scan(&n).Error; err != nil {
			return err
		}
		if n != 1 {
			t.Errorf("Raw.Scan in the transaction counted %d rows, want its own insert (1)", n)
		}
		var rows []behTxRow
		if err := tx.Scopes(Cache(time.Minute)).Where("tag = ?", tag).Find(&rows).Error; err != nil {
			return err
		}
		if len(rows) != 1 || rows[0].V != 1 {
			t.Errorf("Find in the transaction got %+v, want its own insert", rows)
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("transaction: %v", err)
	}
	if got := in.p.Stats().Bypassed - bypassed; got != 2 {
		t.Errorf("Stats().Bypassed increased by %d, want 2", got)
	}
	if e := behOfKind(behKeys(t, rdb, prefix), engine.EntryKind); len(e) != 0 {
		t.Errorf("reads inside a transaction were stored: %v", e)
	}

	// Outside, the same cached read sees the rollback.
	var n int64
	if err := in.db.Scopes(Cache(time.Minute)).Raw(countSQL, tag).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("after the rollback the cached read counted %d rows, want 0", n)
	}
	if e := behOfKind(behKeys(t, rdb, prefix), engine.EntryKind); len(e) != 1 {
		t.Errorf("the read outside the transaction should be stored: entries %v", e)
	}
}

// Statements that write bypass the cache, even with RETURNING.
func TestBehaviourWritesBypass(t *testing.T) {
	type state struct{ Rows, Sum int64 }
	cases := []struct {
		name          string
		seed          []int // v of the rows inserted first
		sql           string
		first, second []int64
		final         state
	}{
		{"UPDATE RETURNING", []int{0},
			"UPDATE gft_beh_tx SET v = v + 1 WHERE tag = ? RETURNING v",
			[]int64{1}, []int64{2}, state{1, 2}},
		{"WITH UPDATE RETURNING", []int{0},
			"WITH u AS (UPDATE gft_beh_tx SET v = v + 1 WHERE tag = ? RETURNING v) SELECT v FROM u",
			[]int64{1}, []int64{2}, state{1, 2}},
		{"INSERT RETURNING", nil,
			"INSERT INTO gft_beh_tx (tag, v) VALUES (?, 7) RETURNING v",
			[]int64{7}, []int64{7}, state{2, 14}},
		{"DELETE RETURNING", []int{1, 2},
			"DELETE FROM gft_beh_tx WHERE id = (SELECT min(id) FROM gft_beh_tx WHERE tag = ?) RETURNING v",
			[]int64{1}, []int64{2}, state{0, 0}},
		// A procedure writes as surely as UPDATE does; its INOUT parameter
		// comes back as a row.
		{"CALL procedure", []int{0},
			"CALL gft_beh_bump(?, NULL)",
			[]int64{1}, []int64{2}, state{1, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := newInstances(t, 1, nil)[0]
			prefix, rdb := in.p.cfg.Prefix, in.p.cfg.Redis
			behSchema(t, in.db)
			tag := uniqueTag(t)
			for _, v := range tc.seed {
				if err := in.db.Create(&behTxRow{Tag: tag, V: v}).Error; err != nil {
					t.Fatal(err)
				}
			}
			bypassed := in.p.Stats().Bypassed
			for i, want := range [][]int64{tc.first, tc.second} {
				var got []int64
				if err := in.db.Scopes(Cache(time.Minute)).Raw(tc.sql, tag).Scan(&got).Error; err != nil {
					t.Fatalf("call %d: %v", i+1, err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("call %d returned %v, want %v", i+1, got, want)
				}
			}
			var st state
			if err := in.db.Raw("SELECT count(*) AS rows, coalesce(sum(v), 0) AS sum FROM gft_beh_tx WHERE tag = ?", tag).Scan(&st).Error; err != nil {
				t.Fatal(err)
			}
			if st != tc.final {
				t.Errorf("table state after two calls: %+v, want %+v", st, tc.final)
			}
			if got := in.p.Stats().Bypassed - bypassed; got != 2 {
				t.Errorf("Stats().Bypassed increased by %d, want 2", got)
			}
			if e := behOfKind(behKeys(t, rdb, prefix), engine.EntryKind); len(e) != 0 {
				t.Errorf("a write's result was stored: %v", e)
			}
		})
	}
}

// A stampede leaves no subscription behind, and Close leaves no goroutine.
func TestBehaviourNoLeaks(t *testing.T) {
	const ninstances, callers, nkeys = 3, 30, 5
	ctl := openDB(t) // counts calls and holds the gate; not measured
	ctlRedis := openRedis(t, "")
	prefix, tag := testPrefix(t), uniqueTag(t)
	gate := behHoldGate(t, ctl)

	base := runtime.NumGoroutine()

	type app struct {
		sqlDB *sql.DB
		rdb   *redis.Client
		in    *instance
	}
	apps := make([]app, ninstances)
	closeAll := func() {
		for _, a := range apps {
			if a.in != nil {
				if err := a.in.p.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
			if a.rdb != nil {
				_ = a.rdb.Close()
			}
			if a.sqlDB != nil {
				_ = a.sqlDB.Close()
			}
		}
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			closeAll()
		}
	})
	for i := range apps {
		db, err := gorm.Open(postgres.Open(testDSN()), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			t.Fatal(err)
		}
		if apps[i].sqlDB, err = db.DB(); err != nil {
			t.Fatal(err)
		}
		apps[i].rdb = redis.NewClient(&redis.Options{Addr: testRedisAddr(), PoolSize: 64})
		p, err := New(testConfig(apps[i].rdb, prefix))
		if err != nil {
			t.Fatal(err)
		}
		apps[i].in = &instance{db: db, p: p}
		if err := db.Use(p); err != nil {
			t.Fatal(err)
		}
	}

	start := make(chan struct{})
	var wg sync.WaitGroup
	type result struct {
		r   slowRow
		err error
	}
	results := make([]result, ninstances*callers)
	for i, a := range apps {
		for c := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				key := fmt.Sprintf("k%d", c%nkeys)
				r, err := behGatedQuery(context.Background(), a.in, tag, key, gate)
				results[i*callers+c] = result{r, err}
			}()
		}
	}
	close(start)
	// One loader per key blocks on the gate; the two other instances wait
	// for it on the key's channel.
	waitFor(t, "one query per key to run in PostgreSQL", waitTimeout, func() bool { return gate.waiting(t) == nkeys })
	waitFor(t, "the other instances to subscribe", waitTimeout, func() bool {
		n := 0
		for _, a := range apps {
			n += a.in.p.engine.Subscribed()
		}
		return n == (ninstances-1)*nkeys
	})
	waitFor(t, "Redis to report the subscriptions", waitTimeout, func() bool {
		return len(behChannels(t, ctlRedis, prefix)) == nkeys
	})
	gate.release()
	wg.Wait()

	for i, res := range results {
		want := slowRow{N: 1, Tag: tag, Key: fmt.Sprintf("k%d", (i%callers)%nkeys)}
		if res.err != nil || res.r != want {
			t.Errorf("instance %d caller %d: got %+v, %v; want %+v", i/callers, i%callers, res.r, res.err, want)
		}
	}
	if got := calls(t, ctl, tag); got != nkeys {
		t.Errorf("PostgreSQL ran the queries %d times, want %d", got, nkeys)
	}
	for i, a := range apps {
		if n := a.in.p.engine.Subscribed(); n != 0 {
			t.Errorf("instance %d: hub still subscribed to %d channels", i, n)
		}
	}
	// UNSUBSCRIBE is written without waiting for its reply: give Redis the
	// moment it needs to process it.
	var chans []string
	unsubscribed := eventually(10*time.Second, func() bool {
		chans = behChannels(t, ctlRedis, prefix)
		return len(chans) == 0
	})
	if !unsubscribed {
		t.Errorf("Redis still has subscribers on %v", chans)
	}

	closeAll()
	closed = true
	if !eventually(10*time.Second, func() bool { return runtime.NumGoroutine() <= base }) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines after Close, %d before the instances were created:\n%s", runtime.NumGoroutine(), base, buf)
	}
}

// After Close, opted-in queries run uncached; Close is idempotent.
func TestBehaviourClose(t *testing.T) {
	t.Run("queries after Close run uncached", func(t *testing.T) {
		in := newInstances(t, 1, nil)[0]
		tag := uniqueTag(t)
		if err := in.p.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := in.p.Close(); err != nil {
			t.Errorf("second Close: %v, want nil", err)
		}
		want := slowRow{N: 1, Tag: tag, Key: "k"}
		for i := int64(1); i <= 3; i++ {
			// A query that never returns would hang the test binary: bound
			// the wait generously and report it.
			done := make(chan struct{})
			var r slowRow
			var err error
			go func() {
				defer close(done)
				r, err = slowQuery(context.Background(), in, tag, "k", 0)
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("call %d after Close did not return (20s): the query is blocked in the plugin", i)
			}
			if err != nil || r != want {
				t.Fatalf("call %d after Close: got %+v, %v", i, r, err)
			}
			if got := calls(t, in.db, tag); got != i {
				t.Errorf("after %d calls PostgreSQL counted %d executions", i, got)
			}
		}
		if keys := behKeys(t, in.p.cfg.Redis, in.p.cfg.Prefix); len(keys) != 0 {
			t.Errorf("queries after Close reached Redis: %v", keys)
		}
		if s := in.p.Stats(); s.Loads != 0 || s.Hits != 0 || s.Misses != 0 {
			t.Errorf("queries after Close went through the engine: %+v", s)
		}
	})

	// A caller that arrives while Close waits for a slow load goes to the
	// database at once; it used to wait behind Close for the load.
	t.Run("callers during Close do not wait for it", func(t *testing.T) {
		in := newInstances(t, 1, nil)[0]
		gate := behHoldGate(t, in.db)
		loaded := make(chan error, 1)
		go func() {
			_, err := behGatedQuery(context.Background(), in, uniqueTag(t), "k", gate)
			loaded <- err
		}()
		waitFor(t, "the load to start", waitTimeout, func() bool { return gate.waiting(t) == 1 })
		closed := make(chan error, 1)
		go func() { closed <- in.p.Close() }()
		waitFor(t, "Close to wait for the load", waitTimeout, func() bool {
			return in.p.engine.Closing()
		})
		tag := uniqueTag(t)
		done := make(chan error, 1)
		go func() {
			r, err := slowQuery(context.Background(), in, tag, "k", 0)
			if want := (slowRow{N: 1, Tag: tag, Key: "k"}); err == nil && r != want {
				err = fmt.Errorf("got %+v, want %+v", r, want)
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a caller that arrived during Close waited for it (20s, the load is still held)")
		}
		if n := gate.waiting(t); n != 1 {
			t.Fatalf("%d loads wait at the gate, want the one Close waits for", n)
		}
		gate.release()
		if err := <-loaded; err != nil {
			t.Fatal(err)
		}
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a waiting flight queries the database on Close", func(t *testing.T) {
		ins := newInstances(t, 2, nil)
		tag := uniqueTag(t)
		gate := behHoldGate(t, ins[0].db)
		want := slowRow{N: 1, Tag: tag, Key: "k"}
		errs := make(chan error, 2)
		run := func(in *instance) {
			r, err := behGatedQuery(context.Background(), in, tag, "k", gate)
			if err == nil && r != want {
				err = fmt.Errorf("got %+v, want %+v", r, want)
			}
			errs <- err
		}
		go run(ins[0])
		waitFor(t, "instance 0 to load", waitTimeout, func() bool { return gate.waiting(t) == 1 })
		go run(ins[1])
		waitFor(t, "instance 1 to wait", waitTimeout, func() bool { return ins[1].p.engine.Subscribed() == 1 })

		closeErr := make(chan error, 1)
		go func() { closeErr <- ins[1].p.Close() }()
		// Instance 1 stops waiting and runs the query itself: a second
		// session blocks on the gate.
		waitFor(t, "instance 1 to query the database itself", waitTimeout, func() bool { return gate.waiting(t) == 2 })
		gate.release()
		for range 2 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		if err := <-closeErr; err != nil {
			t.Errorf("Close: %v", err)
		}
		if got := calls(t, ins[0].db, tag); got != 2 {
			t.Errorf("PostgreSQL ran the query %d times, want 2", got)
		}
		if f := ins[1].p.Stats().Fallbacks; f != 1 {
			t.Errorf("instance 1 Stats().Fallbacks = %d, want 1", f)
		}
	})
}

// Config validation and Cache's TTL check.
func TestBehaviourConfigValidation(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testRedisAddr()})
	t.Cleanup(func() { _ = rdb.Close() })
	cases := []struct {
		name string
		cfg  Config
		want error
	}{
		{"zero Config", Config{}, ErrNoRedis},
		{"no Redis", Config{Prefix: "app", LockExpiry: time.Second}, ErrNoRedis},
		{"negative LockExpiry", Config{Redis: rdb, LockExpiry: -time.Second}, ErrInvalidConfig},
		{"LockExpiry too short", Config{Redis: rdb, LockExpiry: time.Millisecond}, ErrInvalidConfig},
		{"negative MaxWait", Config{Redis: rdb, MaxWait: -time.Second}, ErrInvalidConfig},
		{"negative RedisTimeout", Config{Redis: rdb, RedisTimeout: -time.Nanosecond}, ErrInvalidConfig},
		{"negative LoadTimeout", Config{Redis: rdb, LoadTimeout: -time.Minute}, ErrInvalidConfig},
		{"Prefix with {", Config{Redis: rdb, Prefix: "app{1"}, ErrInvalidConfig},
		{"Prefix with }", Config{Redis: rdb, Prefix: "app}1"}, ErrInvalidConfig},
		{"negative BreakerCooldown", Config{Redis: rdb, BreakerCooldown: -time.Second}, ErrInvalidConfig},
		{"negative FailoverWait", Config{Redis: rdb, FailoverWait: -time.Second}, ErrInvalidConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.cfg)
			if !errors.Is(err, tc.want) {
				t.Errorf("New: got %v, want %v", err, tc.want)
			}
			if p != nil {
				t.Error("New returned a Plugin with an error")
				_ = p.Close()
			}
		})
	}

	// Negative counts, sizes and fractions turn their limit off (Config's
	// rule); the engine's tests show what each does.
	for _, cfg := range []Config{
		{Redis: rdb, MaxEntrySize: -1}, {Redis: rdb, BreakerFailures: -1},
		{Redis: rdb, MemoSize: -1}, {Redis: rdb, TTLJitter: -1},
	} {
		p, err := New(cfg)
		if err != nil {
			t.Errorf("New(%+v): %v, want it accepted", cfg, err)
			continue
		}
		_ = p.Close()
	}

	t.Run("defaults", func(t *testing.T) {
		p, err := New(Config{Redis: rdb})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		c := p.cfg
		if c.Prefix != "gormflight" || c.LockExpiry != 2*time.Second || c.MaxWait != 10*time.Second ||
			c.RedisTimeout != 250*time.Millisecond || c.LoadTimeout != time.Minute ||
			c.MaxEntrySize != 1<<20 || c.TTLJitter != 0.1 || c.FailOnWaitTimeout ||
			c.BreakerFailures != 5 || c.BreakerCooldown != time.Second || c.FailClosed || c.FailoverWait != c.LockExpiry {
			t.Errorf("defaults: %+v", c)
		}
	})

	t.Run("Cache TTL", func(t *testing.T) {
		in := newInstances(t, 1, nil)[0]
		for _, ttl := range []time.Duration{0, -time.Second, time.Microsecond, MinTTL - 1, MaxTTL + 1, math.MaxInt64} {
			for _, path := range []string{"Scan", "Find"} {
				t.Run(fmt.Sprintf("%s/%v", path, ttl), func(t *testing.T) {
					tag := uniqueTag(t)
					q := in.db.Scopes(Cache(ttl)).Raw("SELECT gft_record(?, 0) AS n", tag)
					var err error
					if path == "Scan" {
						var n int
						err = q.Scan(&n).Error
					} else {
						var rows []struct{ N int }
						err = q.Find(&rows).Error
					}
					if !errors.Is(err, ErrInvalidTTL) {
						t.Errorf("got %v, want ErrInvalidTTL", err)
					}
					if got := calls(t, in.db, tag); got != 0 {
						t.Errorf("the query ran %d times, want 0", got)
					}
				})
			}
		}
	})
}

// Redis names carry a hash, never the SQL or its arguments.
func TestBehaviourKeysLeakNothing(t *testing.T) {
	const secret = "secret-arg-value-123"
	const leakSQL = `SELECT gft_record(?, 0) AS n, ?::text AS leak_probe_column
FROM (SELECT pg_advisory_xact_lock_shared(?)) AS leak_probe_gate`
	ins := newInstances(t, 2, nil)
	prefix, rdb := ins[0].p.cfg.Prefix, ins[0].p.cfg.Redis
	tag := uniqueTag(t)
	gate := behHoldGate(t, ins[0].db)
	type row struct {
		N               int
		LeakProbeColumn string
	}
	errs := make(chan error, 2)
	run := func(in *instance) {
		var r row
		err := in.db.Scopes(Cache(time.Minute)).Raw(leakSQL, tag, secret, gate.key).Scan(&r).Error
		if err == nil && r != (row{1, secret}) {
			err = fmt.Errorf("got %+v", r)
		}
		errs <- err
	}

	// Hold the load open so that the lock and the channel exist to be seen.
	go run(ins[0])
	waitFor(t, "instance 0 to load", waitTimeout, func() bool { return gate.waiting(t) == 1 })
	go run(ins[1])
	waitFor(t, "instance 1 to subscribe", waitTimeout, func() bool { return len(behChannels(t, rdb, prefix)) == 1 })
	names := append(behKeys(t, rdb, prefix), behChannels(t, rdb, prefix)...)
	gate.release()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	entries := behOfKind(behKeys(t, rdb, prefix), engine.EntryKind)
	names = append(names, entries...)

	valid := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `:\{([0-9a-f]{32})\}:(` + engine.EntryKind + `|l|r)$`)
	kinds := map[string]bool{}
	hashes := map[string]bool{}
	for _, n := range names {
		if n == prefix+":g:{"+sqlscan.AllTables+"}" {
			continue // the generation every entry depends on (DDL that names no table)
		}
		if n == prefix+":recovered" {
			continue // the run of the server last recovered (internal/engine/restart.go)
		}
		m := valid.FindStringSubmatch(n)
		if m == nil {
			t.Errorf("name %q does not match %v", n, valid)
			continue
		}
		hashes[m[1]], kinds[m[2]] = true, true
		rest := strings.ToLower(strings.TrimPrefix(n, prefix))
		for _, leak := range []string{secret, tag, "select", "gft_record", "leak_probe", "pg_advisory", "text"} {
			if strings.Contains(rest, strings.ToLower(leak)) {
				t.Errorf("name %q contains %q", n, leak)
			}
		}
	}
	if len(kinds) != 3 || len(hashes) != 1 {
		t.Errorf("saw kinds %v and hashes %v in %v; want entry, lock and channel of one hash", kinds, hashes, names)
	}
	if len(entries) != 1 {
		t.Fatalf("entries %v, want one", entries)
	}
	for _, e := range entries {
		ttl, err := rdb.PTTL(context.Background(), e).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 {
			t.Errorf("entry %q has PTTL %v, want a positive TTL", e, ttl)
		}
	}
}

// A hit costs one Redis round trip: one command, or one pipeline when
// the generations of the tables read are fetched with the entry.
func TestBehaviourHitIsOneRedisRoundTrip(t *testing.T) {
	cases := []struct {
		name   string
		sql    string
		tables []string
	}{
		{"no tables", "SELECT gft_record(?, 0) AS n, ?::text AS tag", nil},
		{"two tables", `SELECT gft_record(?, 0) AS n, ?::text AS tag,
			(SELECT count(*) FROM gft_beh_tx) AS a, (SELECT count(*) FROM gft_fail) AS b`,
			[]string{"gft_beh_tx", "gft_fail"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if read, _ := dialect.Postgres.Tables(tc.sql); !slices.Equal(read, tc.tables) {
				t.Fatalf("test precondition: the query reads %v, want %v", read, tc.tables)
			}
			rdb := openRedis(t, "")
			trips := &roundTrips{}
			rdb.AddHook(trips)
			in := newInstance(t, testConfig(rdb, testPrefix(t)))
			behSchema(t, in.db)
			tag := uniqueTag(t)
			type row struct {
				N   int
				Tag string
			}
			want := row{N: 1, Tag: tag}
			query := func() (row, error) {
				var r row
				err := in.db.Scopes(Cache(time.Minute)).Raw(tc.sql, tag, tag).Scan(&r).Error
				return r, err
			}

			if r, err := query(); err != nil || r != want {
				t.Fatalf("priming call: got %+v, %v", r, err)
			}
			t.Logf("miss: %v", trips.take())
			hits := in.p.Stats().Hits

			if r, err := query(); err != nil || r != want {
				t.Fatalf("hit: got %+v, %v", r, err)
			}
			got := trips.take()
			if len(got) != 1 {
				t.Errorf("a hit made %d Redis round trips %v, want 1", len(got), got)
			}
			t.Logf("hit: %v", got)
			if s := in.p.Stats(); s.Hits != hits+1 {
				t.Errorf("Stats().Hits went from %d to %d, want one more", hits, s.Hits)
			}
			if got := calls(t, in.db, tag); got != 1 {
				t.Errorf("PostgreSQL ran the query %d times, want 1", got)
			}
		})
	}
}
