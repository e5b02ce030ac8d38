package engine

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// switchingClient returns a client that dials whichever address *to holds,
// as a Sentinel failover client dials the current master.
func switchingClient(t *testing.T, to *atomic.Value) *redis.Client {
	// Addr is what go-redis gives its failover clients, which the engine
	// watches for a new server (moved.go).
	rdb := redis.NewClient(&redis.Options{Addr: failoverAddr, ContextTimeoutEnabled: true, MaxRetries: -1,
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, to.Load().(string))
		}})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// failOver does what a Sentinel failover client does when it learns of a
// new master: its pool's connections to the old one are closed (here by
// the old master, CLIENT KILL of every normal client), and new ones go to
// the new master. Its pub/sub connections stay where they are.
func failOver(t *testing.T, primary *atomic.Value, from, to string) {
	t.Helper()
	primary.Store(to)
	old := redis.NewClient(&redis.Options{Addr: from})
	defer old.Close()
	if err := old.Do(context.Background(), "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
}

// A replica promoted while its master is alive (SENTINEL FAILOVER, a
// partition): the old master has no replica left and takes writes until
// its clients switch, and those writes are lost when it is demoted. A bump
// it takes must not end the write: WaitReplicas expects the replica the
// master was seen with, and the write tries again until its bump lands on
// the new master. Before, a master with no replica connected counted as
// fully acknowledged: the write returned with its bump on the old master
// only, and an instance reading the new master served the old entry.
func TestBumpOnDeposedMaster(t *testing.T) {
	// alive: the old master still takes writes, unacknowledged. demoted:
	// it is a replica of the new one already, and answers READONLY; the
	// breaker (at its default) must not count those answers as failures
	// and cut the write's retries short.
	for _, demoted := range []bool{false, true} {
		t.Run(map[bool]string{false: "alive", true: "demoted"}[demoted], func(t *testing.T) {
			bumpOnDeposedMaster(t, demoted)
		})
	}
}

func bumpOnDeposedMaster(t *testing.T, demoted bool) {
	master, _ := startRedisServer(t, "--repl-diskless-sync-delay", "0")
	replica, _ := startRedisServer(t, "--replicaof", "127.0.0.1", strings.Split(master, ":")[1])
	ctx := context.Background()
	direct := replicaClient(t, replica)
	old := redis.NewClient(&redis.Options{Addr: master})
	defer old.Close()
	var primary atomic.Value
	primary.Store(master)
	mk := func() *Engine {
		return engineOn(t, switchingClient(t, &primary), func(c *Config) {
			c.WaitReplicas = 1
			c.RedisTimeout = time.Second
			c.LockExpiry = time.Minute // the write may wait this long for its bump
		})
	}
	writer, reader := mk(), mk()
	loads := cachedOnReplica(t, writer, reader, direct)

	if err := direct.SlaveOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	// refused reports that the old master turned the write's bump down:
	// unacknowledged (the writer counts the error), or READONLY.
	refused := func() func() bool {
		errs := writer.stats.RedisErrors.Load()
		return func() bool { return writer.stats.RedisErrors.Load() > errs }
	}()
	if demoted {
		if err := old.SlaveOf(ctx, "127.0.0.1", strings.Split(replica, ":")[1]).Err(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the old master's demotion", 10*time.Second, func() bool {
			info, _ := old.Info(ctx, "replication").Result()
			return strings.Contains(info, "role:slave")
		})
		// More refusals than BreakerFailures (5): as many as a client
		// that takes a while to switch meets.
		refused = func() bool {
			info, _ := old.Info(ctx, "errorstats").Result()
			_, count, _ := strings.Cut(info, "errorstat_READONLY:count=")
			n, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(count, "\r", 2)[0]))
			return n > 2*writer.cfg.BreakerFailures
		}
	}
	returned := make(chan error, 1)
	go func() {
		returned <- writer.Invalidate(ctx, []string{"t"}, writer.Announce(ctx, []string{"t"}, false))
	}()
	// The old master turns the bump down, and that must keep the write
	// from returning.
	var early error
	ended := false
	waitFor(t, "the write to return or its bump to be refused", 10*time.Second, func() bool {
		select {
		case early = <-returned:
			ended = true
			return true
		default:
			return refused()
		}
	})
	if ended {
		t.Fatalf("the write returned (%v) with its bump on the old master only", early)
	}
	select {
	case err := <-returned:
		t.Fatalf("the write returned (%v) with its bump on the old master only", err)
	default:
	}
	failOver(t, &primary, master, replica)
	if err := <-returned; err != nil {
		t.Fatalf("Invalidate after the failover: %v", err)
	}
	if v := do(t, reader, testRequest("k", "new", loads)); v != "new" {
		t.Errorf("read %q after the write returned, want new", v)
	}
}

// After a failover the hub subscribes again on the new master: go-redis
// moves the pool's connections and leaves the pub/sub ones on the old
// master, where the new master's messages never arrive.
func TestHubFollowsNewMaster(t *testing.T) {
	a, _ := startRedisServer(t)
	b, _ := startRedisServer(t)
	var primary atomic.Value
	primary.Store(a)
	rdb := switchingClient(t, &primary)
	e := engineOn(t, rdb)
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil { // a pool connection to a
		t.Fatal(err)
	}
	ready := newKeys(e.cfg.Prefix, "k").ready
	w := e.hub.wait(ready)
	defer w.stop()
	<-w.wake // subscribed on a
	failOver(t, &primary, a, b)
	if err := rdb.Ping(ctx).Err(); err != nil { // a pool connection to b
		t.Fatal(err)
	}
	onB := redis.NewClient(&redis.Options{Addr: b})
	defer onB.Close()
	waitFor(t, "the hub's subscription on the new master", 10*time.Second, func() bool {
		n, err := onB.PubSubNumSub(ctx, ready).Result()
		return err == nil && n[ready] == 1
	})
	for len(w.wake) > 0 { // the confirmation
		<-w.wake
	}
	if err := onB.Publish(ctx, ready, "x").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.wake:
	case <-time.After(10 * time.Second):
		t.Fatal("a message published on the new master did not reach the waiter")
	}
}

// A master that lost the replicas it was seen with is expected to have
// them for replicaGrace, under its replication ID; then the loss counts as
// real. A promoted replica has a new ID and is expected to have what it has.
func TestReplicaWatchExpected(t *testing.T) {
	info := func(id string, replicas int) string {
		s := "# Replication\r\nrole:master\r\nconnected_slaves:" + strconv.Itoa(replicas) + "\r\n"
		for i := range replicas {
			s += fmt.Sprintf("slave%d:ip=127.0.0.1,port=%d,state=online,offset=10,lag=0\r\n", i, 7000+i)
		}
		return s + "master_replid:" + id + "\r\nmaster_repl_offset:10\r\n"
	}
	var w replicaWatch
	t0 := time.Unix(1000, 0)
	steps := []struct {
		info string
		at   time.Duration
		want int64
	}{
		{info("m", 1), 0, 1},
		{info("m", 0), time.Second, 1},                    // lost: still expected
		{info("m", 0), replicaGrace, 1},                   // within the grace
		{info("m", 0), time.Second + replicaGrace + 1, 0}, // past it: taken as real
		{info("m", 2), 20 * time.Second, 2},
		{info("r", 0), 20 * time.Second, 0}, // a promoted replica: a new ID
		{"# Replication\r\nrole:slave\r\n", 0, 1 << 62},
		{"", 0, 1 << 62},
	}
	for i, s := range steps {
		if got := w.expected(s.info, t0.Add(s.at)); got != s.want {
			t.Errorf("step %d (%q at %v): expected %d replicas, want %d", i, s.info, s.at, got, s.want)
		}
	}
}

// The near cache's listener, whose connection was closed by something
// other than Close (a moved racing with its own resubscription closes the
// new connection), subscribes again rather than retrying the closed one
// for ever.
func TestLocalListenerReopensClosedConnection(t *testing.T) {
	r := newLocalRig(t)
	r.warm(t, time.Hour)
	l := r.b.local
	l.mu.Lock()
	ps := l.ps
	l.mu.Unlock()
	_ = ps.Close()
	waitFor(t, "the listener on a new connection", 10*time.Second, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.ps != ps && l.subscribed()
	})
}

// Only go-redis's failover clients are watched for a new server: a client
// of one name that resolves to several hosts dials different peers with
// no failover, and must not make the hub subscribe again at every dial.
func TestOnlyFailoverClientsAreWatched(t *testing.T) {
	plain := engineOn(t, redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}))
	if _, ok := watches.Load(plain.rdb); ok {
		t.Error("a plain client has the dial hook")
	}
	var to atomic.Value
	to.Store("127.0.0.1:1")
	failover := engineOn(t, switchingClient(t, &to))
	if _, ok := watches.Load(failover.rdb); !ok {
		t.Error("a failover client has no dial hook")
	}
}

// A replica that is still being synchronized is listed by INFO, and
// counted by connected_slaves, but cannot acknowledge anything: only the
// online ones count.
func TestParseReplicationCountsOnlineReplicas(t *testing.T) {
	info := "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n" +
		"slave0:ip=127.0.0.1,port=7001,state=online,offset=10,lag=0\r\n" +
		"slave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\n" +
		"master_failover_state:no-failover\r\nmaster_replid:abc\r\n"
	role, id, online := parseReplication(info)
	if role != "master" || id != "abc" || online != 1 {
		t.Errorf("parseReplication: role %q, id %q, %d online; want master, abc, 1", role, id, online)
	}
	if _, _, online := parseReplication("# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_replid:abc\r\n"); online != 0 {
		t.Errorf("no replica: %d online, want 0", online)
	}
}

// replyErr is an error reply of Redis, as go-redis returns one (redis.Error).
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

// An engine's Close takes its failover client out of watches once no
// engine uses it: nothing keeps a closed client.
func TestWatchesForgetClosedClients(t *testing.T) {
	var to atomic.Value
	addr, _ := startRedisServer(t)
	to.Store(addr)
	rdb := switchingClient(t, &to)
	for range 3 {
		e := engineOn(t, rdb)
		if _, ok := watches.Load(rdb); !ok {
			t.Fatal("an open engine's failover client is not watched")
		}
		if _, err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if _, ok := watches.Load(rdb); ok {
			t.Fatal("the client is still watched after its only engine closed")
		}
	}
}

// killedMaster is a Redis master with a replica, for a failover by hand:
// kill the master, then promote the replica, which the engines' clients
// then dial.
type killedMaster struct {
	master, replica string
	direct          *redis.Client // the replica's
	primary         atomic.Value  // the address the engines' clients dial
	kill            func()
}

func startKilledMaster(t *testing.T) *killedMaster {
	m := new(killedMaster)
	m.master, m.kill = startRedisServer(t, "--repl-diskless-sync-delay", "0")
	m.replica, _ = startRedisServer(t, "--replicaof", "127.0.0.1", strings.Split(m.master, ":")[1])
	m.direct = replicaClient(t, m.replica)
	m.primary.Store(m.master)
	return m
}

// engine returns an engine with WaitReplicas that waits a minute for a
// failover. It does not log: a write it is making may outlive a test that
// failed.
func (m *killedMaster) engine(t *testing.T) *Engine {
	return engineOn(t, switchingClient(t, &m.primary), func(c *Config) {
		c.WaitReplicas = 1
		c.RedisTimeout = time.Second
		c.FailoverWait = time.Minute
		c.Log = nil
	})
}

// stalled waits until e has failed three Redis operations while done
// stays empty, and fails the test if done receives first: what it waits
// for returned while no master answered.
func stalled[T any](t *testing.T, e *Engine, what string, done <-chan T) {
	t.Helper()
	waitFor(t, what+" to return or fail three times", 10*time.Second, func() bool {
		return len(done) > 0 || e.stats.RedisErrors.Load() >= 3
	})
	if len(done) > 0 {
		t.Fatalf("%s returned %v while no master answered", what, <-done)
	}
}

func (m *killedMaster) promote(t *testing.T) {
	t.Helper()
	if err := m.direct.SlaveOf(context.Background(), "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	m.primary.Store(m.replica)
}

// A master killed before its replica is promoted: a write's announcement
// fails while no master answers. It must wait for the promoted replica,
// since the write commits once it returns: readers falling back to the
// database meanwhile see the write's rows, and the promoted replica holds
// the entry from before it with a generation that still matches. Before,
// the announcement gave up after one more try, and an instance reading
// the promoted replica between the commit and the bump served the old
// entry: reads went back in time.
func TestAnnounceAwaitsPromotion(t *testing.T) {
	m := startKilledMaster(t)
	ctx := context.Background()
	writer := m.engine(t)
	loads := cachedOnReplica(t, writer, m.engine(t), m.direct)

	m.kill()
	announced := make(chan Announcement, 1)
	go func() { announced <- writer.Announce(ctx, []string{"t"}, false) }()
	stalled(t, writer, "the announcement", announced)
	m.promote(t)
	a := <-announced

	// The write commits: the database has "new" now. An instance that
	// reads the promoted replica must not serve the entry from before it.
	read := doAsync(m.engine(t), testRequest("k", "new", loads))
	if err := writer.Invalidate(ctx, []string{"t"}, a); err != nil {
		t.Fatalf("Invalidate after the promotion: %v", err)
	}
	if v := <-read; v != "new" {
		t.Errorf("read %q from the promoted replica after the write committed, want new", v)
	}
}

// A flight that finds no master waits for the promoted replica instead of
// reading the database: one load per instance on every failover is the
// herd the flight exists to prevent. Before, it fell back to the database
// at once. The promoted replica has not had the prefix recovered (it may
// lack the last bumps: restart.go), so the entry there is stale, and the
// flight loads it once, under the lock.
func TestLookupAwaitsPromotion(t *testing.T) {
	m := startKilledMaster(t)
	reader := m.engine(t)
	loads := cachedOnReplica(t, m.engine(t), reader, m.direct)
	before, recovered := loads.Load(), reader.stats.Recoveries.Load()

	m.kill()
	read := doAsync(reader, testRequest("k", "new", loads))
	stalled(t, reader, "the read", read)
	m.promote(t)
	if v := <-read; v != "new" {
		t.Errorf("read %q after the promotion, want a load, new", v)
	}
	if n := loads.Load() - before; n != 1 {
		t.Errorf("%d loads during the failover, want 1, under the lock", n)
	}
	if n := reader.stats.Fallbacks.Load(); n != 0 {
		t.Errorf("%d fallbacks, want 0", n)
	}
	if n := reader.stats.Recoveries.Load() - recovered; n != 1 {
		t.Errorf("%d recoveries of the promoted replica, want 1", n)
	}
}

// A loader whose store fails while Redis may be failing over tells its
// waiters to look again ("failed"), so that they wait for the new master
// and one of them loads under the lock; "query yourselves" would send
// every waiter to the database. Without WaitReplicas a failed store still
// says "query yourselves": nothing is waited for; and so does a result
// that could not be stored anyway (over MaxEntrySize).
func TestFailedStoreWhileFailingOver(t *testing.T) {
	for _, tc := range []struct {
		wait, maxSize int
		want          string
	}{{0, 0, readyUncached}, {1, 0, readyFailed}, {1, 1, readyUncached}} {
		addr, kill := startRedisServer(t)
		rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		t.Cleanup(func() { _ = rdb.Close() })
		e := engineOn(t, rdb, func(c *Config) { c.WaitReplicas, c.MaxEntrySize = tc.wait, tc.maxSize })
		kill()
		var loads atomic.Int64
		ent, err := testRequest("k", "x", &loads).Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		req := request{keys: newKeys(e.cfg.Prefix, "k"), tables: []string{"t"}, ttl: time.Minute}
		payload, sent := e.store(context.Background(), req, "0", time.Millisecond, ent)
		if payload != tc.want || sent {
			t.Errorf("WaitReplicas %d, MaxEntrySize %d: a store on a dead Redis says %q, sent %v; want %q, not sent",
				tc.wait, tc.maxSize, payload, sent, tc.want)
		}
	}
}

// A flight whose look missed and whose lock try then finds no master waits
// for the promoted replica and loads the key under the lock there, instead
// of reading the database uncached. Before, the failed lock try sent it
// to the database.
func TestLockTryAwaitsPromotion(t *testing.T) {
	m := startKilledMaster(t)
	e := m.engine(t)
	var once sync.Once
	e.SetSeam(func(point, _ string) {
		if point == SeamMissed {
			once.Do(m.kill) // between the look and the lock try
		}
	})
	var loads atomic.Int64
	read := doAsync(e, testRequest("k", "x", &loads))
	stalled(t, e, "the read", read)
	m.promote(t)
	if v := <-read; v != "x" {
		t.Fatalf("read %q, want x", v)
	}
	if n, f := loads.Load(), e.stats.Fallbacks.Load(); n != 1 || f != 0 {
		t.Errorf("%d loads, %d of them fallbacks; want 1 load under the lock, no fallback", n, f)
	}
	// The fill stores before the flight returns.
	if n := m.direct.Exists(context.Background(), newKeys(e.cfg.Prefix, "k").entry).Val(); n != 1 {
		t.Error("the entry was not stored on the promoted replica")
	}
}
