package engine

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/gormflight/gormflight/observe"
)

// Info is what DoInfo tells of one call: how the cache answered it, how
// long it waited for a load elsewhere and how long the database took for
// its flight.
type Info struct {
	Outcome observe.Outcome
	Wait    time.Duration
	Load    time.Duration
}

// Event returns the observe.Event of a call that DoInfo answered with err.
// key is the request's Hash; tables its Tables, of which the event keeps
// the real tables.
func (i Info) Event(key string, tables []string, start time.Time, err error) observe.Event {
	return observe.Event{
		Outcome: i.Outcome, Key: key, Tables: RealTables(tables),
		Start: start, Duration: time.Since(start), Wait: i.Wait, Load: i.Load, Err: err,
	}
}

// RealTables returns tables without the name every entry depends on
// (sqlscan.AllTables, "*"), which names no table. The names are sorted, so
// it is nearly always the first, and then no copy is made.
func RealTables(tables []string) []string {
	if len(tables) > 0 && tables[0] == allTables {
		return tables[1:]
	}
	for i, t := range tables {
		if t == allTables {
			out := make([]string, 0, len(tables)-1)
			return append(append(out, tables[:i]...), tables[i+1:]...)
		}
	}
	return tables
}

// flightInfo is what a flight tells the caller that started it, when that
// caller observes. The caller puts it in the context it hands the flight
// (flightInfoOf), the flight writes it as it goes, and the caller reads it
// once the flight answered, or, when it gave up, while the flight goes on:
// hence atomics. Every method does nothing on a nil flightInfo, which is
// what an unobserved flight has.
type flightInfo struct {
	outcome atomic.Uint32 // observe.Outcome so far
	wait    atomic.Int64  // time.Duration
	load    atomic.Int64  // time.Duration
}

// flightInfoKey is the context key of a flight's flightInfo.
type flightInfoKey struct{}

// flightInfoOf returns the flightInfo of the flight ctx belongs to, or nil
// when its caller does not observe.
func flightInfoOf(ctx context.Context) *flightInfo {
	fi, _ := ctx.Value(flightInfoKey{}).(*flightInfo)
	return fi
}

// loading notes that the flight is running the query: under the lock
// (observe.Load), or without it (observe.Fallback).
func (fi *flightInfo) loading(o observe.Outcome) {
	if fi != nil {
		fi.outcome.Store(uint32(o))
	}
}

// loaded notes how long the query took.
func (fi *flightInfo) loaded(since time.Time) {
	if fi != nil {
		fi.load.Store(int64(time.Since(since)))
	}
}

// waiting notes that the flight is waiting; waited, how long it did.
func (fi *flightInfo) waiting() {
	if fi != nil {
		fi.outcome.Store(uint32(observe.Wait))
	}
}

func (fi *flightInfo) waited(since time.Time) {
	if fi != nil {
		fi.wait.Add(int64(time.Since(since)))
	}
}

// found notes that the flight took an entry from Redis: a Hit, or, after
// it waited, a Wait.
func (fi *flightInfo) found() {
	if fi != nil && observe.Outcome(fi.outcome.Load()) != observe.Wait {
		fi.outcome.Store(uint32(observe.Hit))
	}
}

// info returns what the flight told so far, for its caller. A flight that
// told nothing yet (it is still looking Redis up) is reported as a Wait:
// the caller waited and took nothing.
func (fi *flightInfo) info() Info {
	o := observe.Outcome(fi.outcome.Load())
	if o == 0 {
		o = observe.Wait
	}
	return Info{Outcome: o, Wait: time.Duration(fi.wait.Load()), Load: time.Duration(fi.load.Load())}
}

// now returns the current time when fi is observed, and the zero time
// otherwise: unobserved flights do not read the clock for it.
func (fi *flightInfo) now() time.Time {
	if fi == nil {
		return time.Time{}
	}
	return time.Now()
}

// answered fills i, when the call observes, once a flight answered it:
// with the flight's own account when the call started it, as Shared
// otherwise. start is when the call came, begun when it took that flight
// (later, when the flight it joined first had read too early for it): the
// time between is a wait too.
func (i *Info) answered(fi *flightInfo, started bool, start, begun time.Time) {
	if i == nil {
		return
	}
	if !started {
		*i = Info{Outcome: observe.Shared, Wait: time.Since(start)}
		return
	}
	*i = fi.info()
	i.Wait += begun.Sub(start)
}

// gaveUp fills i, when the call observes, for a call that gave up on its
// context: what its flight was doing when it started one and the query
// was running (Load, Fallback), Wait otherwise, for as long as it waited.
func (i *Info) gaveUp(fi *flightInfo, started bool, start time.Time) {
	if i == nil {
		return
	}
	*i = Info{Outcome: observe.Wait}
	if started {
		*i = fi.info()
	}
	if i.Outcome == observe.Wait {
		i.Wait = time.Since(start)
	}
}
