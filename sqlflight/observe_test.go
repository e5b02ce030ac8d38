package sqlflight_test

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/testdb"
	"github.com/gormflight/gormflight/observe"
	"github.com/gormflight/gormflight/sqlflight"
	"github.com/redis/go-redis/v9"
)

// recorder is an Observer that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []observe.Event
}

func (r *recorder) Observe(_ context.Context, ev observe.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

// take returns the events since the last take.
func (r *recorder) take() []observe.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// storesEntry matches the round trip that stores a loaded entry.
func storesEntry(cmds []redis.Cmder) bool {
	return slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return engine.ScriptOf(c) == engine.ScriptFill })
}

// observed returns an instance whose events rec records, on the Redis at
// addr (default: the shared one), with hook on its client when not nil.
func (r *rig) observed(t *testing.T, addr string, hook redis.Hook) (*instance, *recorder) {
	t.Helper()
	rec := new(recorder)
	in := r.instanceWith(t, func(c *sqlflight.Config) {
		c.Observer = rec
		if addr != "" {
			c.Redis = redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
			t.Cleanup(func() { _ = c.Redis.Close() })
			c.RedisTimeout = 200 * time.Millisecond
		}
		if hook != nil {
			c.Redis.(*redis.Client).AddHook(hook)
		}
	})
	return in, rec
}

// obsRead reads row 1 of table, cached, recording the execution under tag.
func (r *rig) obsRead(t *testing.T, db *sql.DB, table, tag string) error {
	t.Helper()
	var val string
	var n int
	ctx := sqlflight.WithCache(context.Background(), time.Minute)
	err := db.QueryRowContext(ctx, r.q("SELECT val, gft_record(?, 0) AS n FROM "+table+" WHERE id = ?"), tag, 1).Scan(&val, &n)
	if err == nil && (val != "one" || n != 1) {
		err = fmt.Errorf("read %q, %d, want one, 1", val, n)
	}
	return err
}

var hexKey = regexp.MustCompile(`^[0-9a-f]{32}$`)

// expectEvents checks the outcomes of rec's events since the last take,
// that each names table, and that none holds the SQL or the tag.
func expectEvents(t *testing.T, rec *recorder, want, table, tag string) []observe.Event {
	t.Helper()
	return checkEvents(t, rec.take(), want, table, tag)
}

// checkEvents is expectEvents for events taken already.
func checkEvents(t *testing.T, evs []observe.Event, want, table, tag string) []observe.Event {
	t.Helper()
	names := make([]string, len(evs))
	for i, ev := range evs {
		names[i] = ev.Outcome.String()
		if ev.Outcome != observe.Bypass && !hexKey.MatchString(ev.Key) {
			t.Errorf("%s event's Key is %q, want 32 hex digits", ev.Outcome, ev.Key)
		}
		if !slices.Equal(ev.Tables, []string{table}) || ev.Err != nil || ev.Start.IsZero() {
			t.Errorf("%s event %+v, want Tables [%s], no error", ev.Outcome, ev, table)
		}
		all := fmt.Sprintf("%+v", ev)
		for _, s := range []string{tag, "SELECT", "gft_record"} {
			if strings.Contains(all, s) {
				t.Errorf("the event %s holds %q", all, s)
			}
		}
	}
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("observed [%s], want [%s]", got, want)
	}
	return evs
}

// The Observer sees how the cache answered each query run with WithCache,
// on every database: a load, then hits; a wait on another instance's
// load; callers sharing a flight; a fallback while Redis is down; bypasses
// in a transaction and through a prepared statement.
func TestObserverOutcomes(t *testing.T) {
	forEachDB(t, func(t *testing.T, r *rig) {
		for _, c := range []struct {
			name string
			run  func(t *testing.T, r *rig, table, tag string)
		}{
			{"load then hit", observeLoadHit},
			{"wait", observeWait},
			{"shared", observeShared},
			{"fallback", observeFallback},
			{"bypass", observeBypass},
		} {
			t.Run(c.name, func(t *testing.T) {
				tag := testdb.Unique("obs-")
				c.run(t, r, r.table(t), tag)
			})
		}
	})
}

func observeLoadHit(t *testing.T, r *rig, table, tag string) {
	a, recA := r.observed(t, "", nil)
	b, recB := r.observed(t, "", nil)
	for _, in := range []*instance{a, a, b} {
		if err := r.obsRead(t, in.db, table, tag); err != nil {
			t.Fatal(err)
		}
	}
	evs := expectEvents(t, recA, "load hit", table, tag)
	hit := expectEvents(t, recB, "hit", table, tag)[0]
	if evs[0].Key != evs[1].Key || hit.Key != evs[0].Key || evs[0].Load <= 0 || hit.Load != 0 {
		t.Errorf("events %+v and %+v", evs, hit)
	}
	if n := testdb.Calls(t, r.name, r.plain, tag); n != 1 {
		t.Errorf("%s ran the query %d times, want 1", r.name, n)
	}
}

// Instance A's store is held until B waits for it.
func observeWait(t *testing.T, r *rig, table, tag string) {
	hook := testdb.NewHoldHook(t, storesEntry)
	hook.Arm()
	a, recA := r.observed(t, "", hook)
	b, recB := r.observed(t, "", nil)
	errs := make(chan error, 2)
	go func() { errs <- r.obsRead(t, a.db, table, tag) }()
	<-hook.Held()
	go func() { errs <- r.obsRead(t, b.db, table, tag) }()
	testdb.WaitFor(t, "B to wait", func() bool { return b.c.Stats().Waits == 1 })
	hook.Release()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	load := expectEvents(t, recA, "load", table, tag)[0]
	wait := expectEvents(t, recB, "wait", table, tag)[0]
	if wait.Wait <= 0 || wait.Load != 0 || load.Load <= 0 || wait.Key != load.Key {
		t.Errorf("load event %+v, wait event %+v", load, wait)
	}
	if n := testdb.Calls(t, r.name, r.plain, tag); n != 1 {
		t.Errorf("%s ran the query %d times, want 1", r.name, n)
	}
}

// The first caller's flight is held at its first look into Redis until a
// second caller of the same instance has joined it.
func observeShared(t *testing.T, r *rig, table, tag string) {
	hook := testdb.NewHoldHook(t, testdb.LooksUp)
	a, rec := r.observed(t, "", hook)
	hook.Arm()
	errs := make(chan error, 2)
	go func() { errs <- r.obsRead(t, a.db, table, tag) }()
	<-hook.Held()
	go func() { errs <- r.obsRead(t, a.db, table, tag) }()
	testdb.WaitFor(t, "the second caller to join", func() bool { return testdb.JoinedFlights() == 1 })
	hook.Release()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	evs := rec.take()
	slices.SortFunc(evs, func(x, y observe.Event) int { return int(x.Outcome) - int(y.Outcome) })
	checkEvents(t, evs, "shared load", table, tag)
	if evs[0].Wait <= 0 || evs[0].Key != evs[1].Key {
		t.Errorf("shared event %+v", evs[0])
	}
	if n := testdb.Calls(t, r.name, r.plain, tag); n != 1 {
		t.Errorf("%s ran the query %d times, want 1", r.name, n)
	}
}

func observeFallback(t *testing.T, r *rig, table, tag string) {
	addr, stop, restart := testdb.StartRedis(t)
	a, rec := r.observed(t, addr, nil)
	if err := r.obsRead(t, a.db, table, tag); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, rec, "load", table, tag)
	stop()
	t.Cleanup(restart) // before the instance closes: Close is quicker with a Redis
	if err := r.obsRead(t, a.db, table, tag); err != nil {
		t.Fatal(err)
	}
	if fb := expectEvents(t, rec, "fallback", table, tag)[0]; fb.Load <= 0 {
		t.Errorf("fallback event %+v", fb)
	}
	if n := testdb.Calls(t, r.name, r.plain, tag); n != 2 {
		t.Errorf("%s ran the query %d times, want 2", r.name, n)
	}
}

// A query in a transaction and one of a prepared statement run uncached.
func observeBypass(t *testing.T, r *rig, table, tag string) {
	a, rec := r.observed(t, "", nil)
	ctx := sqlflight.WithCache(context.Background(), time.Minute)
	query := r.q("SELECT val, gft_record(?, 0) FROM " + table + " WHERE id = 1")
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var val string
	var n int
	if err := tx.QueryRowContext(ctx, query, tag).Scan(&val, &n); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	st, err := a.db.PrepareContext(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.QueryRowContext(ctx, tag).Scan(&val, &n); err != nil {
		t.Fatal(err)
	}
	for _, ev := range expectEvents(t, rec, "bypass bypass", table, tag) {
		if ev.Key != "" {
			t.Errorf("bypass event with key %q", ev.Key)
		}
	}
	if n := testdb.Calls(t, r.name, r.plain, tag); n != 2 {
		t.Errorf("%s ran the query %d times, want 2", r.name, n)
	}
}
