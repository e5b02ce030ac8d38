package engine

import (
	"bytes"
	"context"
	"reflect"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/rowcodec"
)

// A flight whose arguments changed while it ran (Request.Same turned
// false) answers nobody with its rows: a caller that joined it runs a
// flight of its own, with its own load; the caller that started it, still
// waiting, gets its query run again, uncached; and the key stores the
// joiner's rows only.
func TestChangedArgsFlightAnswersNobody(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	var changed atomic.Bool
	var firstLoads, secondLoads atomic.Int64
	started, release := make(chan struct{}), make(chan struct{})
	first := testRequest("k", "first", &firstLoads)
	load := first.Load
	first.Load = func(ctx context.Context) (*rowcodec.Entry, error) {
		if firstLoads.Load() == 0 {
			close(started)
			<-release
		}
		return load(ctx)
	}
	first.Same = func() bool { return !changed.Load() }
	second := testRequest("k", "second", &secondLoads)
	second.Same = func() bool { return true }

	firstGot := doAsync(e, first)
	<-started
	secondGot := doAsync(e, second)
	awaitGoroutine(t, "the second caller to join the flight", "singleflight.(*Group).Do", "sync.(*WaitGroup).Wait")
	changed.Store(true) // while the query runs: the driver may have read either
	close(release)

	if got := <-firstGot; got != "first" {
		t.Errorf("the caller whose arguments changed read %q, want its own query's rows, first", got)
	}
	if got := <-secondGot; got != "second" {
		t.Errorf("the caller that joined the flight read %q, want its own query's rows, second", got)
	}
	if n, m := firstLoads.Load(), secondLoads.Load(); n != 2 || m != 1 {
		t.Errorf("loads: %d of the changed query (want 2: the flight, then uncached), %d of the joiner's (want 1)", n, m)
	}
	if got := do(t, e, testRequest("k", "third", new(atomic.Int64))); got != "second" {
		t.Errorf("the key holds %q, want the joiner's rows, second", got)
	}
	if n := e.Stats().Uncached.Load(); n != 1 {
		t.Errorf("Uncached = %d, want 1", n)
	}
}

// awaitGoroutine waits until some goroutine's stack holds every one of
// frames, in order: a caller parked where no channel tells.
func awaitGoroutine(t *testing.T, what string, frames ...string) {
	t.Helper()
	waitFor(t, what, 10*time.Second, func() bool {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
			rest, ok := g, true
			for i := len(frames) - 1; i >= 0 && ok; i-- { // innermost frame first in a stack
				var at int
				if at = bytes.Index(rest, []byte(frames[i])); at < 0 {
					ok = false
					break
				}
				rest = rest[at+len(frames[i]):]
			}
			if ok {
				return true
			}
		}
		return false
	})
}

// snapshotArgs copies every argument whose memory its caller could change
// (the target of a pointer, the elements of a slice), one level deep, and
// keeps their types, and nil and NULL apart.
func TestSnapshotArgs(t *testing.T) {
	type point struct{ X, Y int }
	type withPtr struct{ P *int }
	n, p := 1, point{1, 2}
	ints, b := []int64{1, 2}, []byte("ab")
	deep := withPtr{&n}
	args := []any{&n, &p, ints, b, point{3, 4}, (*int)(nil), []int64(nil), []byte{}, "s", time.Unix(1, 0), deep}
	got := snapshotArgs(args)
	n, p, ints[0], b[0] = 9, point{9, 9}, 9, 'z' // the caller's, after the call
	want := []any{1, point{1, 2}, []int64{1, 2}, []byte("ab"), point{3, 4}, (*int)(nil), []int64(nil), []byte{}, "s", time.Unix(1, 0), deep}
	for i, g := range got {
		if reflect.TypeOf(g) != reflect.TypeOf(args[i]) {
			t.Errorf("arg %d: type %T, want %T", i, g, args[i])
			continue
		}
		if v := reflect.ValueOf(g); v.Kind() == reflect.Pointer && !v.IsNil() {
			g = v.Elem().Interface()
		}
		if !reflect.DeepEqual(g, want[i]) {
			t.Errorf("arg %d: %#v, want %#v", i, g, want[i])
		}
	}
}
