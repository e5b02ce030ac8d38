package engine

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Announcement is one write's mark on the writers (or held) keys of the
// tables it is about to commit (lua/write_begin.lua), under a token of its
// own.
type Announcement struct {
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

// has reports whether the Announcement marked table.
func (a Announcement) has(table string) bool {
	_, found := slices.BinarySearch(a.tables, table)
	return found
}

// ends returns, per table, the tokens a bump must remove to end a: none
// for a held Announcement.
func (a Announcement) ends() map[string][]string {
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
// Announcement). If Redis fails the write goes on and its bump decides;
// the Announcement still names every table, so that the bump ends whatever
// Redis applied before the failure was seen (a stall past RedisTimeout
// leaves the marks in place with no reply), instead of leaving them to
// keep the tables uncached on every instance for Config.LoadTimeout. With
// Config.WaitReplicas, an announcement the replicas did not acknowledge is
// repeated for up to FailoverWait (replicas.go).
func (e *Engine) Announce(ctx context.Context, tables []string, held bool) Announcement {
	if len(tables) == 0 || e.rdb == nil {
		return Announcement{}
	}
	a := Announcement{token: rand.Text(), held: held}
	ctx = context.WithoutCancel(ctx)
	copies := e.allCopies(tables)
	a.tables = tables
	_ = e.persist(false, func() error {
		ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
		defer cancel()
		return e.each(ctx, copies, func(pipe redis.Pipeliner, i int) {
			key := copies[i].keys.writers
			if held {
				key = copies[i].keys.held
			}
			writeBeginScript.Eval(ctx, pipe, []string{key}, a.token, e.cfg.LoadTimeout.Milliseconds())
		})
	})
	return a
}

// tableCopy is one copy of one table's keys.
type tableCopy struct {
	table string
	keys  tableKeys
}

// allCopies lists every copy of the keys of tables, table by table.
func (e *Engine) allCopies(tables []string) []tableCopy {
	all := make([]tableCopy, 0, len(tables)*e.cfg.KeyCopies)
	for _, t := range tables {
		for i := range e.cfg.KeyCopies {
			all = append(all, tableCopy{table: t, keys: e.copyKeys(t, i)})
		}
	}
	return all
}

// each runs queue(pipe, i) for every copy i in one round trip, waiting for
// the replicas when Config.WaitReplicas asks (replicas.go).
func (e *Engine) each(ctx context.Context, copies []tableCopy, queue func(pipe redis.Pipeliner, i int)) error {
	if e.cfg.WaitReplicas > 0 {
		return e.replicated(ctx, copies, queue)
	}
	pipe := e.rdb.Pipeline()
	for i := range copies {
		queue(pipe, i)
	}
	return e.guard(func() error { _, err := pipe.Exec(ctx); return err })
}

// bump advances the generations of tables in one round trip, ends the
// announcements whose tokens ends lists per table, and wakes the readers
// waiting for them. It is safe to repeat. gens are the new generations,
// by table, when it succeeded.
func (e *Engine) bump(ctx context.Context, tables []string, ends map[string][]string) (copies []tableCopy, gens []*redis.Cmd, err error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	copies = e.allCopies(tables)
	gens = make([]*redis.Cmd, len(copies))
	queue := func(pipe redis.Pipeliner, i int) {
		c := copies[i]
		args := make([]any, 1, 1+len(ends[c.table]))
		args[0] = e.bumpChannel(c.table)
		for _, tok := range ends[c.table] {
			args = append(args, tok)
		}
		gens[i] = genBumpScript.Eval(ctx, pipe, []string{c.keys.gen, c.keys.writers, c.keys.held}, args...)
	}
	return copies, gens, e.each(ctx, copies, queue)
}

// invalidate bumps tables after a write has committed, before the write
// returns to its caller, ending its Announcement a. If Redis cannot be
// reached it retries once (a bump is idempotent), and with
// Config.WaitReplicas a bump the replicas did not acknowledge for up to
// FailoverWait (replicas.go); if that fails too, the
// tables are marked dirty: this instance stops serving cached reads of them,
// and a background retrier bumps them, and ends a, until Redis answers.
// Until then a's Announcement keeps every instance from serving the tables'
// entries (for at most Config.LoadTimeout, its lifetime). A Redis that
// answers but refuses the bump (an ACL, a read-only replica, a full Redis
// that refuses the script) has the tables' generations deleted instead
// (see drop).
func (e *Engine) Invalidate(ctx context.Context, tables []string, a Announcement) error {
	if e.rdb == nil {
		return fmt.Errorf("%w: the Engine was not made by New", ErrInvalidRequest)
	}
	if len(tables) == 0 {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	ends := a.ends()
	if e.local != nil {
		// This instance reads its own writes: its near cache stops serving
		// the tables now, and again once the bump is done, ending what a
		// read that ran before the bump kept meanwhile.
		e.local.invalidate(tables)
		defer e.local.invalidate(tables)
	}
	var copies []tableCopy
	var gens []*redis.Cmd
	err := e.persist(true, func() (err error) {
		copies, gens, err = e.bump(ctx, tables, ends)
		return err
	})
	if err == nil && e.local != nil {
		// Its messages would end what this instance reads after the bump,
		// which holds the write already.
		for i, c := range copies {
			// A string, or an integer when the script took INCR.
			switch g := gens[i].Val().(type) {
			case string:
				e.local.mine(c.table, g)
			case int64:
				e.local.mine(c.table, strconv.FormatInt(g, 10))
			}
		}
	}
	if err == nil {
		e.stats.Invalidations.Add(uint64(len(tables)))
		return nil
	}
	e.stats.InvalidationErrors.Add(1)
	if answered(err) {
		if derr := e.drop(ctx, tables); derr != nil {
			err = fmt.Errorf("%w; deleting their generations failed too: %w", err, derr)
		}
	}
	e.dirty.mark(tables, a)
	e.errorf(LogInvalidate, "gormflight: could not invalidate %v, serving them uncached until Redis answers: %v", tables, err)
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
func (e *Engine) drop(ctx context.Context, tables []string) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	pipe := e.rdb.Pipeline()
	for _, c := range e.allCopies(tables) {
		pipe.Del(ctx, c.keys.gen)
	}
	return e.guard(func() error { _, err := pipe.Exec(ctx); return err })
}

// Empty reports whether a marks no table.
func (a Announcement) Empty() bool { return len(a.tables) == 0 }

// Tables returns the tables a marked, sorted. They are shared: do not
// modify them.
func (a Announcement) Tables() []string { return a.tables }

// Held reports whether a was announced on the held keys (see Announce).
func (a Announcement) Held() bool { return a.held }
