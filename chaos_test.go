package gormflight

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	"gorm.io/gorm"
)

// Chaos tests: the failures a cluster meets in production, injected for
// real. Processes are killed with SIGKILL, redis-server is killed and
// restarted, pub/sub connections are cut and Redis is black-holed behind a
// proxy. Everything destructive happens to a redis-server the test started
// itself (startRedis): the shared Redis is never killed, flushed or
// reconfigured. Tests coordinate by waiting for conditions, never by
// sleeping; latencies are recorded and only checked against generous bounds.

var chaosSchemaSetup = schemaOnce{lock: schemaLockChaos}

// chaosSchema creates gft_chaos_kv, a small table whose rows the tests can
// check answers against (k -> "value-k"), and gft_chaos_probe, a query that
// counts on the PostgreSQL side how often it ran and how often it ran while
// another execution of the same tag was still running. It counts with
// sequences, which a RAISE does not roll back.
func chaosSchema(t testing.TB, db *gorm.DB) {
	t.Helper()
	err := chaosSchemaSetup.do(db, func(tx *gorm.DB) error {
		return tx.Exec(`
CREATE TABLE IF NOT EXISTS gft_chaos_kv (k int PRIMARY KEY, v text NOT NULL);
INSERT INTO gft_chaos_kv (k, v) SELECT g, 'value-' || g FROM generate_series(0, 15) AS g ON CONFLICT (k) DO NOTHING;
CREATE OR REPLACE FUNCTION gft_chaos_probe(p_tag text, p_execs text, p_overlaps text, p_ms int)
RETURNS int LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	alone boolean;
BEGIN
	PERFORM nextval(p_execs::regclass);
	-- A session-level advisory lock, taken with a try: failing to get it
	-- means another session runs the same tag right now.
	alone := pg_try_advisory_lock(hashtext(p_tag));
	IF NOT alone THEN
		PERFORM nextval(p_overlaps::regclass);
	END IF;
	PERFORM pg_sleep(p_ms / 1000.0);
	-- Released before a RAISE: a session-level lock survives the error.
	IF alone THEN
		PERFORM pg_advisory_unlock(hashtext(p_tag));
	END IF;
	IF EXISTS (SELECT 1 FROM gft_fail WHERE tag = p_tag) THEN
		RAISE EXCEPTION 'gft_chaos_probe: % is failing', p_tag;
	END IF;
	RETURN 1;
END $$;`).Error
	})
	if err != nil {
		unavailable(t, "PostgreSQL chaos schema", err)
	}
}

// chaosProbe is a tagged query whose executions PostgreSQL counts, as they
// start (visible at once, unlike rows of a transaction in progress), and
// whose overlapping executions it counts too: gft_chaos_probe over two
// sequences of the probe's own. It fails while the tag is in gft_fail.
type chaosProbe struct {
	pg                   *gorm.DB
	tag, execs, overlaps string
}

func newChaosProbe(t testing.TB, pg *gorm.DB) *chaosProbe {
	t.Helper()
	chaosSchema(t, pg)
	c := &chaosProbe{pg: pg, tag: uniqueTag(t)}
	for _, seq := range []*string{&c.execs, &c.overlaps} {
		*seq = "gft_chaos_seq_" + randHex(8)
		if err := pg.Exec("CREATE SEQUENCE " + *seq).Error; err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pg.Exec("DROP SEQUENCE IF EXISTS " + *seq).Error })
	}
	return c
}

// query runs the probe through in's cache, taking ms milliseconds on the
// database, and checks its answer.
func (c *chaosProbe) query(ctx context.Context, in *instance, key string, ms int) error {
	var r slowRow
	err := in.db.WithContext(ctx).Scopes(Cache(time.Minute)).
		// The sequences go as text: a regclass cast reads the catalog, and
		// catalog reads are never cached.
		Raw("SELECT gft_chaos_probe(?, ?, ?, ?) AS n, ?::text AS tag, ?::text AS key",
			c.tag, c.execs, c.overlaps, ms, c.tag, key).
		Scan(&r).Error
	if want := (slowRow{N: 1, Tag: c.tag, Key: key}); err == nil && r != want {
		err = fmt.Errorf("got %+v, want %+v", r, want)
	}
	return err
}

// fail makes the probe's query raise until the test ends or recover is
// called.
func (c *chaosProbe) fail(t testing.TB) {
	t.Helper()
	if err := c.pg.Exec("INSERT INTO gft_fail(tag) VALUES (?)", c.tag).Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.recover(t) })
}

func (c *chaosProbe) recover(t testing.TB) {
	t.Helper()
	if err := c.pg.Exec("DELETE FROM gft_fail WHERE tag = ?", c.tag).Error; err != nil {
		t.Error(err)
	}
}

// runs is how many executions have started.
func (c *chaosProbe) runs(t testing.TB) int64 { return c.count(t, c.execs) }

// overlapped is how many executions started while another with the same
// tag was running.
func (c *chaosProbe) overlapped(t testing.TB) int64 { return c.count(t, c.overlaps) }

func (c *chaosProbe) count(t testing.TB, seq string) int64 {
	t.Helper()
	var n int64
	if err := c.pg.Raw("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM " + seq).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// chaosKV is a cached read of gft_chaos_kv.
func chaosKV(ctx context.Context, in *instance, k int) (string, error) {
	var v string
	err := in.db.WithContext(ctx).Scopes(Cache(time.Minute)).
		Raw("SELECT v FROM gft_chaos_kv WHERE k = ?", k).Scan(&v).Error
	return v, err
}

func chaosWant(k int) string { return fmt.Sprintf("value-%d", k) }

// chaosProc is a process of the example server.
type chaosProc struct {
	name   string
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	addr   string // host:port it serves HTTP on
}

var chaosListening = regexp.MustCompile(`listening on (\S+)`)

// chaosStartServer starts the example server binary with args and waits for
// its "listening on ADDR" line. The process is killed when the test ends.
func chaosStartServer(t *testing.T, bin, name string, args ...string) *chaosProc {
	t.Helper()
	p := &chaosProc{name: name, cmd: exec.Command(bin, args...), out: new(syncBuffer), exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	listening := eventually(30*time.Second, func() bool {
		if m := chaosListening.FindStringSubmatch(p.out.String()); m != nil {
			p.addr = m[1]
			return true
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited before listening:\n%s", name, p.out)
		default:
		}
		return false
	})
	if !listening {
		t.Fatalf("%s did not report its address within 30s:\n%s", name, p.out)
	}
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *chaosProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// chaosFetchRow is the example server's /fetch answer.
type chaosFetchRow struct {
	Key        string `json:"key"`
	Digest     string `json:"digest"`
	ComputedAt string `json:"computed_at"`
}

type chaosFetchResult struct {
	proc    int
	err     error
	row     chaosFetchRow
	latency time.Duration
}

func chaosGet(ctx context.Context, client *http.Client, url string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return json.Unmarshal(body, into)
}

// TestChaosKillHolderProcess runs three real processes of the example
// server, stampedes them on one key, SIGKILLs the process whose query
// PostgreSQL is running, and checks that the two survivors answer every
// request correctly after one of them takes the expired lock over.
//
// The example's query records nothing in PostgreSQL, so executions are
// counted as: the killed holder's one (seen running in pg_stat_activity)
// plus the survivors' Loads from /stats; the database ran the query at most
// twice.
func TestChaosKillHolderProcess(t *testing.T) {
	const (
		procs      = 3
		perProc    = 30
		delay      = 3 * time.Second // long enough that the kill lands while the holder queries
		lockExpiry = time.Second
	)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found to build the example server: %v", err)
	}
	redisAddr, _, _ := startRedis(t)
	pg := openDB(t)

	bin := t.TempDir() + "/server"
	build := exec.Command(goBin, "build", "-o", bin, "./examples/server")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the example server: %v\n%s", err, out)
	}

	run := randHex(6)
	prefix := testPrefix(t)
	key := "key-" + run
	sum := md5.Sum([]byte(key))
	wantDigest := hex.EncodeToString(sum[:])
	appPrefix := "gft-chaos-" + run + "-"
	servers := make([]*chaosProc, procs)
	for i := range servers {
		app := fmt.Sprintf("%s%d", appPrefix, i)
		servers[i] = chaosStartServer(t, bin, app,
			"-listen", "127.0.0.1:0",
			"-redis", redisAddr,
			"-prefix", prefix,
			"-delay", delay.String(),
			"-lock-expiry", lockExpiry.String(),
			// Generous, so that a loaded CI machine does not turn slow
			// Redis replies into fallbacks (extra executions).
			"-redis-timeout", "3s",
			"-dsn", dsnWith("application_name="+app))
	}

	// Each survivor request must answer within about lock expiry + query
	// time: its context ends there (generously, for a loaded CI machine), so
	// a request that waits longer fails rather than being timed.
	bound := lockExpiry + 2*delay + 10*time.Second
	tr := &http.Transport{MaxIdleConnsPerHost: perProc}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Timeout: 30 * time.Second, Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	start := make(chan struct{})
	results := make(chan chaosFetchResult, procs*perProc)
	var wg sync.WaitGroup
	for i, s := range servers {
		for range perProc {
			wg.Go(func() {
				<-start
				t0 := time.Now()
				r := chaosFetchResult{proc: i}
				rctx, rcancel := context.WithTimeout(ctx, bound)
				defer rcancel()
				r.err = chaosGet(rctx, client, "http://"+s.addr+"/fetch?key="+key, &r.row)
				r.latency = time.Since(t0)
				results <- r
			})
		}
	}
	stampede := time.Now()
	close(start)

	// The holder is the process whose query PostgreSQL is running.
	var running []string
	waitFor(t, "the holder's query in pg_stat_activity", waitTimeout, func() bool {
		running = nil
		err := pg.Raw(`SELECT application_name FROM pg_stat_activity
WHERE query LIKE '%pg_sleep%' AND application_name LIKE ? AND state = 'active'`, appPrefix+"%").
			Scan(&running).Error
		if err != nil {
			t.Fatal(err)
		}
		return len(running) > 0
	})
	if len(running) != 1 {
		t.Errorf("PostgreSQL ran the query for %d processes at once (%v), want 1", len(running), running)
	}
	holder := slices.IndexFunc(servers, func(s *chaosProc) bool { return s.name == running[0] })
	survivors := slices.Delete(slices.Clone(servers), holder, holder+1)

	// Kill only once both survivors wait for the holder: then the lock
	// they get is one whose holder stopped extending it.
	waitFor(t, "both survivors waiting for the holder", waitTimeout, func() bool {
		for _, s := range survivors {
			var st Stats
			if err := chaosGet(ctx, client, "http://"+s.addr+"/stats", &st); err != nil {
				t.Fatal(err)
			}
			if st.Waits == 0 {
				return false
			}
		}
		return true
	})
	servers[holder].kill()
	killedAt := time.Now()
	wg.Wait()
	close(results)
	done := time.Now()

	var served, failed, holderFailed, holderServed int
	var maxLatency time.Duration
	var computedAt string
	for r := range results {
		if r.proc == holder {
			// Connections to the killed process break: expected.
			if r.err != nil {
				holderFailed++
			} else {
				holderServed++
			}
			continue
		}
		if r.err != nil {
			failed++
			t.Errorf("request to survivor %s failed: %v", servers[r.proc].name, r.err)
			continue
		}
		served++
		maxLatency = max(maxLatency, r.latency)
		if r.row.Key != key || r.row.Digest != wantDigest {
			t.Errorf("survivor %s answered %+v, want key %q digest %s", servers[r.proc].name, r.row, key, wantDigest)
		}
		if computedAt == "" {
			computedAt = r.row.ComputedAt
		} else if r.row.ComputedAt != computedAt {
			t.Errorf("survivors answered different results: computed_at %s and %s", computedAt, r.row.ComputedAt)
		}
	}

	var st Stats
	for _, s := range survivors {
		var one Stats
		if err := chaosGet(ctx, client, "http://"+s.addr+"/stats", &one); err != nil {
			t.Fatal(err)
		}
		t.Logf("survivor %s stats: %+v", s.name, one)
		st.Loads += one.Loads
		st.LockTakeovers += one.LockTakeovers
		st.Fallbacks += one.Fallbacks
		st.Waits += one.Waits
	}
	t.Logf("holder %s killed %v after the stampede began; its requests: %d failed, %d served",
		servers[holder].name, killedAt.Sub(stampede).Round(time.Millisecond), holderFailed, holderServed)
	t.Logf("survivors: %d requests served, %d failed; max latency %v; all done %v after the kill",
		served, failed, maxLatency.Round(time.Millisecond), done.Sub(killedAt).Round(time.Millisecond))
	t.Logf("database executions: %d (killed holder) + %d (survivors' Loads); lock takeovers %d, fallbacks %d",
		1, st.Loads, st.LockTakeovers, st.Fallbacks)

	if served != 2*perProc {
		t.Errorf("survivors served %d requests, want %d", served, 2*perProc)
	}
	if st.Loads != 1 {
		t.Errorf("survivors ran the query %d times, want 1 (database executions would be %d, want 2)", st.Loads, st.Loads+1)
	}
	if st.LockTakeovers < 1 {
		t.Errorf("no survivor took the dead holder's lock over")
	}
}

// TestChaosRedisKilledMidLoad kills redis-server under a steady load of
// cached reads, lets the load run on without it, restarts it on the same
// port and checks that no request failed, every answer was right, the
// circuit breaker opened and closed again, and caching resumed.
func TestChaosRedisKilledMidLoad(t *testing.T) {
	const (
		workers  = 6
		nkeys    = 4
		warmup   = 20     // requests each worker does before the kill
		outage   = 30     // requests each worker does while Redis is down
		maxIters = 200000 // a bound only: the test stops the workers
	)
	addr, stop, restart := startRedis(t)
	pg := openDB(t)
	chaosSchema(t, pg)
	ins := newInstancesAt(t, addr, 3, func(c *Config) {
		c.RedisTimeout = 200 * time.Millisecond
		c.BreakerCooldown = 500 * time.Millisecond
		c.LockExpiry = time.Second
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan struct{})
	var (
		counts   [workers]atomic.Int64
		failures atomic.Int64
		errMu    sync.Mutex
		errs     []string
		wg       sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			in := ins[w%len(ins)]
			for i := range maxIters {
				select {
				case <-done:
					return
				default:
				}
				k := (w + i) % nkeys
				v, err := chaosKV(ctx, in, k)
				counts[w].Add(1)
				if err != nil || v != chaosWant(k) {
					failures.Add(1)
					errMu.Lock()
					if len(errs) < 10 {
						errs = append(errs, fmt.Sprintf("worker %d key %d: got %q, %v", w, k, v, err))
					}
					errMu.Unlock()
				}
			}
		})
	}
	stopWorkers := sync.OnceFunc(func() {
		close(done)
		wg.Wait()
	})
	t.Cleanup(stopWorkers)
	allDid := func(base []int64, n int64) func() bool {
		return func() bool {
			for w := range counts {
				if counts[w].Load() < base[w]+n {
					return false
				}
			}
			return true
		}
	}
	snapshot := func() []int64 {
		s := make([]int64, workers)
		for w := range counts {
			s[w] = counts[w].Load()
		}
		return s
	}

	waitFor(t, "the warm-up load", waitTimeout, allDid(make([]int64, workers), warmup))
	waitFor(t, "a cache hit before the kill", waitTimeout, func() bool { return sumStats(ins...).Hits > 0 })
	before := sumStats(ins...)
	atKill := snapshot()
	stop()
	killedAt := time.Now()
	waitFor(t, "the load to go on without Redis", waitTimeout, allDid(atKill, outage))
	during := sumStats(ins...)
	atRestart := snapshot()
	// The first hit may come before restart returns: watch for it from
	// before the restart.
	firstHit := make(chan time.Time, 1)
	go func() {
		for ctx.Err() == nil {
			if sumStats(ins...).Hits > during.Hits {
				firstHit <- time.Now()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	restartBegan := time.Now()
	restart()
	redisUp := time.Since(restartBegan)
	var hitAt time.Time
	select {
	case hitAt = <-firstHit:
	case <-time.After(15 * time.Second):
		t.Fatalf("no cache hit within 15s of the restart; stats %+v", sumStats(ins...))
	}
	waitFor(t, "every breaker closed again", 15*time.Second, func() bool {
		for _, in := range ins {
			if in.p.engine.BreakerState() != gobreaker.StateClosed {
				return false
			}
		}
		return true
	})
	closedAfter := time.Since(restartBegan)
	stopWorkers()
	after := sumStats(ins...)

	var total, outageReqs int64
	for w := range counts {
		total += counts[w].Load()
		outageReqs += atRestart[w] - atKill[w]
	}
	t.Logf("requests: %d in all, %d while Redis was down (%v); failures: %d",
		total, outageReqs, restartBegan.Sub(killedAt).Round(time.Millisecond), failures.Load())
	t.Logf("recovery, from the restart: redis-server answering %v, first cache hit %v, every breaker closed %v",
		redisUp.Round(time.Millisecond), hitAt.Sub(restartBegan).Round(time.Millisecond), closedAfter.Round(time.Millisecond))
	t.Logf("stats before kill: %+v", before)
	t.Logf("stats at restart:  %+v", during)
	t.Logf("stats at the end:  %+v", after)

	if n := failures.Load(); n != 0 {
		t.Errorf("%d requests failed or answered wrong, first ones: %s", n, strings.Join(errs, "; "))
	}
	if during.BreakerOpens < 1 {
		t.Errorf("no circuit breaker opened while Redis was down")
	}
	if during.Fallbacks <= before.Fallbacks {
		t.Errorf("no query fell back to the database while Redis was down")
	}
	if after.Hits <= during.Hits {
		t.Errorf("no cache hit after the restart: caching did not resume")
	}
}

// TestChaosFailingDatabaseNoHerd has 8 instances x 100 callers query a
// failing database. PostgreSQL itself checks that the executions never
// overlap (the failing query is never run by a herd); once it recovers, one
// round runs it exactly once.
func TestChaosFailingDatabaseNoHerd(t *testing.T) {
	const instances, callers = 8, 100
	addr, _, _ := startRedis(t)
	probe := newChaosProbe(t, openDB(t))
	ins := newInstancesAt(t, addr, instances, nil)
	probe.fail(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	round := func() (errs []error, maxLatency time.Duration) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, in := range ins {
			for range callers {
				wg.Go(func() {
					<-start
					t0 := time.Now()
					err := probe.query(ctx, in, "k", 50)
					mu.Lock()
					defer mu.Unlock()
					errs = append(errs, err)
					maxLatency = max(maxLatency, time.Since(t0))
				})
			}
		}
		close(start)
		wg.Wait()
		return errs, maxLatency
	}

	errs, latency := round()
	failing := probe.runs(t)
	var failed int
	for _, err := range errs {
		if err != nil && strings.Contains(err.Error(), "is failing") {
			failed++
		} else {
			t.Errorf("while the database fails: got %v, want the database's error", err)
		}
	}
	t.Logf("failing database: %d callers, %d got the database's error; executions %d, overlapping executions %d; max latency %v",
		len(errs), failed, failing, probe.overlapped(t), latency.Round(time.Millisecond))
	if n := probe.overlapped(t); n != 0 {
		t.Errorf("PostgreSQL saw %d executions overlap another: the instances stampeded the failing database", n)
	}
	if failing < 1 {
		t.Errorf("the failing query never ran")
	}

	probe.recover(t)
	errs, latency = round()
	var ok int
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			t.Errorf("after the database recovered: %v", err)
		}
	}
	recovered := probe.runs(t) - failing
	t.Logf("recovered database: %d callers, %d succeeded; executions %d; max latency %v; stats %+v",
		len(errs), ok, recovered, latency.Round(time.Millisecond), sumStats(ins...))
	if recovered != 1 {
		t.Errorf("after the database recovered the query ran %d times, want 1", recovered)
	}
	if n := probe.overlapped(t); n != 0 {
		t.Errorf("PostgreSQL saw %d overlapping executions in all", n)
	}
}

// TestChaosPubSubConnectionKilled cuts the waiters' pub/sub connections
// (CLIENT KILL TYPE pubsub) while they wait for a slow load: every caller
// still gets the right result and the query runs once. A second stampede
// afterwards checks the instances still wait and wake correctly.
func TestChaosPubSubConnectionKilled(t *testing.T) {
	const callers = 10
	addr, _, _ := startRedis(t)
	admin := openRedis(t, addr)
	pg := openDB(t)
	ins := newInstancesAt(t, addr, 3, nil)
	pattern := escapeGlob(ins[0].p.cfg.Prefix) + ":*"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// stampede starts callers on every instance; done is closed when all
	// have returned, and then result reports their errors.
	stampede := func(probe *chaosProbe, key string, ms int) (done chan struct{}, result func() ([]error, time.Duration)) {
		var (
			mu     sync.Mutex
			errs   []error
			maxLat time.Duration
			wg     sync.WaitGroup
		)
		for _, in := range ins {
			for range callers {
				wg.Go(func() {
					t0 := time.Now()
					err := probe.query(ctx, in, key, ms)
					mu.Lock()
					defer mu.Unlock()
					errs = append(errs, err)
					maxLat = max(maxLat, time.Since(t0))
				})
			}
		}
		done = make(chan struct{})
		go func() {
			wg.Wait()
			close(done)
		}()
		return done, func() ([]error, time.Duration) {
			<-done
			mu.Lock()
			defer mu.Unlock()
			return errs, maxLat
		}
	}
	numsub := func(channel string) int64 {
		n, err := admin.PubSubNumSub(ctx, channel).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n[channel]
	}
	check := func(what string, probe *chaosProbe, errs []error, latency time.Duration) {
		t.Helper()
		var failed int
		for _, err := range errs {
			if err != nil {
				failed++
				t.Errorf("%s: %v", what, err)
			}
		}
		execs := probe.runs(t)
		t.Logf("%s: %d callers, %d failed, database executions %d, max latency %v",
			what, len(errs), failed, execs, latency.Round(time.Millisecond))
		if execs != 1 {
			t.Errorf("%s: the query ran %d times, want 1", what, execs)
		}
	}

	probe := newChaosProbe(t, pg)
	started := time.Now()
	done, result := stampede(probe, "k1", 2500)
	waitFor(t, "the holder's query", waitTimeout, func() bool { return probe.runs(t) == 1 })
	var channel string
	waitFor(t, "two instances subscribed to the ready channel", waitTimeout, func() bool {
		chans, err := admin.PubSubChannels(ctx, pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(chans) != 1 {
			return false
		}
		channel = chans[0]
		subscribed := 0
		for _, in := range ins {
			if in.p.engine.Subscribed() > 0 {
				subscribed++
			}
		}
		return subscribed == 2 && numsub(channel) >= 2
	})
	killed, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
	if err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	t.Logf("killed %d pub/sub connections %v into the 2.5s load", killed, killedAt.Sub(started).Round(time.Millisecond))
	if killed < 2 {
		t.Errorf("CLIENT KILL TYPE pubsub killed %d connections, want the 2 waiters'", killed)
	}
	// Not a condition of the test: whether the waiters resubscribed before
	// the holder finished.
	for resubscribed := false; !resubscribed; {
		select {
		case <-done:
			t.Logf("the load finished before the waiters were seen resubscribed")
			resubscribed = true
			continue
		default:
		}
		if numsub(channel) >= 2 {
			t.Logf("both waiters resubscribed %v after the kill", time.Since(killedAt).Round(time.Millisecond))
			resubscribed = true
		} else {
			time.Sleep(2 * time.Millisecond)
		}
	}
	errs, latency := result()
	t.Logf("all callers done %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	check("stampede across the kill", probe, errs, latency)

	// The hubs keep working after their connections were cut.
	probe2 := newChaosProbe(t, pg)
	_, result = stampede(probe2, "k2", 500)
	errs, latency = result()
	check("stampede after the kill", probe2, errs, latency)
	t.Logf("stats: %+v", sumStats(ins...))
}

// chaosProxy is a TCP proxy in front of a Redis. Black-holed, it keeps every
// connection open but forwards nothing in either direction, like a network
// that silently drops packets; with its subscribers silenced, it does that
// to the connections that subscribe to patterns (PSUBSCRIBE) only. Given a round trip (setRTT), it delays
// everything it forwards by half of it in each direction, keeping the order
// of the bytes. Connecting to it is immediate: only the traffic over a
// connection pays the latency, as over a slow link whose TCP handshake
// go-redis already dials outside an operation's deadline.
type chaosProxy struct {
	ln        net.Listener
	target    string
	blackhole atomic.Bool
	silent    atomic.Bool  // subscribers are black-holed
	oneWay    atomic.Int64 // nanoseconds added to each chunk, each direction

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func chaosStartProxy(t *testing.T, target string) *chaosProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &chaosProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *chaosProxy) addr() string { return p.ln.Addr().String() }

func (p *chaosProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.track(client, server) {
			return
		}
		subscriber := new(atomic.Bool) // the client sent PSUBSCRIBE
		p.wg.Go(func() { p.pipe(server, client, subscriber, true) })
		p.wg.Go(func() { p.pipe(client, server, subscriber, false) })
	}
}

// track registers a connection pair; it reports false once the proxy is
// closing, and then closes them itself.
func (p *chaosProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// silenceSubscribers black-holes the connections that subscribe to
// patterns, now and from then on.
func (p *chaosProxy) silenceSubscribers() { p.silent.Store(true) }

// setRTT sets the round trip the proxy adds, from the next chunk read on.
func (p *chaosProxy) setRTT(rtt time.Duration) { p.oneWay.Store(int64(rtt / 2)) }

// delayed is a chunk read from one side, due on the other at due.
type delayed struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst, dropping what it reads while black-holed (or, a
// subscriber's connection, while subscribers are silenced), each
// chunk leaving one one-way delay after it arrived. When either side ends,
// it closes both.
func (p *chaosProxy) pipe(dst, src net.Conn, subscriber *atomic.Bool, fromClient bool) {
	queue := make(chan delayed, 4096)
	var writer sync.WaitGroup
	writer.Go(func() {
		defer func() { _ = dst.Close(); _ = src.Close() }()
		for c := range queue {
			time.Sleep(time.Until(c.due))
			if _, err := dst.Write(c.data); err != nil {
				return
			}
		}
	})
	defer writer.Wait()
	defer close(queue)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if fromClient && bytes.Contains(bytes.ToLower(buf[:n]), []byte("psubscribe")) {
			subscriber.Store(true)
		}
		if n > 0 && !p.blackhole.Load() && !(p.silent.Load() && subscriber.Load()) {
			due := time.Now().Add(time.Duration(p.oneWay.Load()))
			queue <- delayed{data: append([]byte(nil), buf[:n]...), due: due}
		}
		if err != nil {
			return
		}
	}
}

func (p *chaosProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

type chaosCountedRow struct {
	V string
	N int
}

// chaosCountedKV is a cached read of gft_chaos_kv whose executions
// PostgreSQL records under tag.
func chaosCountedKV(ctx context.Context, in *instance, tag string, k int) (chaosCountedRow, error) {
	var r chaosCountedRow
	err := in.db.WithContext(ctx).Scopes(Cache(time.Minute)).
		Raw("SELECT v, gft_record(?, 0) AS n FROM gft_chaos_kv WHERE k = ?", tag, k).Scan(&r).Error
	return r, err
}

// TestChaosRedisBlackholed puts Redis behind a proxy that stops forwarding
// without closing connections. Queries must keep answering from the
// database, each within a bounded time (the breaker stops the timeouts
// from piling up), and caching must resume once the network heals.
func TestChaosRedisBlackholed(t *testing.T) {
	const (
		sequential      = 10
		concurrent      = 20
		redisTimeout    = 200 * time.Millisecond
		breakerFailures = 3
		breakerCooldown = 500 * time.Millisecond
		key             = 3
	)
	addr, _, _ := startRedis(t)
	proxy := chaosStartProxy(t, addr)
	pg := openDB(t)
	chaosSchema(t, pg)
	ins := newInstancesAt(t, proxy.addr(), 2, func(c *Config) {
		c.RedisTimeout = redisTimeout
		c.BreakerFailures = breakerFailures
		c.BreakerCooldown = breakerCooldown
	})
	tag := uniqueTag(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := chaosCountedRow{V: chaosWant(key), N: 1}
	// While black-holed each query must answer within about the Redis
	// timeouts the breaker lets through plus the query: its context ends
	// there, so a query that hangs on Redis fails instead of being timed.
	bound := redisTimeout*(breakerFailures+2) + 3*time.Second
	query := func(in *instance) (time.Duration, error) {
		t0 := time.Now()
		qctx, qcancel := context.WithTimeout(ctx, bound)
		defer qcancel()
		r, err := chaosCountedKV(qctx, in, tag, key)
		if err == nil && r != want {
			err = fmt.Errorf("got %+v, want %+v", r, want)
		}
		return time.Since(t0), err
	}

	// Primed: the entry is stored and each instance has read it.
	waitFor(t, "a cache hit on each instance", 15*time.Second, func() bool {
		for _, in := range ins {
			if in.p.Stats().Hits == 0 {
				if _, err := query(in); err != nil {
					t.Fatalf("priming: %v", err)
				}
				return false
			}
		}
		return true
	})
	primed := sumStats(ins...)
	primedExecs := calls(t, pg, tag)

	proxy.blackhole.Store(true)
	var seqLat []time.Duration
	for i := range sequential {
		lat, err := query(ins[0])
		seqLat = append(seqLat, lat)
		if err != nil {
			t.Errorf("sequential query %d while black-holed: %v", i, err)
		}
	}
	var mu sync.Mutex
	var conLat []time.Duration
	var wg sync.WaitGroup
	for i := range concurrent {
		wg.Go(func() {
			lat, err := query(ins[i%len(ins)])
			mu.Lock()
			defer mu.Unlock()
			conLat = append(conLat, lat)
			if err != nil {
				t.Errorf("concurrent query %d while black-holed: %v", i, err)
			}
		})
	}
	wg.Wait()
	holed := sumStats(ins...)
	execsHoled := calls(t, pg, tag) - primedExecs

	proxy.blackhole.Store(false)
	healed := time.Now()
	var recovery time.Duration
	waitFor(t, "a cache hit after the network healed", 15*time.Second, func() bool {
		if _, err := query(ins[0]); err != nil {
			t.Fatalf("query after the network healed: %v", err)
		}
		if ins[0].p.Stats().Hits > holed.Hits {
			recovery = time.Since(healed)
			return true
		}
		return false
	})
	end := sumStats(ins...)

	round := func(d []time.Duration) []string {
		out := make([]string, len(d))
		for i, v := range d {
			out[i] = v.Round(time.Millisecond).String()
		}
		return out
	}
	slices.Sort(conLat)
	t.Logf("black-holed: %d sequential queries took %v", sequential, round(seqLat))
	t.Logf("black-holed: %d concurrent queries took %v (sorted)", concurrent, round(conLat))
	t.Logf("black-holed: %d database executions; breaker opened %d times; stats %+v", execsHoled, holed.BreakerOpens, holed)
	t.Logf("healed: first hit %v after forwarding resumed (breaker cooldown %v); stats %+v",
		recovery.Round(time.Millisecond), breakerCooldown, end)

	if holed.BreakerOpens < 1 {
		t.Errorf("the circuit breaker never opened while Redis was black-holed")
	}
	if holed.Fallbacks-primed.Fallbacks < 1 {
		t.Errorf("no query fell back to the database while Redis was black-holed")
	}
}

// TestChaosMaxWaitAndFailClosed checks Config.MaxWait: a waiter whose holder takes longer
// fails with ErrWaitTimeout when FailOnWaitTimeout is set and otherwise runs
// the query itself. FailClosed makes a dead Redis an ErrRedisUnavailable
// instead of a database query.
func TestChaosMaxWaitAndFailClosed(t *testing.T) {
	const (
		maxWait = 300 * time.Millisecond
		queryMs = 3000
	)
	// holderAndWaiter starts a 3s load on a holder instance, waits until
	// PostgreSQL runs it, then queries the same key from a waiter instance
	// with a short MaxWait.
	holderAndWaiter := func(t *testing.T, failOnTimeout bool) {
		probe := newChaosProbe(t, openDB(t))
		prefix := testPrefix(t)
		holder := newInstance(t, testConfig(openRedis(t, ""), prefix))
		wcfg := testConfig(openRedis(t, ""), prefix)
		wcfg.MaxWait = maxWait
		wcfg.FailOnWaitTimeout = failOnTimeout
		waiter := newInstance(t, wcfg)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()

		held := make(chan error, 1)
		go func() { held <- probe.query(ctx, holder, "k", queryMs) }()
		waitFor(t, "the holder's query", waitTimeout, func() bool { return probe.runs(t) == 1 })
		t0 := time.Now()
		err := probe.query(ctx, waiter, "k", queryMs)
		latency := time.Since(t0)
		if err := <-held; err != nil {
			t.Errorf("holder: %v", err)
		}
		execs := probe.runs(t)
		st := waiter.p.Stats()
		t.Logf("waiter answered after %v: %v; database executions %d (%d overlapping); waiter stats %+v",
			latency.Round(time.Millisecond), err, execs, probe.overlapped(t), st)

		if failOnTimeout {
			if !errors.Is(err, ErrWaitTimeout) {
				t.Errorf("waiter: got %v, want ErrWaitTimeout", err)
			}
			if execs != 1 {
				t.Errorf("the query ran %d times, want 1 (the waiter gave up instead)", execs)
			}
		} else {
			if err != nil {
				t.Errorf("waiter: %v", err)
			}
			if execs != 2 {
				t.Errorf("the query ran %d times, want 2 (holder and waiter)", execs)
			}
			if st.Fallbacks != 1 {
				t.Errorf("waiter fell back %d times, want 1", st.Fallbacks)
			}
		}
		if st.WaitTimeouts != 1 {
			t.Errorf("waiter counted %d wait timeouts, want 1", st.WaitTimeouts)
		}
	}
	t.Run("FailOnWaitTimeout", func(t *testing.T) {
		t.Parallel()
		holderAndWaiter(t, true)
	})
	t.Run("QueriesItself", func(t *testing.T) {
		t.Parallel()
		holderAndWaiter(t, false)
	})
	t.Run("FailClosed", func(t *testing.T) {
		t.Parallel()
		addr, stop, _ := startRedis(t)
		probe := newChaosProbe(t, openDB(t))
		cfg := testConfig(openRedis(t, addr), testPrefix(t))
		cfg.FailClosed = true
		cfg.RedisTimeout = 200 * time.Millisecond
		in := newInstance(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := probe.query(ctx, in, "k", 0); err != nil {
			t.Fatalf("with Redis up: %v", err)
		}
		stop()
		// More queries than BreakerFailures: the open breaker must fail
		// closed too.
		for i := range 8 {
			err := probe.query(ctx, in, fmt.Sprintf("k%d", i), 0)
			if !errors.Is(err, ErrRedisUnavailable) {
				t.Errorf("query %d with Redis dead: got %v, want ErrRedisUnavailable", i, err)
			}
		}
		st := in.p.Stats()
		execs := probe.runs(t)
		t.Logf("fail-closed with Redis dead: database executions %d (1 before the kill); stats %+v", execs, st)
		if execs != 1 {
			t.Errorf("the database ran %d queries, want only the one before Redis died", execs)
		}
		if st.BreakerOpens < 1 {
			t.Errorf("the breaker never opened")
		}
	})
	// A write while Redis is dead leaves its tables dirty (their
	// invalidation is pending); reads of them must still fail closed rather
	// than run on the database without the cluster-wide lock.
	t.Run("FailClosedAfterWrite", func(t *testing.T) {
		t.Parallel()
		addr, stop, _ := startRedis(t)
		pg := openDB(t)
		chaosSchema(t, pg)
		cfg := testConfig(openRedis(t, addr), testPrefix(t))
		cfg.FailClosed = true
		cfg.RedisTimeout = 200 * time.Millisecond
		in := newInstance(t, cfg)
		tag := uniqueTag(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		want := chaosCountedRow{V: chaosWant(5), N: 1}
		if r, err := chaosCountedKV(ctx, in, tag, 5); err != nil || r != want {
			t.Fatalf("with Redis up: got %+v, %v; want %+v", r, err, want)
		}
		stop()
		// Writes nothing, but its SQL writes gft_chaos_kv: the plugin
		// tries to invalidate the table, and fails.
		werr := in.db.WithContext(ctx).Exec("UPDATE gft_chaos_kv SET v = v WHERE k = -1").Error
		r, err := chaosCountedKV(ctx, in, tag, 5)
		st := in.p.Stats()
		execs := calls(t, pg, tag)
		t.Logf("write with Redis dead: %v; read after it: %+v, %v; database executions %d (1 before the kill); stats %+v",
			werr, r, err, execs, st)
		if st.InvalidationErrors != 1 {
			t.Errorf("InvalidationErrors = %d, want 1", st.InvalidationErrors)
		}
		if !errors.Is(err, ErrRedisUnavailable) {
			t.Errorf("cached read of a table written while Redis is dead: got %+v, %v; want ErrRedisUnavailable (FailClosed)", r, err)
		}
		if execs != 1 {
			t.Errorf("the database ran the cached query %d times, want only the one before Redis died", execs)
		}
	})
}

// TestChaosLockLostMidFill has Redis lose the lock of a fill in progress,
// as a failover to a replica that had not received it (or a holder paused
// past its expiry) would, while Redis itself stays healthy. The holder's
// lock extensions then fail because the lock is gone, an answer from Redis,
// not a Redis failure: the circuit breaker must stay closed, the result
// must still be stored (correctness rests on the generation stamps, not on
// the lock) and the next read must be a hit.
func TestChaosLockLostMidFill(t *testing.T) {
	const lockExpiry = 300 * time.Millisecond
	addr, _, _ := startRedis(t)
	admin := openRedis(t, addr)
	probe := newChaosProbe(t, openDB(t))
	in := newInstancesAt(t, addr, 1, func(c *Config) { c.LockExpiry = lockExpiry })[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	held := make(chan error, 1)
	go func() { held <- probe.query(ctx, in, "k", 2000) }()
	waitFor(t, "the fill's query", waitTimeout, func() bool { return probe.runs(t) == 1 })
	locks, err := admin.Keys(ctx, escapeGlob(in.p.cfg.Prefix)+":*:l").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) != 1 {
		t.Fatalf("found locks %v, want the fill's one", locks)
	}
	if err := admin.Del(ctx, locks[0]).Err(); err != nil {
		t.Fatal(err)
	}
	if err := <-held; err != nil {
		t.Fatalf("fill: %v", err)
	}
	afterFill := in.p.Stats()
	if err := probe.query(ctx, in, "k", 2000); err != nil {
		t.Fatalf("read after the fill: %v", err)
	}
	end := in.p.Stats()
	t.Logf("after the fill: breaker %v, stats %+v", in.p.engine.BreakerState(), afterFill)
	t.Logf("after the next read: database executions %d, stats %+v", probe.runs(t), end)

	if afterFill.BreakerOpens != 0 {
		t.Errorf("the circuit breaker opened %d times with Redis healthy: failed extensions of a lost lock were counted as Redis failures", afterFill.BreakerOpens)
	}
	if afterFill.RedisErrors != 0 {
		t.Errorf("%d Redis errors counted with Redis healthy", afterFill.RedisErrors)
	}
	if n := probe.runs(t); n != 1 || end.Hits != 1 {
		t.Errorf("the read after the fill ran the query again (database executions %d, hits %d): the fill's result was not stored", n, end.Hits)
	}
}
