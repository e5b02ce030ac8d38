package gormflight

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
)

// Settings of TestSlowRedisRecovers.
const (
	slowRedisTimeout    = 100 * time.Millisecond
	slowBreakerCooldown = 200 * time.Millisecond
	slowBreakerFailures = 3
	slowHighRTT         = 4 * slowRedisTimeout
	slowLowRTT          = 6 * slowRedisTimeout / 10 // 0.6 x RedisTimeout
	slowKey             = 5
)

// slowReads reads the test's row on an instance: the answer must be right
// whatever Redis does.
type slowReads struct {
	t   *testing.T
	ctx context.Context
	tag string
}

func (s slowReads) read(in *instance) bool { return s.readKey(in, s.tag, slowKey) }

// readKey reads row k, recording its executions under tag.
func (s slowReads) readKey(in *instance, tag string, k int) bool {
	r, err := chaosCountedKV(s.ctx, in, tag, k)
	want := chaosCountedRow{V: chaosWant(k), N: 1}
	if err != nil || r != want {
		s.t.Errorf("read: got %+v, %v; want %+v", r, err, want)
		return false
	}
	return true
}

// recovery is how an instance returned to hits.
type recovery struct {
	reads int           // reads until the first hit, that one included
	took  time.Duration // from the first of them to the hit
	hit   bool          // false: no hit within the reads allowed
}

// untilHit reads on in, one read per low round trip, until a read is a
// hit, at most max reads. Safe to call from any goroutine.
func (s slowReads) untilHit(in *instance, max int) recovery {
	start := time.Now()
	for i := 1; i <= max; i++ {
		before := in.p.Stats().Hits
		if !s.read(in) {
			break
		}
		if in.p.Stats().Hits > before {
			return recovery{reads: i, took: time.Since(start), hit: true}
		}
		time.Sleep(slowLowRTT) // pacing, so that reads span the cooldowns
	}
	return recovery{reads: max, took: time.Since(start)}
}

// recoverAll runs untilHit on every instance at once, so that each
// instance's recovery is measured from the same moment.
func (s slowReads) recoverAll(ins []*instance, max int) []recovery {
	out := make([]recovery, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		wg.Go(func() { out[i] = s.untilHit(in, max) })
	}
	wg.Wait()
	return out
}

// slowClient is a Redis client on addr that, unlike openRedis, does not
// ping: through the slow proxy its first command could not complete.
func slowClient(t *testing.T, addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func slowConfig(c *Config) {
	c.RedisTimeout = slowRedisTimeout
	c.BreakerCooldown = slowBreakerCooldown
	c.BreakerFailures = slowBreakerFailures
}

// TestSlowRedisRecovers raises the Redis round trip above RedisTimeout,
// starts an instance while it is high, then lowers it to 0.6 x
// RedisTimeout: every instance, the new one included, must return to cache
// hits within a bounded number of reads, then answer from Redis alone, and
// the instances must share a new key's load again. A connection go-redis
// opens lazily costs several round trips, under the deadline of the
// operation that needs it: without connections opened outside that
// deadline no operation completes once the old ones have been discarded.
func TestSlowRedisRecovers(t *testing.T) {
	addr, _, _ := startRedis(t)
	proxy := chaosStartProxy(t, addr)
	pg := openDB(t)
	chaosSchema(t, pg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := &slowRun{
		slowReads: slowReads{t: t, ctx: ctx, tag: uniqueTag(t)},
		pg:        pg,
		proxy:     proxy,
		ins:       newInstancesAt(t, proxy.addr(), 2, slowConfig),
	}
	r.prime()
	r.slow()
	if !r.recover() {
		return
	}
	r.steady()
	r.dedupe()
}

// slowRun is TestSlowRedisRecovers's state from phase to phase.
type slowRun struct {
	slowReads
	pg    *gorm.DB
	proxy *chaosProxy
	ins   []*instance
	fresh *instance // started while the round trip was high
	last  Stats     // the instances' counters at the end of the last phase
	execs int64     // database executions until the end of the last phase
}

// Reads per instance in each phase.
const (
	slowHighReads   = 3 * slowBreakerFailures // while the round trip is high
	slowMaxReads    = 40                      // to recover, at most
	slowSteadyReads = 10                      // after recovery
)

// phase ends a phase: it logs what the phase did and returns the counters
// and executions at its start.
func (r *slowRun) phase(name string) (Stats, int64) {
	before, execs := r.last, r.execs
	r.last, r.execs = sumStats(r.ins...), calls(r.t, r.pg, r.tag)
	r.t.Logf("%s: %d database executions, %d hits, %d fallbacks, %d Redis errors, %d breaker opens", name,
		r.execs-execs, r.last.Hits-before.Hits, r.last.Fallbacks-before.Fallbacks,
		r.last.RedisErrors-before.RedisErrors, r.last.BreakerOpens-before.BreakerOpens)
	return before, execs
}

// prime stores the entry and reads it on each instance, without latency.
func (r *slowRun) prime() {
	for i, rec := range r.recoverAll(r.ins, slowMaxReads) {
		if !rec.hit {
			r.t.Fatalf("instance %d: no hit within %d reads without added latency", i, slowMaxReads)
		}
	}
	r.phase("primed")
}

// slow raises the round trip over RedisTimeout, reads on the instances,
// then starts one more and reads on it: every read falls back.
func (r *slowRun) slow() {
	r.proxy.setRTT(slowHighRTT)
	for range slowHighReads {
		for _, in := range r.ins {
			r.read(in)
		}
	}
	cfg := testConfig(slowClient(r.t, r.proxy.addr()), r.ins[0].p.cfg.Prefix)
	slowConfig(&cfg)
	r.fresh = newInstance(r.t, cfg)
	for range slowHighReads {
		r.read(r.fresh)
	}
	r.ins = append(r.ins, r.fresh)
	before, _ := r.phase(fmt.Sprintf("RTT %v, %d reads", slowHighRTT, slowHighReads*len(r.ins)))
	if n := r.last.Hits - before.Hits; n != 0 {
		r.t.Errorf("%d hits with a round trip of %v over a RedisTimeout of %v", n, slowHighRTT, slowRedisTimeout)
	}
}

// recover lowers the round trip to 0.6 x RedisTimeout and reads on every
// instance until it hits. It reports whether all of them did.
func (r *slowRun) recover() bool {
	r.proxy.setRTT(slowLowRTT)
	ok := true
	for i, rec := range r.recoverAll(r.ins, slowMaxReads) {
		in := fmt.Sprintf("instance %d (fresh: %v)", i, r.ins[i] == r.fresh)
		if !rec.hit {
			ok = false
			r.t.Errorf("RTT %v: %s: no hit within %d reads, %v (RedisTimeout %v, BreakerCooldown %v)",
				slowLowRTT, in, rec.reads, rec.took.Round(time.Millisecond), slowRedisTimeout, slowBreakerCooldown)
			continue
		}
		r.t.Logf("RTT %v: %s: first hit at read %d, %v after the round trip was lowered",
			slowLowRTT, in, rec.reads, rec.took.Round(time.Millisecond))
	}
	r.phase(fmt.Sprintf("RTT %v, recovering", slowLowRTT))
	return ok
}

// steady reads on every instance again: Redis answers every read.
func (r *slowRun) steady() {
	for range slowSteadyReads {
		for _, in := range r.ins {
			r.read(in)
		}
	}
	_, execs := r.phase(fmt.Sprintf("RTT %v, recovered, %d reads", slowLowRTT, slowSteadyReads*len(r.ins)))
	if n := r.execs - execs; n != 0 {
		r.t.Errorf("%d database executions in %d reads after recovery, want 0", n, slowSteadyReads*len(r.ins))
	}
}

// dedupe reads a key no instance has read, on every instance at once: the
// instances, the fresh one included, must share one database execution.
func (r *slowRun) dedupe() {
	tag := r.tag + ":dedupe"
	var wg sync.WaitGroup
	for _, in := range r.ins {
		wg.Go(func() { r.readKey(in, tag, slowKey+1) })
	}
	wg.Wait()
	n := calls(r.t, r.pg, tag)
	r.t.Logf("a new key read on %d instances at once: %d database executions", len(r.ins), n)
	if n != 1 {
		r.t.Errorf("a new key read on %d instances at once: %d database executions, want 1", len(r.ins), n)
	}
}
