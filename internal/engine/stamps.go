package engine

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/gormflight/gormflight/internal/rowcodec"
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
// key (<prefix>:g:{<table>}:w), and the bump ends the Announcement. While a
// table has writers, its entries are not served and fills do not store: in
// the gap between COMMIT and bump a miss already reads the new rows from the
// database, and a hit on an older entry must not answer after it. A reader
// that meets a write waits for its bump, which the bump pushes on the
// table's channel (<prefix>:g:{<table>}:b), and then goes through the
// cluster-wide flight: one query per write, not one per instance.
//
// A write whose commit the plugin cannot follow (a transaction begun
// outside GORM's view) announces itself on the held key (<prefix>:g:{<table>}:h)
// instead: its bump cannot tell when it commits, so the Announcement stands
// until its deadline, and readers meanwhile read the database uncached
// rather than wait that long.

// Stamp states of a table with a write in progress (lua/gen_read.lua).
var (
	// errWriting: a write that ends with a bump is committing; wait for it.
	errWriting = errors.New("gormflight: a write to the table is committing")
	// errHeld: a write whose commit cannot be followed holds the table; read
	// the database without storing.
	errHeld = errors.New("gormflight: a write to the table holds its Announcement")
)

// found is what a lookup found: an entry to serve, or why there is none.
type found struct {
	entry *rowcodec.Entry
	// changed: only the head was fetched, and the entry it names is not
	// the memo's: look again for all of it.
	changed bool
	// left is the entry's time to live in Redis, and head and meta those
	// of its stored value, for refresh-ahead.
	left time.Duration
	head string
	meta storedMeta
	// stale: the entry is past its TTL, served because the query accepts
	// it (StaleFor); its refresh starts at once.
	stale bool
	// writing lists the tables with a write in progress that ends with a
	// bump: wait for it.
	writing []string
	// held: a table has a write whose commit cannot be followed.
	held bool
	// recheck: a compact lookup found a write in progress without telling
	// which: look again, per table.
	recheck bool
}

// lookup reads the key's entry, the generations of its tables and their
// writes in progress in one round trip (Redis Cluster: one pipeline per
// node, in parallel). An entry is only returned if it is current and no
// write to its tables is in progress; a miss (no entry, a stale one, one
// that cannot be decoded) returns no entry and no error.
//
// When the memo holds the key's entry, the lookup fetches only the head of
// the stored value; if it changed, a second round trip fetches all of it.
func (e *Engine) lookup(ctx context.Context, req request) (found, error) {
	head, _ := e.memo.head(req.keys.entry)
	f, err := e.lookupOnce(ctx, req, head)
	if err == nil && f.changed {
		f, err = e.lookupOnce(ctx, req, "")
	}
	return f, err
}

// lookupOnce is one lookup's round trip: it fetches the key's stored
// value, or only as many bytes as head when head is not "".
func (e *Engine) lookupOnce(ctx context.Context, req request, head string) (found, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(parent, e.cfg.RedisTimeout)
	defer func() { cancel() }()
	var f found
	err := e.guard(func() error {
		recovered, u := false, unrecovered{}
		for compact := e.compact.Load(); ; {
			pipe := e.rdb.Pipeline()
			c := e.queueLookup(ctx, pipe, req, head, compact)
			_, _ = pipe.Exec(ctx)
			var err error
			f, err = c.result(e, req)
			switch {
			case compact && e.crossSlot(err):
				compact = false // a node in cluster mode: per table from now on
			case e.markRefused(err):
				// An ACL refused SCRIPT EXISTS: EVALSHA from now on.
			case !recovered && errors.As(err, &u):
				// A server restarted or failed over: recover it, once,
				// then look again with a time of its own.
				if err := e.recover(ctx, u.keys); err != nil {
					return err
				}
				recovered = true
				cancel()
				ctx, cancel = context.WithTimeout(parent, e.cfg.RedisTimeout)
			case err != nil || !f.recheck:
				return err
			default:
				compact = false
			}
		}
	})
	if err != nil {
		return found{}, err
	}
	return f, nil
}

// lookupCmds are a lookup's commands, queued on a pipeline that may carry
// others (the lock's, see load).
//
// The tables' keys are read per table, since in Redis Cluster each table's
// keys have a slot of their own; or, when compact (a single Redis node,
// where a command may name keys of several tables), in two commands
// whatever the number of tables: one EXISTS of every writers and held key,
// then one MGET of every generation. A compact lookup that finds a write
// in progress reports recheck: only a lookup per table tells which tables
// are being written, and how.
type lookupCmds struct {
	head    string           // the memo's head of the stored value, or ""
	get     *redis.StringCmd // the value, or its first len(head) bytes
	ttl     *redis.DurationCmd
	gens    []*redis.StringCmd
	writers []*redis.IntCmd // per table: its writers key, then its held key
	// compact: anyWriter counts the writers and held keys that exist,
	// allGens reads the generations.
	anyWriter *redis.IntCmd
	allGens   *redis.SliceCmd
	// marks are the marks of the nodes of the keys marked (restart.go).
	marks  []redis.Cmder
	marked []string
	// markBuf and keyBuf hold them on one server, where there is one.
	markBuf [1]redis.Cmder
	keyBuf  [1]string
}

func (e *Engine) queueLookup(ctx context.Context, pipe redis.Pipeliner, req request, head string, compact bool) *lookupCmds {
	c := &lookupCmds{head: head}
	e.queueMark(ctx, pipe, c, req.keys.entry, compact)
	if head == "" {
		c.get = pipe.Get(ctx, req.keys.entry)
	} else {
		c.get = pipe.GetRange(ctx, req.keys.entry, 0, int64(len(head)-1))
	}
	// When the entry goes: for the memo, and for refresh-ahead.
	c.ttl = pipe.PTTL(ctx, req.keys.entry)
	e.queueTables(ctx, pipe, req, c, compact)
	return c
}

// crossSlot reports whether err is Redis refusing a command whose keys are
// in several cluster slots, and then turns compact lookups off.
func (e *Engine) crossSlot(err error) bool {
	if err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
		return false
	}
	e.compact.Store(false)
	return true
}

// queueGenerations queues the reads of the generations of req's tables and
// of their writes in progress, without the entry: current then tells
// whether an entry stamped with a given stamp would be served.
func (e *Engine) queueGenerations(ctx context.Context, pipe redis.Pipeliner, req request) *lookupCmds {
	c := new(lookupCmds)
	e.queueTables(ctx, pipe, req, c, e.compact.Load())
	return c
}

// current reports whether the read generations are those of stamp, with
// no write in progress.
func (c *lookupCmds) current(stamp string) bool {
	if c.checkMarks() != nil {
		return false
	}
	if c.anyWriter != nil {
		if n, err := c.anyWriter.Result(); err != nil || n > 0 {
			return false
		}
	}
	for _, w := range c.writers {
		if n, err := w.Result(); err != nil || n > 0 {
			return false
		}
	}
	gens, err := c.generations()
	return err == nil && stampMatches(stamp, gens)
}

func (e *Engine) queueTables(ctx context.Context, pipe redis.Pipeliner, req request, c *lookupCmds, compact bool) {
	if compact {
		e.queueMark(ctx, pipe, c, req.keys.entry, true) // one server: one mark
		keys := make([]string, 0, 3*len(req.tables))
		for _, t := range req.tables {
			k := e.copyKeys(t, req.copy)
			keys = append(keys, k.writers, k.held)
		}
		c.anyWriter = pipe.Exists(ctx, keys...) // writers first: see below
		keys = keys[:0]
		for _, t := range req.tables {
			keys = append(keys, e.copyKeys(t, req.copy).gen)
		}
		c.allGens = pipe.MGet(ctx, keys...)
		return
	}
	c.gens = make([]*redis.StringCmd, len(req.tables))
	c.writers = make([]*redis.IntCmd, 2*len(req.tables))
	for i, t := range req.tables {
		// Writers first: a bump (atomic: generation up, Announcement
		// ended) that lands between the two reads then shows as a writer
		// or as a new generation, never as neither.
		k := e.copyKeys(t, req.copy)
		e.queueMark(ctx, pipe, c, k.gen, false)
		c.writers[2*i] = pipe.Exists(ctx, k.writers)
		c.writers[2*i+1] = pipe.Exists(ctx, k.held)
		c.gens[i] = pipe.Get(ctx, k.gen)
	}
}

// result is what the executed commands found, or the Redis error that
// kept them from knowing.
func (c *lookupCmds) result(e *Engine, req request) (found, error) {
	var f found
	if err := c.checkMarks(); err != nil {
		return found{}, err
	}
	if err := c.writes(req, &f); err != nil {
		return found{}, err
	}
	gens, err := c.generations()
	if err != nil {
		return found{}, err
	}
	data, err := c.get.Bytes()
	switch {
	case errors.Is(err, redis.Nil) || c.head != "" && len(data) == 0: // GETRANGE of no key: ""
		return f, nil
	case err != nil:
		return found{}, err
	}
	if f.held || len(f.writing) > 0 || f.recheck {
		return f, nil
	}
	var expires time.Time
	if c.ttl != nil && c.ttl.Val() > 0 {
		f.left = c.ttl.Val()
		expires = time.Now().Add(f.left)
	}
	if c.head == "" {
		f.entry, f.head, f.meta = e.current(req, data, gens, expires)
		return f, nil
	}
	// Only the head was fetched: the remembered entry, if the value is
	// still the one it was decoded from and its stamp is current.
	if string(data) != c.head {
		f.changed = true // a new value: fetch it all
		return f, nil
	}
	stamp, meta, _ := strings.Cut(c.head, string(StampSep))
	if !stampMatches(stamp, gens) {
		return f, nil // stale
	}
	f.entry = e.memo.get(req.keys.entry, c.head, expires)
	f.changed = f.entry == nil // the memo let it go since: fetch it all
	f.head = c.head
	f.meta, _ = parseMeta(strings.TrimSuffix(meta, string(StampSep)))
	return f, nil
}

// current returns the entry in data, the stored value of req's key, if its
// stamp lists exactly the generations gens read; nil for a stale entry and
// for one that cannot be decoded. expires is when Redis drops the entry.
func (e *Engine) current(req request, data []byte, gens []string, expires time.Time) (*rowcodec.Entry, string, storedMeta) {
	// An entry over the cap was not stored by an instance configured like
	// this one (a planted value, or another MaxEntrySize): not decoded.
	head, stamp, body, meta, ok := splitStored(data)
	if !ok || e.cfg.MaxEntrySize > 0 && len(data) > e.cfg.MaxEntrySize {
		e.stats.DecodeErrors.Add(1)
		return nil, "", storedMeta{}
	}
	if !stampMatches(stamp, gens) {
		return nil, "", storedMeta{}
	}
	ent, err := e.memo.decode(req.keys.entry, string(head), body, expires)
	if err != nil {
		e.stats.DecodeErrors.Add(1)
		return nil, "", storedMeta{}
	}
	return ent, string(head), meta
}

// writes records in f the writes in progress the commands found: per
// table, or, compact, whether there is any.
func (c *lookupCmds) writes(req request, f *found) error {
	if c.anyWriter != nil {
		n, err := c.anyWriter.Result()
		f.recheck = n > 0
		return err
	}
	for i := range c.gens {
		w, err := c.writers[2*i].Result()
		if err != nil {
			return err
		}
		h, err := c.writers[2*i+1].Result()
		if err != nil {
			return err
		}
		if w > 0 {
			f.writing = append(f.writing, req.tables[i])
		}
		f.held = f.held || h > 0
	}
	return nil
}

// generations returns the generations read, in the order of the tables;
// "" for a missing one.
func (c *lookupCmds) generations() ([]string, error) {
	if c.allGens != nil {
		vals, err := c.allGens.Result()
		if err != nil {
			return nil, err
		}
		gens := make([]string, len(vals))
		for i, v := range vals {
			gens[i], _ = v.(string) // nil: missing
		}
		return gens, nil
	}
	gens := make([]string, len(c.gens))
	for i, g := range c.gens {
		v, err := g.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		gens[i] = v
	}
	return gens, nil
}

// stampMatches reports whether stamp lists exactly the generations read,
// in order. A missing generation ("") matches nothing.
func stampMatches[T string | []byte](stamp T, gens []string) bool {
	for i, v := range gens {
		if v == "" {
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

// queueStamp queues the reads of the stamp of a fill about to run its
// query: the current generations of tables, creating missing ones (see
// lua/gen_read.lua), from the copy of their keys req reads. stampOf reads
// the answers.
func (e *Engine) queueStamp(ctx context.Context, pipe redis.Pipeliner, req request) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(req.tables))
	for i, t := range req.tables {
		k := e.copyKeys(t, req.copy)
		cmds[i] = genReadScript.Eval(ctx, pipe, []string{k.gen, k.writers, k.held})
	}
	return cmds
}

// stampOf returns the stamp queueStamp's commands read. It fails with
// errHeld or errWriting while a write to one of the tables is committing.
func stampOf(cmds []*redis.Cmd) (string, error) {
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
