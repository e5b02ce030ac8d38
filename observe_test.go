package gormflight

import (
	"context"
	"errors"
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
	"gorm.io/gorm"
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

// outcomes renders the events' outcomes, in order, as "load hit".
func outcomes(evs []observe.Event) string {
	names := make([]string, len(evs))
	for i, ev := range evs {
		names[i] = ev.Outcome.String()
	}
	return strings.Join(names, " ")
}

// obsRig is an instance per recorder on a shared prefix (at the Redis at
// addr, default the shared one) and a table of its own, gft_obs_<hex>,
// with the rows (1, 'one') and (2, 'two').
type obsRig struct {
	ins   []*instance
	recs  []*recorder
	table string
}

func newObsRig(t *testing.T, addr string, n int, mod func(*Config)) *obsRig {
	t.Helper()
	r := &obsRig{table: "gft_obs_" + randHex(6)}
	r.ins = newInstancesAt(t, addr, n, func(c *Config) {
		rec := new(recorder)
		r.recs = append(r.recs, rec)
		c.Observer = rec
		if mod != nil {
			mod(c)
		}
	})
	admin := r.ins[0].db
	adminExec(t, admin, "CREATE TABLE "+r.table+" (id int PRIMARY KEY, v text NOT NULL)")
	dropAtEnd(t, admin, "DROP TABLE IF EXISTS "+r.table)
	adminExec(t, admin, "INSERT INTO "+r.table+" VALUES (1, 'one'), (2, 'two')")
	return r
}

// read reads row id through instance i, cached with opts, recording the
// execution under tag, and checks the row.
func (r *obsRig) read(t *testing.T, i int, tag string, id int, opts ...Option) error {
	t.Helper()
	var row struct {
		V string
		N int
	}
	err := r.ins[i].db.Scopes(Cache(time.Minute, opts...)).
		Raw("SELECT v, gft_record(?, 0) AS n FROM "+r.table+" WHERE id = ?", tag, id).Scan(&row).Error
	if want := map[int]string{1: "one", 2: "two"}[id]; err == nil && (row.V != want || row.N != 1) {
		t.Errorf("read %+v, want {V:%s N:1}", row, want)
	}
	return err
}

// mustRead is read that fails the test on error.
func (r *obsRig) mustRead(t *testing.T, i int, tag string, id int, opts ...Option) {
	t.Helper()
	if err := r.read(t, i, tag, id, opts...); err != nil {
		t.Fatal(err)
	}
}

// expect takes instance i's events, checks their outcomes and that none
// leaks the query (checkEvent), and returns them.
func (r *obsRig) expect(t *testing.T, i int, want string, secrets ...string) []observe.Event {
	t.Helper()
	evs := r.recs[i].take()
	if got := outcomes(evs); got != want {
		t.Fatalf("instance %d observed [%s], want [%s]", i, got, want)
	}
	for _, ev := range evs {
		checkEvent(t, ev, secrets...)
	}
	return evs
}

var hexKey = regexp.MustCompile(`^[0-9a-f]{32}$`)

// checkEvent checks that an event tells the key as a hash only, and holds
// neither SQL text nor any of the secrets (argument values).
func checkEvent(t *testing.T, ev observe.Event, secrets ...string) {
	t.Helper()
	if ev.Outcome != observe.Bypass && !hexKey.MatchString(ev.Key) {
		t.Errorf("%s event's Key is %q, want 32 hex digits", ev.Outcome, ev.Key)
	}
	if ev.Start.IsZero() || ev.Duration <= 0 {
		t.Errorf("%s event has Start %v, Duration %v", ev.Outcome, ev.Start, ev.Duration)
	}
	ev.Tables = nil // table names are told, on purpose
	ev.Err = nil    // the database's own message, as the caller gets it
	all := fmt.Sprintf("%+v", ev)
	for _, s := range append(secrets, "SELECT", "gft_record") {
		if strings.Contains(all, s) {
			t.Errorf("the event %s holds %q", all, s)
		}
	}
}

// The Observer sees the outcome of every cached statement, as the engine
// decided it, in real scenarios on PostgreSQL and Redis; an event never
// holds SQL text or argument values.
func TestObserverOutcomes(t *testing.T) {
	t.Run("load, then hits on both instances", func(t *testing.T) {
		r := newObsRig(t, "", 2, nil)
		tag := uniqueTag(t)
		r.mustRead(t, 0, tag, 1)
		load := r.expect(t, 0, "load", tag)[0]
		r.mustRead(t, 1, tag, 1)
		hit := r.expect(t, 1, "hit", tag)[0]
		r.mustRead(t, 0, tag, 1)
		again := r.expect(t, 0, "hit", tag)[0]
		if load.Key != hit.Key || hit.Key != again.Key {
			t.Errorf("one query, keys %s, %s, %s", load.Key, hit.Key, again.Key)
		}
		if !slices.Equal(load.Tables, []string{r.table}) || !slices.Equal(hit.Tables, []string{r.table}) {
			t.Errorf("Tables %v and %v, want [%s]", load.Tables, hit.Tables, r.table)
		}
		if load.Load <= 0 || hit.Load != 0 || load.Wait != 0 || load.Err != nil {
			t.Errorf("load event %+v, hit event %+v", load, hit)
		}
		if n := calls(t, r.ins[0].db, tag); n != 1 {
			t.Errorf("PostgreSQL ran the query %d times, want 1", n)
		}
	})

	t.Run("a second instance waits for the first one's load", func(t *testing.T) {
		r := newObsRig(t, "", 2, nil)
		tag := uniqueTag(t)
		gate := behHoldGate(t, r.ins[0].db)
		errs := make(chan error, 2)
		go func() { _, err := behGatedQuery(context.Background(), r.ins[0], tag, "k", gate); errs <- err }()
		waitFor(t, "instance 0 to load", waitTimeout, func() bool { return gate.waiting(t) == 1 })
		go func() { _, err := behGatedQuery(context.Background(), r.ins[1], tag, "k", gate); errs <- err }()
		waitFor(t, "instance 1 to wait", waitTimeout, func() bool { return r.ins[1].p.engine.Subscribed() == 1 })
		gate.release()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		load := r.expect(t, 0, "load", tag)[0]
		wait := r.expect(t, 1, "wait", tag)[0]
		if wait.Wait <= 0 || wait.Load != 0 || load.Load <= 0 || wait.Key != load.Key {
			t.Errorf("load event %+v, wait event %+v", load, wait)
		}
		if n := calls(t, r.ins[0].db, tag); n != 1 {
			t.Errorf("PostgreSQL ran the query %d times, want 1", n)
		}
	})

	t.Run("callers of one instance share its flight", func(t *testing.T) {
		testObserverShared(t)
	})

	t.Run("a near-cache hit", func(t *testing.T) {
		r := newObsRig(t, "", 1, nil)
		warm := uniqueTag(t)
		// Only what is read once the near cache listens to invalidations
		// is kept: warm it up on row 2.
		waitFor(t, "a local hit", waitTimeout, func() bool {
			r.mustRead(t, 0, warm, 2, Local(time.Hour))
			return r.ins[0].p.Stats().LocalHits > 0
		})
		r.recs[0].take()
		tag := uniqueTag(t)
		r.mustRead(t, 0, tag, 1, Local(time.Hour))
		r.mustRead(t, 0, tag, 1, Local(time.Hour))
		evs := r.expect(t, 0, "load local_hit", tag)
		if evs[0].Key != evs[1].Key || evs[1].Load != 0 || evs[1].Wait != 0 {
			t.Errorf("events %+v", evs)
		}
	})

	t.Run("a fallback while Redis is down", func(t *testing.T) {
		addr, stop, restart := startRedis(t)
		r := newObsRig(t, addr, 1, func(c *Config) { c.RedisTimeout = 200 * time.Millisecond })
		tag := uniqueTag(t)
		r.mustRead(t, 0, tag, 1)
		r.expect(t, 0, "load", tag)
		stop()
		t.Cleanup(restart) // before the instance closes: Close is quicker with a Redis
		r.mustRead(t, 0, tag, 1)
		fb := r.expect(t, 0, "fallback", tag)[0]
		if fb.Load <= 0 || fb.Err != nil {
			t.Errorf("fallback event %+v", fb)
		}
		if n := calls(t, r.ins[0].db, tag); n != 2 {
			t.Errorf("PostgreSQL ran the query %d times, want 2", n)
		}
		if f := r.ins[0].p.Stats().Fallbacks; f != 1 {
			t.Errorf("Stats().Fallbacks = %d, want 1", f)
		}
	})

	t.Run("bypasses", func(t *testing.T) {
		testObserverBypass(t)
	})

	t.Run("errors", func(t *testing.T) {
		testObserverErrors(t)
	})
}

// Two callers of one instance: the first one's flight is held before its
// query until the second has joined it.
func testObserverShared(t *testing.T) {
	r := newObsRig(t, "", 1, nil)
	tag := uniqueTag(t)
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r.ins[0].p.engine.SetSeam(func(point, _ string) {
		if point == engine.SeamStamped {
			once.Do(func() {
				close(held)
				<-release
			})
		}
	})
	errs := make(chan error, 2)
	go func() { errs <- r.read(t, 0, tag, 1) }()
	<-held
	go func() { errs <- r.read(t, 0, tag, 1) }()
	waitFor(t, "the second caller to join the flight", waitTimeout, func() bool { return testdb.JoinedFlights() == 1 })
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	evs := r.recs[0].take()
	slices.SortFunc(evs, func(a, b observe.Event) int { return int(a.Outcome) - int(b.Outcome) })
	if got := outcomes(evs); got != "shared load" {
		t.Fatalf("observed [%s], want [shared load] in any order", got)
	}
	for _, ev := range evs {
		checkEvent(t, ev, tag)
	}
	if shared := evs[0]; shared.Wait <= 0 || shared.Load != 0 || shared.Key != evs[1].Key {
		t.Errorf("shared event %+v", shared)
	}
	if s := r.ins[0].p.Stats(); s.Shared != 1 || s.Loads != 1 {
		t.Errorf("Stats() %+v, want 1 shared and 1 load", s)
	}
	if n := calls(t, r.ins[0].db, tag); n != 1 {
		t.Errorf("PostgreSQL ran the query %d times, want 1", n)
	}
}

// A read inside a transaction, and a statement that writes, ask for the
// cache and run uncached: bypasses, without a key.
func testObserverBypass(t *testing.T) {
	r := newObsRig(t, "", 1, nil)
	tag := uniqueTag(t)
	err := r.ins[0].db.Transaction(func(tx *gorm.DB) error {
		var v string
		return tx.Scopes(Cache(time.Minute)).Raw("SELECT v FROM "+r.table+" WHERE id = ? AND v <> ?", 1, tag).Scan(&v).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	var v string
	err = r.ins[0].db.Scopes(Cache(time.Minute)).
		Raw("UPDATE "+r.table+" SET v = v WHERE id = ? AND v <> ? RETURNING v", 1, tag).Scan(&v).Error
	if err != nil || v != "one" {
		t.Fatalf("UPDATE ... RETURNING: %q, %v", v, err)
	}
	for _, ev := range r.expect(t, 0, "bypass bypass", tag) {
		if ev.Key != "" || !slices.Equal(ev.Tables, []string{r.table}) || ev.Err != nil {
			t.Errorf("bypass event %+v, want no key and Tables [%s]", ev, r.table)
		}
	}
	if b := r.ins[0].p.Stats().Bypassed; b != 2 {
		t.Errorf("Stats().Bypassed = %d, want 2", b)
	}
}

// A failing query is a load with its error, each time (errors are never
// cached); a caller that gives up while its flight runs the query is a
// load with its context's error.
func testObserverErrors(t *testing.T) {
	r := newObsRig(t, "", 1, nil)
	tag := uniqueTag(t)
	adminExec(t, r.ins[0].db, "INSERT INTO gft_fail VALUES (?)", tag)
	t.Cleanup(func() { adminExec(t, r.ins[0].db, "DELETE FROM gft_fail WHERE tag = ?", tag) })
	for range 2 {
		var n int
		if err := r.ins[0].db.Scopes(Cache(time.Minute)).Raw("SELECT gft_maybe_fail(?)", tag).Scan(&n).Error; err == nil {
			t.Fatal("a failing query succeeded")
		}
	}
	for _, ev := range r.expect(t, 0, "load load", tag) {
		if ev.Err == nil || ev.Load <= 0 {
			t.Errorf("failed load event %+v", ev)
		}
	}

	gated := uniqueTag(t)
	gate := behHoldGate(t, r.ins[0].db)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 1)
	go func() { _, err := behGatedQuery(ctx, r.ins[0], gated, "k", gate); errs <- err }()
	waitFor(t, "the query to run", waitTimeout, func() bool { return gate.waiting(t) == 1 })
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled caller got %v, want context.Canceled", err)
	}
	ev := r.expect(t, 0, "load", gated)[0]
	if !errors.Is(ev.Err, context.Canceled) {
		t.Errorf("the cancelled caller's event has Err %v, want context.Canceled", ev.Err)
	}
	gate.release()
}
