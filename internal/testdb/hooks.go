package testdb

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// HoldHook is a redis.Hook that holds, once armed, the next round trip
// (a command or a pipeline) that its match accepts: it closes Held, then
// waits for Release. A test holds a flight at a known step with it, and
// lets it go once the other callers are where it wants them.
type HoldHook struct {
	match func(cmds []redis.Cmder) bool
	armed atomic.Bool
	held  chan struct{}
	let   chan struct{}
	once  sync.Once
}

// NewHoldHook returns an unarmed hook that lets go at the latest when the
// test ends, so that a failed test does not leave a flight held.
func NewHoldHook(t testing.TB, match func(cmds []redis.Cmder) bool) *HoldHook {
	h := &HoldHook{match: match, held: make(chan struct{}), let: make(chan struct{})}
	t.Cleanup(h.Release)
	return h
}

// Arm makes the hook hold the next round trip its match accepts.
func (h *HoldHook) Arm() { h.armed.Store(true) }

// Held is closed once the hook holds a round trip.
func (h *HoldHook) Held() <-chan struct{} { return h.held }

// Release lets the held round trip go on; it may be called more than once.
func (h *HoldHook) Release() { h.once.Do(func() { close(h.let) }) }

func (h *HoldHook) hold(cmds []redis.Cmder) {
	if h.match(cmds) && h.armed.CompareAndSwap(true, false) {
		close(h.held)
		<-h.let
	}
}

func (h *HoldHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *HoldHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.hold([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (h *HoldHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.hold(cmds)
		return next(ctx, cmds)
	}
}

// LooksUp matches a flight's look into Redis: the mark that tells the
// server was recovered (internal/engine/restart.go), the entry, its TTL,
// then its tables' generations, in one pipeline.
func LooksUp(cmds []redis.Cmder) bool {
	return len(cmds) >= 3 && (cmds[0].Name() == "script" || cmds[0].Name() == "evalsha") &&
		cmds[1].Name() == "get" && cmds[2].Name() == "pttl"
}
