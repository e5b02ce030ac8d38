package engine

import (
	"bytes"
	"context"
	"database/sql/driver"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/redis/go-redis/v9"
)

// localRig is two engines with near caches over one miniredis, and a key
// over table "t" whose n-th load returns "v<n>". b's near cache runs on a
// clock the test moves.
type localRig struct {
	a, b  *Engine
	srv   *miniredis.Miniredis
	trips *tripLog // b's Redis commands
	clock *fakeClock
	n     atomic.Int64
}

func newLocalRig(t *testing.T) *localRig {
	r := &localRig{trips: new(tripLog), clock: &fakeClock{t: time.Unix(1_800_000_000, 0)}}
	withLocal := func(c *Config) { c.LocalSize = 1 << 20 }
	r.a, r.srv = newTestEngine(t, withLocal)
	r.b = newHookedEngine(t, r.srv, r.trips, withLocal)
	r.b.local.now = r.clock.now
	return r
}

func (r *localRig) request(maxStale time.Duration) Request {
	return Request{Hash: "k", Tables: []string{"*", "t"}, TTL: time.Minute, Local: maxStale,
		Load: func(context.Context) (*rowcodec.Entry, error) {
			return rowcodec.NewEntry([]string{"v"}, [][]driver.Value{{fmt.Sprintf("v%d", r.n.Add(1))}})
		}}
}

// warm makes b hold the key in its near cache: its first Local request
// starts its subscription, and reads after it is live are kept.
func (r *localRig) warm(t *testing.T, maxStale time.Duration) string {
	t.Helper()
	do(t, r.b, r.request(maxStale))
	waitFor(t, "b's subscription", 10*time.Second, r.b.local.subscribed)
	v := do(t, r.b, r.request(maxStale))
	hits := r.b.stats.LocalHits.Load()
	if got := do(t, r.b, r.request(maxStale)); got != v || r.b.stats.LocalHits.Load() != hits+1 {
		t.Fatalf("after warming: %q (local hits %d -> %d), want a local hit of %q", got, hits, r.b.stats.LocalHits.Load(), v)
	}
	return v
}

// A local hit costs no Redis command; a query without Local never takes
// one.
func TestLocalHit(t *testing.T) {
	r := newLocalRig(t)
	r.warm(t, time.Hour)
	r.trips.reset()
	for range 5 {
		if v := do(t, r.b, r.request(time.Hour)); v != "v1" {
			t.Fatalf("local hit: %q, want v1", v)
		}
	}
	if trips := r.trips.snapshot(); len(trips) != 0 {
		t.Errorf("local hits sent %d round trips to Redis, want 0: %v", len(trips), trips)
	}
	if n := r.n.Load(); n != 1 {
		t.Errorf("%d loads, want 1", n)
	}
	hits := r.b.stats.LocalHits.Load()
	do(t, r.b, r.request(0))
	if r.b.stats.LocalHits.Load() != hits || len(r.trips.snapshot()) == 0 {
		t.Errorf("a query without Local was answered from the near cache")
	}
}

// A write through an instance ends its local entries before the write
// returns: the next read is new, at once, however late the bump's message.
func TestLocalReadsOwnWrites(t *testing.T) {
	r := newLocalRig(t)
	r.warm(t, time.Hour)
	r.b.local.prefix = "(none)" // b's listener now ignores every bump's message
	if err := r.b.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	if v := do(t, r.b, r.request(time.Hour)); v != "v2" {
		t.Errorf("after b's own write: %q, want the new load's v2", v)
	}
	if n := r.b.stats.LocalInvalidations.Load(); n != 1 {
		t.Errorf("LocalInvalidations = %d, want 1", n)
	}
}

// Another instance's write reaches the near cache through the bump's
// message, long before maxStale.
func TestLocalPushedInvalidation(t *testing.T) {
	r := newLocalRig(t)
	r.warm(t, time.Hour)
	if err := r.a.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to read a's write", 10*time.Second, func() bool { return do(t, r.b, r.request(time.Hour)) == "v2" })
	if n := r.n.Load(); n != 2 {
		t.Errorf("%d loads, want 2", n)
	}
}

// A write whose message never arrives (here the generation moves without
// one) is missed for at most maxStale: after it, the read goes to Redis.
func TestLocalMaxStale(t *testing.T) {
	r := newLocalRig(t)
	const maxStale = 10 * time.Second
	r.warm(t, maxStale)
	gen := r.a.GenKey("t")
	old, err := r.srv.Get(gen)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Set(gen, old+"1"); err != nil { // larger, silently
		t.Fatal(err)
	}
	r.clock.add(maxStale)
	if v := do(t, r.b, r.request(maxStale)); v != "v1" {
		t.Fatalf("within maxStale: %q, want the local v1", v)
	}
	r.clock.add(time.Nanosecond)
	if v := do(t, r.b, r.request(maxStale)); v != "v2" {
		t.Errorf("past maxStale: %q, want v2, loaded for the new generation", v)
	}
}

// While its subscription is lost, an instance serves no local hit, and what
// it held before is not served after it has subscribed again: messages
// may have been lost in between.
func TestLocalLostSubscription(t *testing.T) {
	r := newLocalRig(t)
	r.warm(t, time.Hour)
	hits := r.b.stats.LocalHits.Load()
	r.srv.Close() // every connection drops
	waitFor(t, "b to notice", 10*time.Second, func() bool { return !r.b.local.subscribed() })
	if v := do(t, r.b, r.request(time.Hour)); v != "v2" {
		t.Errorf("Redis down: %q, want v2 from the database", v)
	}
	if err := r.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to subscribe again", 10*time.Second, r.b.local.subscribed)
	if v := do(t, r.b, r.request(time.Hour)); v != "v1" {
		t.Errorf("after resubscribing: %q, want v1 from Redis", v)
	}
	if n := r.b.stats.LocalHits.Load(); n != hits {
		t.Errorf("%d local hits since the loss, want 0", n-hits)
	}
	if n := r.b.stats.LocalResubscribes.Load(); n != 1 {
		t.Errorf("LocalResubscribes = %d, want 1", n)
	}
	if v := do(t, r.b, r.request(time.Hour)); v != "v1" || r.b.stats.LocalHits.Load() != hits+1 {
		t.Errorf("then: %q, local hits +%d, want a local hit of v1", v, r.b.stats.LocalHits.Load()-hits)
	}
}

func TestGlobEscape(t *testing.T) {
	for in, want := range map[string]string{"app": "app", `a*b?[c]\d`: `a\*b\?\[c\]\\d`} {
		if got := globEscape(in); got != want {
			t.Errorf("globEscape(%q) = %q, want %q", in, got, want)
		}
	}
}

// An entry kept in Redis past its TTL for StaleFor is kept in the near
// cache only until its TTL ends: past it, a query that accepts no
// staleness loads it again, as it does without Local.
func TestLocalNotPastTTL(t *testing.T) {
	r := newLocalRig(t)
	req := func(staleFor time.Duration) Request {
		return Request{Hash: "k", Tables: []string{"*", "t"}, TTL: time.Minute, StaleFor: staleFor, Local: time.Hour,
			Load: func(context.Context) (*rowcodec.Entry, error) {
				return rowcodec.NewEntry([]string{"v"}, [][]driver.Value{{fmt.Sprintf("v%d", r.n.Add(1))}})
			}}
	}
	do(t, r.b, req(time.Hour)) // fill, stored for TTL + StaleFor
	waitFor(t, "b's subscription", 10*time.Second, r.b.local.subscribed)
	if v := do(t, r.b, req(time.Hour)); v != "v1" { // a Redis hit, kept locally
		t.Fatalf("hit: %q", v)
	}
	// Two minutes on: the entry is past its 1-minute TTL.
	r.srv.FastForward(2 * time.Minute)
	r.clock.add(2 * time.Minute)
	hits := r.b.stats.LocalHits.Load()
	v := do(t, r.b, req(0)) // accepts no staleness
	if r.b.stats.LocalHits.Load() != hits {
		t.Errorf("a query with StaleFor 0 got a local hit of %q 1 minute past the entry's TTL; Redis alone would have loaded it again", v)
	}
	noLocal := req(0)
	noLocal.Local = 0
	if v := do(t, r.b, noLocal); v != "v2" {
		t.Errorf("without Local: %q, want v2 (the entry is past its TTL in Redis)", v)
	}
}

// deafConn wraps a Redis connection; once deaf, the pub/sub connection
// drops every byte it receives and fails every write, as a connection
// whose peer went away does.
type deafConn struct {
	net.Conn
	ps, deaf atomic.Bool
	onPS     func(*deafConn)
}

func (c *deafConn) Write(p []byte) (int, error) {
	if !c.ps.Load() && bytes.Contains(bytes.ToLower(p), []byte("psubscribe")) {
		c.ps.Store(true)
		c.onPS(c)
	}
	if c.deaf.Load() {
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}
	}
	return c.Conn.Write(p)
}

func (c *deafConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err == nil && c.deaf.Load() {
			continue // lost
		}
		return n, err
	}
}

// go-redis replaces a pub/sub connection by itself when a write on it
// fails (here the listener's health Ping, after 1 s of quiet) and
// subscribes again, without an error: the new confirmation still counts
// as a loss, so an entry held from before is not served after it (the
// bump published while the connection was dead never arrived).
func TestLocalSilentReconnect(t *testing.T) {
	withLocal := func(c *Config) { c.LocalSize = 1 << 20 }
	a, srv := newTestEngine(t, withLocal)
	var mu sync.Mutex
	var pss []*deafConn
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			cn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &deafConn{Conn: cn, onPS: func(c *deafConn) { mu.Lock(); pss = append(pss, c); mu.Unlock() }}, nil
		}})
	t.Cleanup(func() { _ = rdb.Close() })
	cfg := testConfig(t, rdb)
	withLocal(&cfg)
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = b.Close() })
	r := &localRig{a: a, b: b, srv: srv, clock: &fakeClock{t: time.Unix(1_800_000_000, 0)}}
	b.local.now = r.clock.now
	r.warm(t, time.Hour)

	mu.Lock()
	first := pss[0]
	mu.Unlock()
	first.deaf.Store(true)
	// A writes; its bump's message reaches b's dead connection only.
	if err := a.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a second pub/sub connection", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(pss) == 2 })
	waitFor(t, "b to subscribe again", 10*time.Second, func() bool { return b.stats.LocalResubscribes.Load() > 0 && b.local.subscribed() })
	if v := do(t, b, r.request(time.Hour)); v != "v2" {
		t.Errorf("after subscribing again b read %q, want v2: a's write returned long ago (LocalResubscribes = %d)", v, b.stats.LocalResubscribes.Load())
	}
}

// Close waits for the listener it started, subscribed or not.
func TestLocalCloseWaitsForListener(t *testing.T) {
	for i := range 200 {
		e, _ := newTestEngine(t, func(c *Config) { c.LocalSize = 1 << 20 })
		e.local.snapshot([]string{"t"}) // the first Local request starts the listener
		if _, err := e.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-e.local.done:
		default:
			t.Fatalf("run %d: Close returned with the near cache's listener still running", i)
		}
	}
}

// The listener keeps versions only of the tables this instance read with
// Local: the bumps of every other table take no memory.
func TestLocalVersionsOnlyForReadTables(t *testing.T) {
	r := newLocalRig(t)
	r.warm(t, time.Hour)
	const n = 2000
	for i := range n {
		if err := r.a.Invalidate(context.Background(), []string{fmt.Sprintf("tmp_%d", i)}, Announcement{}); err != nil {
			t.Fatal(err)
		}
	}
	// Then "t", which b read: messages arrive in order.
	if err := r.a.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to hear of t", 10*time.Second, func() bool { return do(t, r.b, r.request(time.Hour)) == "v2" })
	count := 0
	r.b.local.versions.Range(func(any, any) bool { count++; return true })
	if count > 10 {
		t.Errorf("b keeps %d table versions for tables it never read (it read 1)", count)
	}
}

// A hot key served from the near cache is still refreshed ahead of
// expiry: a local item ends where the refresh window (the last β × Δ of
// the entry's life) begins, so the calls in the window look the key up in
// Redis, and one of them refreshes it, with no caller waiting for a load.
func TestLocalLeavesRefreshWindow(t *testing.T) {
	r := &refreshRig{clock: &fakeClock{t: time.Unix(1_800_000_000, 0)}}
	r.e, r.srv = newTestEngine(t, func(c *Config) { c.RefreshBeta = 1; c.MaxRefreshes = 4; c.LocalSize = 1 << 20 })
	r.e.now = r.clock.now
	local := &fakeClock{t: time.Unix(1_900_000_000, 0)}
	r.e.local.now = local.now
	req := r.request()
	req.Local = time.Hour
	do(t, r.e, req) // loads v1
	waitFor(t, "the subscription", 10*time.Second, r.e.local.subscribed)
	do(t, r.e, req) // a Redis hit, kept locally
	hits := r.e.stats.LocalHits.Load()
	if v := do(t, r.e, req); v != "v1" || r.e.stats.LocalHits.Load() != hits+1 {
		t.Fatalf("%q, local hits +%d: want a local hit of v1", v, r.e.stats.LocalHits.Load()-hits)
	}
	// 100ms before expiry: inside the last Δ (200ms).
	left := r.srv.TTL(newKeys(r.e.cfg.Prefix, "hot").entry)
	r.srv.FastForward(left - 100*time.Millisecond)
	local.add(left - 100*time.Millisecond)
	hits = r.e.stats.LocalHits.Load()
	for i := 0; r.e.stats.RefreshesStarted.Load() == 0; i++ {
		if i == 200 {
			t.Fatalf("200 calls in the refresh window started no refresh (%d local hits)", r.e.stats.LocalHits.Load()-hits)
		}
		// v1 from Redis, or v2 once the refresh, running by then, stored it.
		if v := do(t, r.e, req); v != "v1" && v != "v2" {
			t.Fatalf("call %d: %q, want v1 or v2", i, v)
		}
	}
	if n := r.e.stats.LocalHits.Load() - hits; n != 0 {
		t.Errorf("%d local hits in the refresh window, want none", n)
	}
	if n := r.n.Load(); n > 2 {
		t.Errorf("%d loads, want the first and the refresh", n)
	}
}

// Redis answering the subscription's health-check PING with an error
// (-BUSY while another client's script runs past busy-reply-threshold)
// leaves go-redis's connection subscribed: the near cache goes on serving
// local hits once Redis is free, instead of never again, and a write still
// reaches it.
func TestLocalPingErrorReply(t *testing.T) {
	addr, _ := startRedisServer(t, "--busy-reply-threshold", "100")
	var engines [2]*Engine
	for i := range engines {
		rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = rdb.Close() })
		engines[i] = engineOn(t, rdb, func(c *Config) { c.LocalSize = 1 << 20 })
	}
	r := &localRig{a: engines[0], b: engines[1], clock: &fakeClock{t: time.Unix(1_800_000_000, 0)}}
	r.b.local.now = r.clock.now
	v := r.warm(t, time.Hour)

	// A script that keeps Redis busy for longer than the listener's quiet
	// second plus its ping's wait.
	admin := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { _ = admin.Close() })
	busy := `local s = tonumber(redis.call('TIME')[1]) while tonumber(redis.call('TIME')[1]) - s < 3 do end return 1`
	if err := admin.Eval(context.Background(), busy, nil).Err(); err != nil {
		t.Fatal(err)
	}
	// Two more health checks' time: a ping answered -BUSY turned the near
	// cache off for good.
	waitFor(t, "a local hit after the busy script", 15*time.Second, func() bool {
		hits := r.b.stats.LocalHits.Load()
		return do(t, r.b, r.request(time.Hour)) == v && r.b.local.subscribed() && r.b.stats.LocalHits.Load() > hits
	})
	// A write through a reaches b.
	if err := r.a.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b's local entry to end", 10*time.Second, func() bool { return do(t, r.b, r.request(time.Hour)) != v })
}

// A Redis user whose ACL forbids PING: every health check is answered
// -NOPERM on a subscription that works. The near cache keeps it, and its
// entries, instead of subscribing again (and dropping them) every second.
func TestLocalPingForbidden(t *testing.T) {
	addr, _ := startRedisServer(t)
	admin := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = admin.Close() })
	if err := admin.Do(context.Background(), "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-ping").Err(); err != nil {
		t.Fatal(err)
	}
	var engines [2]*Engine
	for i := range engines {
		rdb := redis.NewClient(&redis.Options{Addr: addr, Username: "app", Password: "pw", ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = rdb.Close() })
		engines[i] = engineOn(t, rdb, func(c *Config) { c.LocalSize = 1 << 20 })
	}
	r := &localRig{a: engines[0], b: engines[1], clock: &fakeClock{t: time.Unix(1_800_000_000, 0)}}
	r.b.local.now = r.clock.now
	v := r.warm(t, time.Hour)
	// The listener pings after each quiet second: wait for two pings.
	pings := func() int64 {
		info, err := admin.Info(context.Background(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		_, rest, ok := strings.Cut(info, "cmdstat_ping:")
		if !ok {
			return 0
		}
		_, rest, _ = strings.Cut(rest, "rejected_calls=")
		n, _ := strconv.ParseInt(strings.TrimRight(strings.SplitN(rest, ",", 2)[0], "\r\n"), 10, 64)
		return n
	}
	before := pings()
	waitFor(t, "two refused health checks", 10*time.Second, func() bool { return pings() >= before+2 })
	if n := r.b.stats.LocalResubscribes.Load(); n != 0 {
		t.Errorf("%d resubscribes, want 0: the subscription worked throughout", n)
	}
	hits := r.b.stats.LocalHits.Load()
	if got := do(t, r.b, r.request(time.Hour)); got != v || r.b.stats.LocalHits.Load() != hits+1 {
		t.Errorf("after refused pings: %q, local hits %d -> %d; want a local hit of %q", got, hits, r.b.stats.LocalHits.Load(), v)
	}
	if err := r.a.Invalidate(context.Background(), []string{"t"}, Announcement{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b's local entry to end", 10*time.Second, func() bool { return do(t, r.b, r.request(time.Hour)) != v })
}
