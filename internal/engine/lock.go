package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redsync/redsync/v4"
	redsyncredis "github.com/go-redsync/redsync/v4/redis"
	"github.com/redis/go-redis/v9"
)

// The lock is an efficiency lock (redsync over one pool): it makes one
// instance the loader of a key. A rare double holder (a holder paused past
// its expiry) costs one extra query, never wrong data, because correctness
// rests on the generation stamps, not on the lock.

// errLockTaken reports that another instance holds the key's lock.
var errLockTaken = errors.New("gormflight: lock held by another instance")

// tryLock makes one attempt at the key's lock. It returns errLockTaken when
// another instance holds it, and a Redis error when Redis failed. along,
// when not nil, queues commands that go to Redis in the same round trip,
// after the SET NX, whether it wins or not.
func (e *Engine) tryLock(ctx context.Context, k keys, along func(context.Context, redis.Pipeliner)) (*redsync.Mutex, error) {
	m := e.locks.NewMutex(k.lock,
		redsync.WithExpiry(e.cfg.LockExpiry),
		redsync.WithTries(1),
		// The caller bounds the attempt with Config.RedisTimeout.
		redsync.WithTimeoutFactor(1),
	)
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RedisTimeout)
	defer cancel()
	err := e.guard(func() error {
		err := m.TryLockContext(context.WithValue(ctx, attemptKey{}, &lockAttempt{rdb: e.rdb, along: along}))
		// Taken is Redis's answer to the SETNX, even if the context ran
		// out just after it.
		var taken *redsync.ErrTaken
		var rerr *redsync.RedisError
		if errors.As(err, &taken) {
			return errLockTaken
		}
		if err == nil || errors.As(err, &rerr) || ctx.Err() != nil {
			return err
		}
		return errLockTaken
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// keepLock extends m every third of its expiry until the returned stop is
// called, so a long query keeps the lock and a dead holder loses it within
// one expiry. stop waits for the extender to return; calling it again does
// nothing.
func (e *Engine) keepLock(m *redsync.Mutex) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(e.cfg.LockExpiry / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RedisTimeout)
				lost := false
				_ = e.guard(func() error {
					ok, err := m.ExtendContext(ctx)
					if ok || !redisFailed(err) {
						// Not extended without a Redis failure: the lock
						// expired or another instance holds it now. That is
						// Redis's answer, not an outage; extending again
						// cannot help. The fill goes on: correctness rests on
						// the generation stamps, not on the lock.
						lost = !ok
						return nil
					}
					return err
				})
				cancel()
				if lost {
					return
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// unlock releases m on a context of its own: a cancelled caller must not
// leave the lock to expire.
func (e *Engine) unlock(m *redsync.Mutex) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RedisTimeout)
	defer cancel()
	_ = e.guard(func() error {
		if _, err := m.UnlockContext(ctx); redisFailed(err) {
			return err
		}
		// Unlocked, or the lock had expired or passed to another instance.
		return nil
	})
}

// redisFailed reports whether a redsync error means that Redis could not be
// reached or failed, as opposed to answering that the lock is taken, gone or
// could not be extended.
func redisFailed(err error) bool {
	if err == nil {
		return false
	}
	var rerr *redsync.RedisError
	return errors.As(err, &rerr) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// lockPool is redsync's pool over the Redis client, with two changes for
// the connections of a tryLock; the lock itself (its token, expiry,
// extension and release) stays redsync's.
//   - After an attempt Redis answered "taken" (SETNX did not set), redsync
//     releases the lock it did not get: a second round trip, under the
//     attempt's deadline, that can only do nothing, since the key holds
//     another value. With a round trip over half of RedisTimeout it times
//     out, costing the attempt and its connection, so no instance could
//     wait for another's result. lockPool answers that release itself.
//   - The SETNX carries the attempt's other commands in its round trip (a
//     miss's second look and its stamp), so that a loader costs one round
//     trip fewer.
type lockPool struct{ redsyncredis.Pool }

// lockAttempt marks the context of one tryLock: the connections redsync
// takes for it are lockConns sharing it.
type lockAttempt struct {
	taken atomic.Bool
	rdb   redis.UniversalClient
	along func(context.Context, redis.Pipeliner) // commands for the SETNX's round trip
}

type attemptKey struct{}

func (p lockPool) Get(ctx context.Context) (redsyncredis.Conn, error) {
	c, err := p.Pool.Get(ctx)
	a, _ := ctx.Value(attemptKey{}).(*lockAttempt)
	if err != nil || a == nil {
		return c, err
	}
	return lockConn{Conn: c, ctx: ctx, attempt: a}, nil
}

type lockConn struct {
	redsyncredis.Conn
	ctx     context.Context
	attempt *lockAttempt
}

// SetNX sets the lock as redsync's own connection does (SET NX PX), with
// the attempt's other commands after it in one pipeline.
func (c lockConn) SetNX(name, value string, expiry time.Duration) (bool, error) {
	var ok bool
	var err error
	if c.attempt.along == nil {
		ok, err = c.Conn.SetNX(name, value, expiry)
	} else {
		pipe := c.attempt.rdb.Pipeline()
		set := pipe.SetNX(c.ctx, name, value, expiry)
		c.attempt.along(c.ctx, pipe)
		_, _ = pipe.Exec(c.ctx) // each command keeps its own answer
		ok, err = set.Result()
	}
	if err == nil && !ok {
		c.attempt.taken.Store(true)
	}
	return ok, err
}

// Eval answers the release of a lost attempt as Redis would: nothing
// deleted (0). Every other script goes to Redis.
func (c lockConn) Eval(script *redsyncredis.Script, keysAndArgs ...any) (any, error) {
	if c.attempt.taken.Load() {
		return int64(0), nil
	}
	return c.Conn.Eval(script, keysAndArgs...)
}
