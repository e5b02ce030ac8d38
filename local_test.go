package gormflight

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// localRig is two instances, A and B, sharing a prefix and a table of their
// own, gft_local_<hex>, whose row 1 the tests read with Local and write.
type localRig struct {
	a, b  *instance
	table string
}

// newLocalRig makes the rig; B's Redis client is bRedis when not nil.
func newLocalRig(t *testing.T, bRedis *redis.Client) *localRig {
	t.Helper()
	prefix := testPrefix(t)
	r := &localRig{table: "gft_local_" + randHex(6)}
	r.a = newInstance(t, testConfig(openRedis(t, ""), prefix))
	if bRedis == nil {
		bRedis = openRedis(t, "")
	}
	r.b = newInstance(t, testConfig(bRedis, prefix))
	adminExec(t, r.a.db, "CREATE TABLE "+r.table+" (id int PRIMARY KEY, v text NOT NULL)")
	dropAtEnd(t, r.a.db, "DROP TABLE IF EXISTS "+r.table)
	adminExec(t, r.a.db, "INSERT INTO "+r.table+" VALUES (1, 'v0')")
	return r
}

func (r *localRig) read(t testing.TB, in *instance, maxStale time.Duration) string {
	t.Helper()
	var v string
	err := in.db.Scopes(Cache(time.Hour, Local(maxStale))).Raw("SELECT v FROM " + r.table + " WHERE id = 1").Scan(&v).Error
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (r *localRig) write(t testing.TB, in *instance, v string) {
	t.Helper()
	if err := in.db.Exec("UPDATE "+r.table+" SET v = ? WHERE id = 1", v).Error; err != nil {
		t.Fatal(err)
	}
}

// warm reads until in answers from its near cache: the first Local query
// starts its subscription, and only reads after it is live are kept.
func (r *localRig) warm(t *testing.T, in *instance, maxStale time.Duration, want string) {
	t.Helper()
	before := in.p.Stats().LocalHits
	waitFor(t, "a local hit", 10*time.Second, func() bool {
		if v := r.read(t, in, maxStale); v != want {
			t.Fatalf("warming up: %q, want %q", v, want)
		}
		return in.p.Stats().LocalHits > before
	})
}

// An instance reads its own writes: each write ends the local entry before
// it returns, and the next read is new.
func TestLocalReadsOwnWrites(t *testing.T) {
	r := newLocalRig(t, nil)
	r.warm(t, r.a, time.Hour, "v0")
	for i := 1; i <= 20; i++ {
		want := fmt.Sprintf("v%d", i)
		r.write(t, r.a, want)
		for range 2 {
			if v := r.read(t, r.a, time.Hour); v != want {
				t.Fatalf("after its own write of %s, A read %q", want, v)
			}
		}
	}
	s := r.a.p.Stats()
	if s.LocalHits < 20 || s.LocalInvalidations < 20 {
		t.Errorf("local hits %d, local invalidations %d: want at least 20 of each (one per write)", s.LocalHits, s.LocalInvalidations)
	}
}

// Another instance's write reaches B's near cache through the bump's
// message: B reads it long before maxStale (an hour here). The delays are
// logged: until the read that found the local entry ended started, and
// until that read, which loads the new rows, returned.
func TestLocalPushedInvalidation(t *testing.T) {
	r := newLocalRig(t, nil)
	r.warm(t, r.b, time.Hour, "v0")
	var ended, read []time.Duration
	for i := 1; i <= 20; i++ {
		old, want := fmt.Sprintf("v%d", i-1), fmt.Sprintf("v%d", i)
		r.warm(t, r.b, time.Hour, old)
		r.write(t, r.a, want)
		written := time.Now()
		for v := old; v != want; { // no pause between reads: they time the message
			if time.Since(written) > 10*time.Second {
				t.Fatalf("B still reads %s 10s after A's write of %s", v, want)
			}
			start := time.Now()
			switch v = r.read(t, r.b, time.Hour); v {
			case want:
				ended = append(ended, start.Sub(written))
				read = append(read, time.Since(written))
			case old:
			default:
				t.Fatalf("B read %q, want %s or %s", v, old, want)
			}
		}
	}
	slices.Sort(ended)
	slices.Sort(read)
	t.Logf("over %d writes of A, B's local entry ended %v after the write returned (median; %v at most), and B read the new rows after %v (median; %v at most)",
		len(read), ended[len(ended)/2], ended[len(ended)-1], read[len(read)/2], read[len(read)-1])
}

// With B's subscription silent (a connection that drops every byte, as a
// dead network does), B misses A's write for at most maxStale: no read of
// B that starts later than maxStale after the write returned is old.
func TestLocalSilentSubscription(t *testing.T) {
	proxy := chaosStartProxy(t, testRedisAddr())
	r := newLocalRig(t, openRedis(t, proxy.addr()))
	const maxStale = 300 * time.Millisecond
	r.warm(t, r.b, maxStale, "v0")
	proxy.silenceSubscribers()
	r.write(t, r.a, "v1")
	written := time.Now()
	var oldReads int
	waitFor(t, "B to read A's write", 10*time.Second, func() bool {
		start := time.Now()
		v := r.read(t, r.b, maxStale)
		if v == "v0" && start.Sub(written) > maxStale {
			t.Fatalf("B read the old value %v after the write returned, beyond maxStale %v", start.Sub(written), maxStale)
		}
		oldReads += map[bool]int{true: 1}[v == "v0"]
		return v == "v1"
	})
	t.Logf("with its subscription silent, B read A's write %v after it returned (maxStale %v), after %d old reads", time.Since(written), maxStale, oldReads)
}

// When B's subscription connection is killed, B serves nothing it held
// before: it may have missed messages until it subscribed again.
func TestLocalKilledSubscription(t *testing.T) {
	name := "gft-local-" + randHex(6)
	rdb := redis.NewClient(&redis.Options{Addr: testRedisAddr(), PoolSize: 64, ContextTimeoutEnabled: true, ClientName: name})
	t.Cleanup(func() { _ = rdb.Close() })
	r := newLocalRig(t, rdb)
	r.warm(t, r.b, time.Hour, "v0")
	before := r.b.p.Stats()
	killSubscriptions(t, rdb, name)
	waitFor(t, "B to subscribe again", 10*time.Second, func() bool { return r.b.p.Stats().LocalResubscribes == 1 })
	if v := r.read(t, r.b, time.Hour); v != "v0" {
		t.Fatalf("after resubscribing: %q, want v0", v)
	}
	after := r.b.p.Stats()
	if after.LocalHits != before.LocalHits || after.Hits != before.Hits+1 {
		t.Errorf("the first read after the loss: local hits +%d, Redis hits +%d; want 0 and 1", after.LocalHits-before.LocalHits, after.Hits-before.Hits)
	}
	r.warm(t, r.b, time.Hour, "v0")
}

// killSubscriptions kills the pub/sub connections of the clients named
// name on the shared Redis: connections of this test only.
func killSubscriptions(t *testing.T, rdb *redis.Client, name string) {
	t.Helper()
	ctx := context.Background()
	list, err := rdb.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for line := range strings.Lines(list) {
		fields := map[string]string{}
		for f := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(f, "=")
			fields[k] = v
		}
		if fields["name"] != name || fields["psub"] == "0" {
			continue
		}
		id, err := strconv.ParseInt(fields["id"], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if err := rdb.ClientKillByFilter(ctx, "ID", strconv.FormatInt(id, 10)).Err(); err != nil {
			t.Fatal(err)
		}
		killed++
	}
	if killed != 1 {
		t.Fatalf("killed %d subscriptions named %s, want 1", killed, name)
	}
}
