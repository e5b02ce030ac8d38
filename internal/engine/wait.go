package engine

import (
	"context"
	"time"
)

// waits is what a flight waits with: its subscriptions and its timers,
// made when it first waits (a hit waits for nothing).
type waits struct {
	w       *waiter     // nil until the flight waits on a channel (on)
	poll    *time.Timer // the fallback re-check, for lost messages and dead holders
	maxWait *time.Timer // Config.MaxWait, over the whole flight (from until)
	// writes bounds the wait for writes in progress: a write that has not
	// ended within LockExpiry of the flight meeting it (a writer that died,
	// or whose bump cannot reach Redis) sends the flight to the database,
	// as a dead lock holder's lock would expire. nil while no write is met.
	writes *time.Timer
	polled bool // the last wake was the fallback timer's, not a message
	// outlasting: the flight's Redis operations that failed while Redis
	// may be failing over (outlast), which it tries again until its
	// MaxWait ends (until, set by its first look).
	outlasting outlasting
	until      time.Time
	counted    bool // the flight was counted in Stats.Waits
}

// on registers the flight on channel, whose messages wake its wait.
func (ws *waits) on(e *Engine, channel string) {
	if ws.w == nil {
		ws.w = e.hub.newWaiter()
	}
	ws.w.add(channel)
}

// outlast is Engine.outlast for a flight's Redis operation, tried at
// tried, that failed with err: within the flight's MaxWait, and not once
// the Engine closes. The flight's failures start when the first failed
// operation was tried. A flight that reaches its MaxWait after failing
// for as long as it may wait (FailoverWait, or MaxWait if shorter) waited
// in vain, as an operation whose FailoverWait ran out: Redis is taken as
// down.
func (ws *waits) outlast(e *Engine, err error, tried time.Time) bool {
	if ws.outlasting.first.IsZero() {
		ws.outlasting.first = tried
	}
	if now := time.Now(); !now.Before(ws.until) {
		if e.failingOver(err) && now.Sub(ws.outlasting.first) >= min(e.cfg.FailoverWait, e.cfg.MaxWait) {
			e.down.Store(true)
		}
		return false
	}
	return e.outlast(err, &ws.outlasting, e.done)
}

// answered ends the flight's failures: Redis answered it.
func (ws *waits) answered() { ws.outlasting = outlasting{} }

func (ws *waits) stop() {
	if ws.w != nil {
		ws.w.stop()
	}
	for _, t := range []*time.Timer{ws.poll, ws.maxWait, ws.writes} {
		if t != nil {
			t.Stop()
		}
	}
}

// wait blocks the flight until it should look again: a message or
// subscription confirmation on a channel it waits on, or the fallback
// timer. writing tells whether it waits for writes in progress. It
// reports done, with the flight's answer, when the flight must stop
// waiting: MaxWait or the writes' bound passed, the plugin closes, or the
// holder did not store its result.
func (e *Engine) wait(ctx context.Context, req request, ws *waits, writing bool) (*flightResult, bool, error) {
	switch {
	case writing && ws.writes == nil:
		ws.writes = time.NewTimer(e.writeStand())
	case !writing && ws.writes != nil:
		ws.writes.Stop() // the writes it met have ended
		ws.writes = nil
	}
	if !ws.counted {
		ws.counted = true
		e.stats.Waits.Add(1)
	}
	// Subscribed before this wait: the subscription's confirmation wakes
	// it for a re-check, so nothing published since the look is missed.
	if ws.poll == nil {
		ws.poll = time.NewTimer(e.cfg.LockExpiry / 2)
		ws.maxWait = time.NewTimer(time.Until(ws.until))
	} else {
		ws.poll.Reset(e.cfg.LockExpiry / 2)
	}
	fi := flightInfoOf(ctx)
	fi.waiting()
	since := fi.now()
	select {
	case <-ws.w.wake:
		fi.waited(since)
		ws.polled = false
	case <-ws.poll.C:
		fi.waited(since)
		// No message: a holder or a writer may be dead (its lock or
		// Announcement then expires) or a message was lost. Look again.
		ws.polled = true
	case <-timerC(ws.writes):
		fi.waited(since)
		e.Warnf(LogWait, "gormflight: a write to %v has not ended within %v; reading the database", req.tables, e.writeStand())
		res, err := e.fallback(ctx, req)
		return res, true, err
	case <-ws.maxWait.C:
		fi.waited(since)
		e.stats.WaitTimeouts.Add(1)
		e.Warnf(LogWait, "gormflight: waited %v for another instance's result or a write's end", e.cfg.MaxWait)
		if e.cfg.FailOnWaitTimeout {
			return nil, true, ErrWaitTimeout
		}
		res, err := e.fallback(ctx, req)
		return res, true, err
	case <-e.done:
		fi.waited(since)
		res, err := e.fallback(ctx, req)
		return res, true, err
	}
	if ws.w.isUncached() {
		res, err := e.fallback(ctx, req)
		return res, true, err
	}
	return nil, false, nil
}

// timerC is t's channel, or nil (never ready) for no timer.
func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}
