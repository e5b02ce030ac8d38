package engine

import (
	"context"
	"sync/atomic"
	"time"
)

// LogFunc reports a message at a level; the GORM adapter passes it to the
// GORM logger. nil logs nothing.
type LogFunc func(ctx context.Context, level Level, format string, args ...any)

// Level is a message's severity.
type Level int

// Levels.
const (
	LevelWarn Level = iota
	LevelError
)

// LogKind names a kind of warning. Each kind is logged at most once a
// second: an outage must not flood the application's log.
type LogKind uint8

// Kinds of warnings.
const (
	LogRedis      LogKind = iota // a Redis operation failed
	LogTakeover                  // a lock was taken over from a dead holder
	LogWait                      // a wait ran out
	LogInvalidate                // a write's invalidation did not reach Redis
	LogSession                   // a session could not be read (the adapter's)
	LogRefresh                   // a background refresh failed
	LogLocal                     // the near cache lost its invalidations
	LogRecovery                  // Redis restarted or failed over: entries dropped
	logKinds
)

// logger rate-limits messages per kind.
type logger struct {
	f    LogFunc
	last [logKinds]atomic.Int64 // unix nanoseconds of each kind's last message
}

func (l *logger) printf(kind LogKind, level Level, format string, args ...any) {
	if l.f == nil || int(kind) >= len(l.last) {
		return
	}
	now, last := time.Now().UnixNano(), &l.last[kind]
	prev := last.Load()
	if now-prev < int64(time.Second) || !last.CompareAndSwap(prev, now) {
		return
	}
	l.f(context.Background(), level, format, args...)
}

// Warnf logs a warning of kind, at most once a second per kind.
func (e *Engine) Warnf(kind LogKind, format string, args ...any) {
	e.log.printf(kind, LevelWarn, format, args...)
}

// errorf logs an error of kind, at most once a second per kind.
func (e *Engine) errorf(kind LogKind, format string, args ...any) {
	e.log.printf(kind, LevelError, format, args...)
}

// always logs at level without a rate limit, for rare events such as the
// breaker changing state.
func (l *logger) always(level Level, format string, args ...any) {
	if l.f != nil {
		l.f(context.Background(), level, format, args...)
	}
}
