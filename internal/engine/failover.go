package engine

import (
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Operations that outlast a failover (Config.WaitReplicas, FailoverWait).
//
// A client with WaitReplicas expects failovers, and any failure may be
// one: the replicas did not acknowledge (replicas.go), a cluster node
// redirected (its node's pipeline does not follow MOVED), or the master
// is dead or cut off and its replica not promoted yet. Going on without
// Redis then costs:
//   - a write's announcement, that the write commits unannounced: readers
//     falling back to the database meanwhile see its rows, and then, from
//     the promoted replica, the entries from before it (reads going back
//     in time);
//   - a lookup or a lock, a load by every instance (the herd the flight
//     prevents), where waiting finds the entry on the promoted replica.
//
// So these operations are tried again, each for up to FailoverWait from
// its own first failure (a flight, also at most MaxWait; Redis answering
// it ends its failures). An operation that used all of it without success
// (or a flight that reached MaxWait so) means Redis stayed down, not a
// failover: from then on, operations that
// fail go on without Redis at once, as without WaitReplicas, until any
// Redis operation of the Engine succeeds (guard). Failures that retries
// outlast (a stall, a slow command, a failover that ended in time) change
// nothing for the next operation.

// persist runs attempt, a write's announcement or bump, and repeats it
// when it failed without an answer from Redis: while outlast allows, and
// otherwise once more if once. Both are safe to repeat. The bound holds a
// transaction whose announcement it is open meanwhile (the announcement is
// made just before the commit): that is the price of not committing
// before the new master has it.
func (e *Engine) persist(once bool, attempt func() error) error {
	err := attempt()
	if err == nil || answered(err) && !redirected(err) && !e.failingOver(err) {
		return err
	}
	// Not stopped by Close: a write that gave up would commit unannounced.
	var o outlasting
	for e.outlast(err, &o, nil) {
		if err = attempt(); err == nil {
			return nil
		}
	}
	if once && o.tries == 0 {
		err = attempt()
	}
	return err
}

// outlasting is one operation's state through a failover: when it first
// failed, its pause before the next try, and how many it made.
type outlasting struct {
	first time.Time
	delay time.Duration
	tries int
}

// outlast pauses an operation that failed with err, and reports whether
// it may try again because Redis may be failing over (see the top of this
// file). An answer from Redis other than a failover's (an ACL, out of
// memory, a script error) is final. The pause starts at 10 ms and doubles
// up to persistRetryMax; stop (nil: never) ends it with false.
func (e *Engine) outlast(err error, o *outlasting, stop <-chan struct{}) bool {
	if !e.failingOver(err) {
		return false
	}
	if o.tries == 0 && e.down.Load() {
		return false // Redis stayed down: not a failover to wait for
	}
	now := time.Now()
	if o.first.IsZero() {
		o.first = now
	}
	left := o.first.Add(e.cfg.FailoverWait).Sub(now)
	if left <= 0 {
		// Replicas that did not acknowledge in time: the master answered.
		if !errors.Is(err, errUnreplicated) {
			e.down.Store(true)
		}
		return false
	}
	// WAIT paces the unacknowledged; this, the refused and the unreachable
	// (an open breaker fails at once, and lets a probe through after
	// BreakerCooldown).
	o.delay = min(max(2*o.delay, shardRetryMin), persistRetryMax)
	t := time.NewTimer(min(o.delay, left))
	defer t.Stop()
	select {
	case <-t.C:
		o.tries++
		return true
	case <-stop:
		return false
	}
}

// persistRetryMax is the longest pause between two tries of an operation
// that outlasts a failover.
const persistRetryMax = 100 * time.Millisecond

// failingOver reports whether err, which failed an operation, may be a
// failover that the operation should outlast: with WaitReplicas, no
// answer from Redis (a refused or dropped connection, a timeout, an open
// breaker), or a failover's answer. A client closed by its owner is not.
func (e *Engine) failingOver(err error) bool {
	return e.cfg.WaitReplicas > 0 && err != nil && !errors.Is(err, redis.ErrClosed) &&
		(!answered(err) || failoverReply(err))
}

// failoverReply reports whether err is a node's answer that its keys are
// served elsewhere now or not yet (redirected), or that it cannot serve
// them until a master is back: a node still loading its data, a replica
// whose master is down, a master short of the replicas min-replicas-to-write
// asks for.
func failoverReply(err error) bool {
	return redirected(err) || replyStarts(err, "LOADING ", "MASTERDOWN ", "NOREPLICAS ")
}
