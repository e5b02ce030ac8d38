package gormflight

import (
	"context"
	"crypto/rand"
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

// Every table has a generation in Redis (<prefix>:g:{<table>}). An entry is
// stamped with the generations of the tables it read, taken before its query
// ran; a read fetches the entry and the current generations in one round
// trip and treats any difference as a miss. A write bumps the generations of
// the tables it wrote once it has committed, so a filler that finishes after
// a write can never bring old rows back. Nothing is deleted or scanned.
//
// Just before a write commits, it announces itself on the table's writers
// key (<prefix>:g:{<table>}:w), and the bump ends the announcement. While a
// table has writers, its entries are not served and fills do not store: in
// the gap between COMMIT and bump a miss already reads the new rows from the
// database, and a hit on an older entry must not answer after it. A reader
// that meets a write waits for its bump, which the bump pushes on the
// table's channel (<prefix>:g:{<table>}:b), and then goes through the
// cluster-wide flight: one query per write, not one per instance.
//
// A write whose commit the plugin cannot follow (a transaction begun
// outside GORM's view) announces itself on the held key (<prefix>:g:{<table>}:h)
// instead: its bump cannot tell when it commits, so the announcement stands
// until its deadline, and readers meanwhile read the database uncached
// rather than wait that long.

var (
	//go:embed lua/gen_read.lua
	genReadSrc    string
	genReadScript = redis.NewScript(genReadSrc)

	//go:embed lua/gen_bump.lua
	genBumpSrc    string
	genBumpScript = redis.NewScript(genBumpSrc)

	//go:embed lua/write_begin.lua
	writeBeginSrc    string
	writeBeginScript = redis.NewScript(writeBeginSrc)

	//go:embed lua/fill.lua
	fillSrc    string
	fillScript = redis.NewScript(fillSrc)
)

// genKey and writersKey share a hash tag: the scripts that use both run in
// one Redis Cluster slot.
func (e *engine) genKey(table string) string { return e.cfg.Prefix + ":g:{" + table + "}" }

func (e *engine) writersKey(table string) string { return e.genKey(table) + ":w" }

func (e *engine) heldKey(table string) string { return e.genKey(table) + ":h" }

// bumpChannel is where a table's bumps are pushed to the readers waiting
// for a write to end.
func (e *engine) bumpChannel(table string) string { return e.genKey(table) + ":b" }

// Stamp states of a table with a write in progress (lua/gen_read.lua).
var (
	// errWriting: a write that ends with a bump is committing; wait for it.
	errWriting = errors.New("gormflight: a write to the table is committing")
	// errHeld: a write whose commit cannot be followed holds the table; read
	// the database without storing.
	errHeld = errors.New("gormflight: a write to the table holds its announcement")
)

// found is what a lookup found: an entry to serve, or why there is none.
type found struct {
	entry *entry
	// writing lists the tables with a write in progress that ends with a
	// bump: wait for it.
	writing []string
	// held: a table has a write whose commit cannot be followed.
	held bool
}

// lookup reads the key's entry, the generations of its tables and their
// writes in progress in one round trip (Redis Cluster: one pipeline per
// node, in parallel). An entry is only returned if it is current and no
// write to its tables is in progress; a miss (no entry, a stale one, one
// that cannot be decoded) returns no entry and no error.
func (e *engine) lookup(ctx context.Context, req request) (found, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	var data []byte
	var gens []*redis.StringCmd
	var ttl *redis.DurationCmd
	var f found
	err := e.guard(func() error {
		pipe := e.rdb.Pipeline()
		get := pipe.Get(ctx, req.keys.entry)
		if e.memo.limit > 0 {
			ttl = pipe.PTTL(ctx, req.keys.entry) // for the memo: when the entry goes
		}
		gens = make([]*redis.StringCmd, len(req.tables))
		writers := make([]*redis.IntCmd, 2*len(req.tables))
		for i, t := range req.tables {
			// Writers first: a bump (atomic: generation up, announcement
			// ended) that lands between the two reads then shows as a
			// writer or as a new generation, never as neither.
			writers[2*i] = pipe.Exists(ctx, e.writersKey(t))
			writers[2*i+1] = pipe.Exists(ctx, e.heldKey(t))
			gens[i] = pipe.Get(ctx, e.genKey(t))
		}
		_, _ = pipe.Exec(ctx)
		for i, g := range gens {
			if err := g.Err(); err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			w, err := writers[2*i].Result()
			if err != nil {
				return err
			}
			h, err := writers[2*i+1].Result()
			if err != nil {
				return err
			}
			if w > 0 {
				f.writing = append(f.writing, req.tables[i])
			}
			f.held = f.held || h > 0
		}
		var err error
		data, err = get.Bytes()
		return err
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return found{}, err
	}
	if err == nil && !f.held && len(f.writing) == 0 {
		var expires time.Time
		if ttl != nil && ttl.Val() > 0 {
			expires = time.Now().Add(ttl.Val())
		}
		f.entry = e.current(req, data, gens, expires)
	}
	return f, nil
}

// current returns the entry in data, the stored value of req's key, if its
// stamp lists exactly the generations gens read; nil for a stale entry and
// for one that cannot be decoded. expires is when Redis drops the entry.
func (e *engine) current(req request, data []byte, gens []*redis.StringCmd, expires time.Time) *entry {
	// An entry over the cap was not stored by an instance configured like
	// this one (a planted value, or another MaxEntrySize): not decoded.
	i := strings.IndexByte(string(data), stampSep) // no copy: the conversion does not escape
	if i < 0 || len(data) > e.cfg.MaxEntrySize {
		e.stats.decodeErrors.Add(1)
		return nil
	}
	if !stampMatches(data[:i], gens) {
		return nil
	}
	ent, err := e.memo.decode(req.keys.entry, data[i+1:], expires)
	if err != nil {
		e.stats.decodeErrors.Add(1)
		return nil
	}
	return ent
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
// generations of tables, creating missing ones (see lua/gen_read.lua). It
// fails with errHeld or errWriting while a write to one of them is
// committing.
func (e *engine) readStamp(ctx context.Context, tables []string) (string, error) {
	if len(tables) == 0 {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(tables))
	for i, t := range tables {
		cmds[i] = genReadScript.Eval(ctx, pipe, []string{e.genKey(t), e.writersKey(t), e.heldKey(t)})
	}
	err := e.guard(func() error { _, err := pipe.Exec(ctx); return err })
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i, c := range cmds {
		v, err := c.Text()
		if err != nil {
			return "", err
		}
		switch v {
		case "h":
			return "", errHeld
		case "w":
			return "", errWriting
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

// announcement is one write's mark on the writers (or held) keys of the
// tables it is about to commit (lua/write_begin.lua), under a token of its
// own.
type announcement struct {
	token string
	// tables are the tables the write may have marked, sorted: all it
	// tried to mark, even when Redis did not answer, since a request that
	// timed out may still have run. The bump ends the token on each of
	// them; ending a token that was never added does nothing.
	tables []string
	// held: the write's commit cannot be followed, so it was announced on
	// the held keys, and its bump does not end it; it ends with its
	// lifetime.
	held bool
}

// has reports whether the announcement marked table.
func (a announcement) has(table string) bool {
	_, found := slices.BinarySearch(a.tables, table)
	return found
}

// ends returns, per table, the tokens a bump must remove to end a: none
// for a held announcement.
func (a announcement) ends() map[string][]string {
	if a.held {
		return nil
	}
	m := make(map[string][]string, len(a.tables))
	for _, t := range a.tables {
		m[t] = []string{a.token}
	}
	return m
}

// announce marks sorted tables as being written, just before the write
// commits; held marks a write whose commit cannot be followed (see
// announcement). If Redis fails the write goes on and its bump decides;
// the announcement still names every table, so that the bump ends whatever
// Redis applied before the failure was seen (a stall past RedisTimeout
// leaves the marks in place with no reply), instead of leaving them to
// keep the tables uncached on every instance for Config.LoadTimeout.
func (e *engine) announce(ctx context.Context, tables []string, held bool) announcement {
	if len(tables) == 0 {
		return announcement{}
	}
	a := announcement{token: rand.Text(), held: held}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	for _, t := range tables {
		key := e.writersKey(t)
		if held {
			key = e.heldKey(t)
		}
		writeBeginScript.Eval(ctx, pipe, []string{key}, a.token, e.cfg.LoadTimeout.Milliseconds())
	}
	a.tables = tables
	_ = e.guard(func() error { _, err := pipe.Exec(ctx); return err })
	return a
}

// bump advances the generations of tables in one round trip, ends the
// announcements whose tokens ends lists per table, and wakes the readers
// waiting for them. It is safe to repeat.
func (e *engine) bump(ctx context.Context, tables []string, ends map[string][]string) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	for _, t := range tables {
		args := make([]any, 1, 1+len(ends[t]))
		args[0] = e.bumpChannel(t)
		for _, tok := range ends[t] {
			args = append(args, tok)
		}
		genBumpScript.Eval(ctx, pipe, []string{e.genKey(t), e.writersKey(t), e.heldKey(t)}, args...)
	}
	return e.guard(func() error { _, err := pipe.Exec(ctx); return err })
}

// invalidate bumps tables after a write has committed, before the write
// returns to its caller, ending its announcement a. If Redis cannot be
// reached it retries once (a bump is idempotent); if that fails too, the
// tables are marked dirty: this instance stops serving cached reads of them,
// and a background retrier bumps them, and ends a, until Redis answers.
// Until then a's announcement keeps every instance from serving the tables'
// entries (for at most Config.LoadTimeout, its lifetime). A Redis that
// answers but refuses the bump (an ACL, a read-only replica, a full Redis
// that refuses the script) has the tables' generations deleted instead
// (see drop).
func (e *engine) invalidate(ctx context.Context, tables []string, a announcement) error {
	if len(tables) == 0 {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	ends := a.ends()
	err := e.bump(ctx, tables, ends)
	if err != nil && !answered(err) {
		err = e.bump(ctx, tables, ends)
	}
	if err == nil {
		e.stats.invalidations.Add(uint64(len(tables)))
		return nil
	}
	e.stats.invalidationErrors.Add(1)
	if answered(err) {
		if derr := e.drop(ctx, tables); derr != nil {
			err = fmt.Errorf("%w; deleting their generations failed too: %w", err, derr)
		}
	}
	e.dirty.mark(tables, a)
	e.limitedf("invalidate", levelError, "gormflight: could not invalidate %v, serving them uncached until Redis answers: %v", tables, err)
	select {
	case e.retry <- struct{}{}:
	default:
	}
	return fmt.Errorf("gormflight: invalidate %v: %w", tables, err)
}

// drop deletes the generations of tables, for a Redis that refused their
// bump: every entry stamped with a generation is then stale, since a
// missing generation matches no stamp, and the value gen_read.lua creates
// next starts above every value the key had. Redis accepts DEL when it is
// out of memory, and also refuses new generations then, so until it
// accepts writes again reads of the tables go to the database, uncached.
func (e *engine) drop(ctx context.Context, tables []string) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	for _, t := range tables {
		pipe.Del(ctx, e.genKey(t))
	}
	return e.guard(func() error { _, err := pipe.Exec(ctx); return err })
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
		ends := make(map[string][]string, len(marks))
		for t, m := range marks {
			ends[t] = m.tokens
		}
		if err := e.bump(context.Background(), tables, ends); err != nil {
			if answered(err) {
				_ = e.drop(context.Background(), tables) // in case the writer's failed
			}
			t.Reset(e.cfg.LockExpiry / 4)
			continue
		}
		e.stats.invalidations.Add(uint64(len(tables)))
		e.dirty.clear(marks)
		e.logf(context.Background(), levelWarn, "gormflight: invalidated %v; caching them again", tables)
	}
}

// dirtySet holds tables whose invalidation has not reached Redis yet, with
// the tokens of the announcements their bump must end. Each mark has a
// sequence number, so a retry clears only the marks it covered.
type dirtySet struct {
	n   atomic.Int64 // len(m), read without the lock on every cached query
	mu  sync.Mutex
	seq uint64
	m   map[string]dirtyMark
}

type dirtyMark struct {
	seq    uint64
	tokens []string
}

func (d *dirtySet) mark(tables []string, a announcement) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = make(map[string]dirtyMark)
	}
	for _, t := range tables {
		d.seq++
		m := d.m[t]
		m.seq = d.seq
		if a.has(t) && !a.held {
			m.tokens = append(slices.Clip(m.tokens), a.token)
		}
		d.m[t] = m
	}
	d.n.Store(int64(len(d.m)))
}

// snapshot returns the dirty tables, sorted, and their marks.
func (d *dirtySet) snapshot() ([]string, map[string]dirtyMark) {
	d.mu.Lock()
	defer d.mu.Unlock()
	marks := maps.Clone(d.m)
	return slices.Sorted(maps.Keys(marks)), marks
}

// clear removes the marks of a snapshot that no newer mark replaced, and
// from newer marks the tokens the snapshot's bump ended.
func (d *dirtySet) clear(marks map[string]dirtyMark) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for t, done := range marks {
		cur := d.m[t]
		if cur.seq == done.seq {
			delete(d.m, t)
			continue
		}
		cur.tokens = slices.DeleteFunc(slices.Clone(cur.tokens), func(tok string) bool {
			return slices.Contains(done.tokens, tok)
		})
		d.m[t] = cur
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
