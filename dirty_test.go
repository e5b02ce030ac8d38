package gormflight

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// A write whose generation bump fails while Redis is otherwise healthy: the
// entry in Redis is still stamped as current, so only the writer's dirty
// mark (and, while it lives, the write's announcement) keeps old rows from
// being served. TestConsistencyBumpFailure kills Redis instead, so its reads
// fall back whatever the dirty tables; here every other command of the
// writer reaches Redis.

// errDirtyRefused is what dirtyRefuser answers instead of sending a pipeline.
var errDirtyRefused = errors.New("dirty_test: pipeline refused by the test hook")

// dirtyRefuser fails, without sending it, every pipeline that runs an armed
// script (gen_bump, write_begin) on the client it hooks. Everything else
// passes through.
type dirtyRefuser struct {
	passHook
	bumps     atomic.Bool // refuse pipelines running gen_bump.lua
	announces atomic.Bool // refuse pipelines running write_begin.lua
	refused   atomic.Int64
}

func (h *dirtyRefuser) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if h.refuses(c) {
				h.refused.Add(1)
				return errDirtyRefused
			}
		}
		return next(ctx, cmds)
	}
}

// refuses reports whether a command runs an armed script.
func (h *dirtyRefuser) refuses(c redis.Cmder) bool {
	switch engine.ScriptOf(c) {
	case engine.ScriptGenBump:
		return h.bumps.Load()
	case engine.ScriptWriteBegin:
		return h.announces.Load()
	}
	return false
}

// dirtyLogEntry is one message a dirtyLog received.
type dirtyLogEntry struct {
	level logger.LogLevel
	msg   string
}

func (e dirtyLogEntry) String() string {
	name := map[logger.LogLevel]string{logger.Info: "INFO", logger.Warn: "WARN", logger.Error: "ERROR"}[e.level]
	return name + " " + e.msg
}

// dirtyLog is a GORM logger that keeps every message. It is safe for
// concurrent use: the plugin's retrier logs from its own goroutine.
type dirtyLog struct {
	mu      sync.Mutex
	entries []dirtyLogEntry
}

var _ logger.Interface = (*dirtyLog)(nil)

func (l *dirtyLog) LogMode(logger.LogLevel) logger.Interface { return l }

func (l *dirtyLog) Info(_ context.Context, msg string, args ...any) { l.add(logger.Info, msg, args) }

func (l *dirtyLog) Warn(_ context.Context, msg string, args ...any) { l.add(logger.Warn, msg, args) }

func (l *dirtyLog) Error(_ context.Context, msg string, args ...any) { l.add(logger.Error, msg, args) }

func (l *dirtyLog) Trace(context.Context, time.Time, func() (string, int64), error) {}

func (l *dirtyLog) add(level logger.LogLevel, msg string, args []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, dirtyLogEntry{level: level, msg: fmt.Sprintf(msg, args...)})
}

// warnings returns the messages at Warn or Error level that contain every
// one of words, ignoring case.
func (l *dirtyLog) warnings(words ...string) []dirtyLogEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []dirtyLogEntry
	for _, e := range l.entries {
		if e.level != logger.Warn && e.level != logger.Error {
			continue
		}
		lower := strings.ToLower(e.msg)
		all := true
		for _, w := range words {
			all = all && strings.Contains(lower, strings.ToLower(w))
		}
		if all {
			out = append(out, e)
		}
	}
	return out
}

func (l *dirtyLog) all() []dirtyLogEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]dirtyLogEntry(nil), l.entries...)
}

// dirtyInstance is newInstance with a GORM logger of the test's choosing.
func dirtyInstance(t *testing.T, cfg Config, log logger.Interface) *instance {
	t.Helper()
	return installPlugin(t, openDBWith(t, &gorm.Config{Logger: log}), cfg)
}

// dirtyKeyExists reports whether key exists in Redis.
func dirtyKeyExists(t *testing.T, rdb *redis.Client, key string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	n, err := rdb.Exists(ctx, key).Result()
	if err != nil {
		t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n > 0
}

// dirtyFailedWrite sets the row's val through w's GORM handle while the hook
// refuses the bump, and checks that the write succeeded, counted one
// invalidation error and left table dirty on w.
func dirtyFailedWrite(t *testing.T, what string, w *instance, id, val int64, table string) {
	t.Helper()
	before := w.p.Stats().InvalidationErrors
	if err := w.db.Model(&consItem{ID: id}).Update("val", val).Error; err != nil {
		t.Fatalf("%s: the write failed because its bump did: %v", what, err)
	}
	if got := w.p.Stats().InvalidationErrors - before; got != 1 {
		t.Errorf("%s: InvalidationErrors grew by %d, want 1", what, got)
	}
	if !w.p.engine.Dirty([]string{table}) {
		t.Fatalf("%s: %s is not dirty on W after its bump failed", what, table)
	}
}

// dirtyReadsFromDB reads twice on in, which must return want from the
// database each time: PostgreSQL counts two executions.
func dirtyReadsFromDB(t *testing.T, what string, in *instance, read func(*gorm.DB) (string, error), tag, want string) {
	t.Helper()
	execs := calls(t, in.db, tag)
	before := in.p.Stats()
	consExpect(t, what+": read", in, read, want)
	consExpect(t, what+": read again", in, read, want)
	after := in.p.Stats()
	n := calls(t, in.db, tag) - execs
	t.Logf("%s: PostgreSQL executions +%d; hits +%d, misses +%d, fallbacks +%d",
		what, n, after.Hits-before.Hits, after.Misses-before.Misses, after.Fallbacks-before.Fallbacks)
	if n != 2 {
		t.Errorf("%s: PostgreSQL ran the query %d times for two reads, want 2 (each read of a dirty table runs it)", what, n)
	}
}

// dirtyAwaitRetry waits until w's background retrier has bumped the dirty
// table: Invalidations grew past inv and the table is clean.
func dirtyAwaitRetry(t *testing.T, what string, w *instance, table string, inv uint64) {
	t.Helper()
	bumped := eventually(waitTimeout, func() bool {
		return w.p.Stats().Invalidations != inv && !w.p.engine.Dirty([]string{table})
	})
	if !bumped {
		t.Fatalf("%s: the background retry never bumped %s (dirty: %v, stats %+v)",
			what, table, w.p.engine.Dirty([]string{table}), w.p.Stats())
	}
	if got := w.p.Stats().Invalidations - inv; got != 1 {
		t.Errorf("%s: the retry counted %d invalidations, want 1", what, got)
	}
}

// dirtyRefill reads on w (which refills the entry), then on r and on w
// again: both must be hits, and PostgreSQL must run the query once.
func dirtyRefill(t *testing.T, what string, w, r *instance, read func(*gorm.DB) (string, error), tag, want string) {
	t.Helper()
	execs := calls(t, w.db, tag)
	wHits, rHits := w.p.Stats().Hits, r.p.Stats().Hits
	consExpect(t, what+": W fills", w, read, want)
	consExpect(t, what+": R", r, read, want)
	consExpect(t, what+": W again", w, read, want)
	n := calls(t, w.db, tag) - execs
	gotW, gotR := w.p.Stats().Hits-wHits, r.p.Stats().Hits-rHits
	t.Logf("%s: PostgreSQL executions +%d; hits W +%d, R +%d", what, n, gotW, gotR)
	if n != 1 {
		t.Errorf("%s: PostgreSQL ran the query %d times for three reads, want 1 (one refill)", what, n)
	}
	if gotW != 1 || gotR != 1 {
		t.Errorf("%s: hits W +%d, R +%d, want +1 each", what, gotW, gotR)
	}
}

// A write commits but its bump fails while Redis is otherwise healthy. The
// write succeeds, the writer's instance reads the table from the database
// until a background retry lands the bump, and then caching resumes on every
// instance.
//
// The first write's announcement is refused too, so nothing in Redis says
// the entry is old: a correct read on W proves the dirty mark alone. The
// second write announces itself; while that announcement lives no instance
// serves the table's entries, so the other instance reads the new row too,
// and the retry must end it.
func TestDirtyTableAfterFailedBump(t *testing.T) {
	const table = "gft_cons_item"
	prefix := testPrefix(t)
	hook := &dirtyRefuser{}
	wrdb := openRedis(t, "")
	wrdb.AddHook(hook)
	log := &dirtyLog{}
	wcfg := testConfig(wrdb, prefix)
	// The refused pipelines are Redis failures to W's circuit breaker. Once
	// open, it would send every read on W to the database whatever the dirty
	// tables, and the reads below would prove nothing; BreakerOpens is
	// checked to stay 0.
	wcfg.BreakerFailures = 1 << 20
	w := dirtyInstance(t, wcfg, log)
	r := newInstance(t, testConfig(openRedis(t, ""), prefix))
	check := openRedis(t, "")
	consSchema(t, w.db)
	id := consNewItem(t, w.db, consNextID(t, w.db), 1)
	tag := uniqueTag(t)
	read := consCounted(tag, id)
	writers := w.p.engine.WritersKey(table)

	dirtyRefill(t, "prime", w, r, read, tag, "val=1")
	if got := calls(t, w.db, tag); got != 1 {
		t.Fatalf("prime: PostgreSQL ran the query %d times, want 1", got)
	}

	// 1. Announcement and bump both refused: Redis holds the val=1 entry
	// stamped with the current generation and no writers key.
	hook.announces.Store(true)
	hook.bumps.Store(true)
	dirtyFailedWrite(t, "unannounced write", w, id, 2, table)
	if dirtyKeyExists(t, check, writers) {
		t.Fatalf("unannounced write: %s exists although its announcement was refused", writers)
	}
	dirtyReadsFromDB(t, "W while dirty, unannounced", w, read, tag, "val=2")
	if got, err := read(r.db); err != nil {
		t.Fatalf("R while W is dirty, unannounced: %v", err)
	} else {
		t.Logf("R while W is dirty, unannounced: %s (no instance but W can know of the write until its bump lands)", got)
	}
	if n := w.p.Stats().BreakerOpens; n != 0 {
		t.Fatalf("W's circuit breaker opened %d times: its reads went to the database for that reason, not the dirty table", n)
	}
	// Checked while the bumps are refused: no retry has yet logged that it
	// invalidated the table.
	failed := log.warnings("invalidat", table)
	if len(failed) == 0 {
		t.Errorf("no message at Warn or Error level mentions the failed invalidation of %s; logged: %q", table, log.all())
	}
	for _, e := range failed {
		t.Logf("logged: %s", e)
	}
	inv := w.p.Stats().Invalidations
	hook.bumps.Store(false)
	hook.announces.Store(false)
	dirtyAwaitRetry(t, "unannounced write", w, table, inv)
	dirtyRefill(t, "after the retry of the unannounced write", w, r, read, tag, "val=2")

	// 2. Only the bump refused: the write announced itself before committing.
	hook.bumps.Store(true)
	dirtyFailedWrite(t, "announced write", w, id, 3, table)
	if !dirtyKeyExists(t, check, writers) {
		t.Fatalf("announced write: %s does not exist, want the write's announcement", writers)
	}
	dirtyReadsFromDB(t, "W while dirty, announced", w, read, tag, "val=3")
	execs := calls(t, w.db, tag)
	consExpect(t, "R during the announcement", r, read, "val=3")
	t.Logf("R during the announcement: PostgreSQL executions +%d", calls(t, w.db, tag)-execs)
	if n := w.p.Stats().BreakerOpens; n != 0 {
		t.Fatalf("W's circuit breaker opened %d times", n)
	}
	inv = w.p.Stats().Invalidations
	hook.bumps.Store(false)
	dirtyAwaitRetry(t, "announced write", w, table, inv)
	dirtyRefill(t, "after the retry of the announced write", w, r, read, tag, "val=3")
	if dirtyKeyExists(t, check, writers) {
		t.Errorf("%s still exists after the retry bumped %s: the write's announcement was not ended, so until it expires (Config.LoadTimeout, %v) no instance serves or stores the table's entries",
			writers, table, w.p.cfg.LoadTimeout)
	}
	t.Logf("refused pipelines: %d; W stats %+v; R stats %+v", hook.refused.Load(), w.p.Stats(), r.p.Stats())
	for _, e := range log.all() {
		t.Logf("W's GORM log: %s", e)
	}
}
