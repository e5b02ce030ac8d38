package engine

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// retryDirty runs until done, bumping dirty tables whenever asked to and
// every RetryInterval while any remain.
func (e *Engine) retryDirty() {
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
		if _, _, err := e.bump(context.Background(), tables, ends); err != nil {
			if answered(err) {
				_ = e.drop(context.Background(), tables) // in case the writer's failed
			}
			t.Reset(e.cfg.LockExpiry / 4)
			continue
		}
		e.stats.Invalidations.Add(uint64(len(tables)))
		e.dirty.clear(marks)
		e.log.always(LevelWarn, "gormflight: invalidated %v; caching them again", tables)
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

func (d *dirtySet) mark(tables []string, a Announcement) {
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
