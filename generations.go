package gormflight

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Every table has a generation in Redis (<prefix>:g:<table>). An entry is
// stamped with the generations of the tables it read, taken before its query
// ran; a read fetches the entry and the current generations in one round
// trip and treats any difference as a miss. A write bumps the generations of
// the tables it wrote once it has committed, so a filler that finishes after
// a write can never bring old rows back. Nothing is deleted or scanned.

var (
	//go:embed lua/gen_read.lua
	genReadSrc    string
	genReadScript = redis.NewScript(genReadSrc)

	//go:embed lua/gen_bump.lua
	genBumpSrc    string
	genBumpScript = redis.NewScript(genBumpSrc)

	//go:embed lua/fill.lua
	fillSrc    string
	fillScript = redis.NewScript(fillSrc)
)

func (e *engine) genKey(table string) string { return e.cfg.Prefix + ":g:" + table }

// lookup reads the key's entry and the generations of its tables in one
// round trip (Redis Cluster: one pipeline per node, in parallel). It returns
// nil, nil for a miss: no entry, a stale one, or one that cannot be decoded.
func (e *engine) lookup(ctx context.Context, req request) (*entry, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	var data []byte
	var gens []*redis.StringCmd
	err := e.guard(func() error {
		if len(req.tables) == 0 {
			var err error
			data, err = e.rdb.Get(ctx, req.keys.entry).Bytes()
			return err
		}
		pipe := e.rdb.Pipeline()
		get := pipe.Get(ctx, req.keys.entry)
		gens = make([]*redis.StringCmd, len(req.tables))
		for i, t := range req.tables {
			gens[i] = pipe.Get(ctx, e.genKey(t))
		}
		_, _ = pipe.Exec(ctx)
		for _, g := range gens {
			if err := g.Err(); err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
		}
		var err error
		data, err = get.Bytes()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	i := strings.IndexByte(string(data), stampSep) // no copy: the conversion does not escape
	if i < 0 {
		e.stats.decodeErrors.Add(1)
		return nil, nil
	}
	if !stampMatches(data[:i], gens) {
		return nil, nil
	}
	ent, err := decodeEntry(data[i+1:])
	if err != nil {
		e.stats.decodeErrors.Add(1)
		return nil, nil
	}
	return ent, nil
}

// stampMatches reports whether stamp lists exactly the generations read,
// in order. A missing generation matches nothing.
func stampMatches(stamp []byte, gens []*redis.StringCmd) bool {
	for i, g := range gens {
		v, err := g.Result()
		if err != nil {
			return false
		}
		if i > 0 {
			if len(stamp) == 0 || stamp[0] != ',' {
				return false
			}
			stamp = stamp[1:]
		}
		if len(stamp) < len(v) || string(stamp[:len(v)]) != v {
			return false
		}
		stamp = stamp[len(v):]
	}
	return len(stamp) == 0
}

// readStamp returns the stamp of a fill about to run its query: the current
// generations of tables, creating missing ones (see lua/gen_read.lua).
func (e *engine) readStamp(ctx context.Context, tables []string) (string, error) {
	if len(tables) == 0 {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(tables))
	for i, t := range tables {
		cmds[i] = genReadScript.Eval(ctx, pipe, []string{e.genKey(t)})
	}
	if err := e.guard(func() error { _, err := pipe.Exec(ctx); return err }); err != nil {
		return "", err
	}
	var b strings.Builder
	for i, c := range cmds {
		v, err := c.Text()
		if err != nil {
			return "", err
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// storeStamped stores data under the key unless the entry there was computed
// under newer generations (lua/fill.lua).
func (e *engine) storeStamped(ctx context.Context, k keys, stamp string, data []byte, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	return e.guard(func() error {
		return fillScript.Eval(ctx, e.rdb, []string{k.entry}, stamp, data, ttl.Milliseconds()).Err()
	})
}

// bump advances the generations of tables in one round trip.
func (e *engine) bump(ctx context.Context, tables []string) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	for _, t := range tables {
		genBumpScript.Eval(ctx, pipe, []string{e.genKey(t)})
	}
	return e.guard(func() error { _, err := pipe.Exec(ctx); return err })
}

// invalidate bumps tables after a write has committed, before the write
// returns to its caller. If Redis cannot be reached it retries once; if that
// fails too, the tables are marked dirty: this instance stops serving cached
// reads of them, and a background retrier bumps them until Redis answers.
func (e *engine) invalidate(ctx context.Context, tables []string) error {
	if len(tables) == 0 {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	err := e.bump(ctx, tables)
	if err != nil {
		err = e.bump(ctx, tables)
	}
	if err == nil {
		e.stats.invalidations.Add(uint64(len(tables)))
		return nil
	}
	e.stats.invalidationErrors.Add(1)
	e.dirty.mark(tables)
	e.warnf("invalidate", "gormflight: could not invalidate %v, serving them uncached until Redis answers: %v", tables, err)
	select {
	case e.retry <- struct{}{}:
	default:
	}
	return fmt.Errorf("gormflight: invalidate %v: %w", tables, err)
}

// retryDirty runs until done, bumping dirty tables whenever asked to and
// every RetryInterval while any remain.
func (e *engine) retryDirty() {
	defer close(e.retried)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-e.done:
			t.Stop()
			return
		case <-e.retry:
		case <-t.C:
		}
		tables, marks := e.dirty.snapshot()
		if len(tables) == 0 {
			continue
		}
		if err := e.bump(context.Background(), tables); err != nil {
			t.Reset(e.cfg.LockExpiry / 4)
			continue
		}
		e.stats.invalidations.Add(uint64(len(tables)))
		e.dirty.clear(marks)
		e.logf(context.Background(), "gormflight: invalidated %v; caching them again", tables)
	}
}

// dirtySet holds tables whose invalidation has not reached Redis yet. Each
// mark has a sequence number, so a retry clears only the marks it covered.
type dirtySet struct {
	n   atomic.Int64 // len(m), read without the lock on every cached query
	mu  sync.Mutex
	seq uint64
	m   map[string]uint64
}

func (d *dirtySet) mark(tables []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = make(map[string]uint64)
	}
	for _, t := range tables {
		d.seq++
		d.m[t] = d.seq
	}
	d.n.Store(int64(len(d.m)))
}

// snapshot returns the dirty tables, sorted, and their marks.
func (d *dirtySet) snapshot() ([]string, map[string]uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	marks := maps.Clone(d.m)
	return slices.Sorted(maps.Keys(marks)), marks
}

// clear removes the marks of a snapshot that no newer mark replaced.
func (d *dirtySet) clear(marks map[string]uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for t, seq := range marks {
		if d.m[t] == seq {
			delete(d.m, t)
		}
	}
	d.n.Store(int64(len(d.m)))
}

// any reports whether one of tables is dirty.
func (d *dirtySet) any(tables []string) bool {
	if d.n.Load() == 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range tables {
		if _, ok := d.m[t]; ok {
			return true
		}
	}
	return false
}
