package gormflight

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
)

// Redis stalls (a fork, DEBUG SLEEP, a slow script) are injected into a
// redis-server of the test's own, started with --enable-debug-command.

// stallAnnouncements makes the next pipeline that runs write_begin.lua meet
// a stalled Redis: it puts the server to sleep for sleep, waits until the
// server has stopped answering, sends the pipeline (which then times out on
// the plugin's RedisTimeout while still queued in Redis, to run when the
// server wakes), and returns only after the stall has ended, so the write's
// next operations meet a healthy Redis. failed records the pipeline's error.
type stallAnnouncements struct {
	passHook
	addr   string
	sleep  time.Duration
	armed  atomic.Bool
	failed atomic.Value // error
}

func (s *stallAnnouncements) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !runsScript(cmds, engine.ScriptWriteBegin) || !s.armed.CompareAndSwap(true, false) {
			return next(ctx, cmds)
		}
		slept := make(chan error, 1)
		go func() {
			c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1, ReadTimeout: time.Minute})
			defer c.Close()
			slept <- c.Do(context.Background(), "DEBUG", "SLEEP", fmt.Sprintf("%.3f", s.sleep.Seconds())).Err()
		}()
		if err := waitStalled(s.addr); err != nil {
			return err
		}
		err := next(ctx, cmds)
		s.failed.Store(fmt.Errorf("announcement pipeline: %w", err))
		if serr := <-slept; serr != nil {
			return fmt.Errorf("DEBUG SLEEP: %w", serr)
		}
		return err
	}
}

// waitStalled returns once a PING to addr goes unanswered for 50ms: the
// server is asleep.
func waitStalled(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ContextTimeoutEnabled: true})
	defer c.Close()
	for range 1000 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return errors.New("redis-server never stalled")
}

// A Redis stall while a write announces itself: the announcement's request
// times out in the writer, but Redis runs it when it wakes. The write's bump
// must end that announcement anyway; otherwise the table stays uncached on
// every instance for LoadTimeout, a minute by default.
func TestStalledAnnouncementIsEnded(t *testing.T) {
	addr, _, _ := startRedis(t, "--enable-debug-command", "yes")
	prefix := testPrefix(t)
	db := openDB(t)
	setupSchema(t, db)
	table := "gft_stall_" + randHex(5)
	adminExec(t, db, "CREATE TABLE "+table+" (id int PRIMARY KEY, v text NOT NULL)")
	dropAtEnd(t, db, "DROP TABLE IF EXISTS "+table)
	adminExec(t, db, "INSERT INTO "+table+" VALUES (1, 'old')")

	stall := &stallAnnouncements{addr: addr, sleep: 600 * time.Millisecond}
	wrdb := openRedis(t, addr)
	wrdb.AddHook(stall)
	wcfg := testConfig(wrdb, prefix)
	wcfg.RedisTimeout = 100 * time.Millisecond
	writer := newInstance(t, wcfg)
	reader := newInstance(t, testConfig(openRedis(t, addr), prefix))

	tag := uniqueTag(t)
	read := func() string {
		t.Helper()
		var v string
		err := reader.db.Scopes(Cache(time.Minute)).
			Raw("SELECT v FROM "+table+" WHERE id = 1 AND gft_record(?, 0) = 1", tag).Scan(&v).Error
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := read(); v != "old" {
		t.Fatalf("first read: %q, want old", v)
	}

	// A write on a healthy Redis first: the stalled announcement must be
	// sent on a connection that is already set up, as in a running service,
	// so that Redis receives it and runs it when it wakes.
	if err := writer.db.Exec("UPDATE " + table + " SET v = 'old' WHERE id = 1").Error; err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ended := func(t *testing.T) {
		t.Helper()
		failed, _ := stall.failed.Load().(error)
		if failed == nil || stall.armed.Load() {
			t.Fatalf("the announcement did not meet the stall (armed=%v, error %v): the test did not test anything", stall.armed.Load(), failed)
		}
		t.Logf("the stalled announcement failed in the writer: %v", failed)
		w := writer.p.engine.WritersKey(table)
		if n, err := wrdb.Exists(ctx, w).Result(); err != nil || n != 0 {
			ttl, _ := wrdb.PTTL(ctx, w).Result()
			t.Fatalf("after the write returned, its announcement still stands (exists=%d, %v; %v to live): the table is uncached everywhere", n, err, ttl)
		}
	}
	reads := func(t *testing.T, want string) {
		t.Helper()
		before := calls(t, db, tag)
		for i := range 20 {
			if v := read(); v != want {
				t.Fatalf("read %d after the write: %q, want %q", i, v, want)
			}
		}
		if n := calls(t, db, tag) - before; n != 1 {
			t.Errorf("20 reads after the write ran the query %d times on PostgreSQL, want 1 (one load, then hits)", n)
		}
	}
	for i, write := range []struct {
		name string
		run  func(*gorm.DB) error
	}{
		{"exec", func(db *gorm.DB) error {
			return db.Exec("UPDATE " + table + " SET v = 'new' WHERE id = 1").Error
		}},
		{"transaction", func(db *gorm.DB) error {
			return db.Transaction(func(tx *gorm.DB) error {
				return tx.Exec("UPDATE " + table + " SET v = 'newer' WHERE id = 1").Error
			})
		}},
	} {
		want := []string{"new", "newer"}[i]
		t.Run(write.name, func(t *testing.T) {
			stall.armed.Store(true)
			if err := write.run(writer.db); err != nil {
				t.Fatal(err)
			}
			ended(t)
			reads(t, want)
		})
	}
}
