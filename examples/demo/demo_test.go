package main

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the short demo, with miniredis and a temporary SQLite file,
// and checks its figures itself: without the plugin one execution per
// caller, with it one for the cold key and none for the warm one.
func TestDemo(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	var out bytes.Buffer
	res, err := run(t.Context(), shortOptions, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())

	callers := shortOptions.instances * shortOptions.callers
	for _, tc := range []struct {
		p          phaseResult
		executions int64
		loads      uint64 // with the plugin
	}{
		{p: res.plain, executions: int64(callers)},
		{p: res.cold, executions: 1, loads: 1},
		{p: res.warm, executions: 0, loads: 0},
	} {
		p := tc.p
		if len(p.latencies) != callers || p.errors != 0 || p.wrong != 0 {
			t.Errorf("%s: %d callers answered, %d errors, %d wrong rows (first: %v); want %d, 0, 0",
				p.name, len(p.latencies), p.errors, p.wrong, p.firstErr, callers)
		}
		if p.executions != tc.executions {
			t.Errorf("%s: SQLite ran the query %d times, want %d", p.name, p.executions, tc.executions)
		}
		if p.stats != nil && (p.stats.loads != tc.loads || p.stats.fallbacks != 0) {
			t.Errorf("%s: the plugins counted %d loads and %d fallbacks, want %d and 0",
				p.name, p.stats.loads, p.stats.fallbacks, tc.loads)
		}
		if !strings.Contains(out.String(), p.name) {
			t.Errorf("the table has no line for %s", p.name)
		}
	}
	if res.plain.stats != nil || res.cold.stats == nil || res.warm.stats == nil {
		t.Errorf("only the phases with the plugin should have its counters")
	}
	waitGoroutines(t, goroutines)
}

// waitGoroutines fails t unless the goroutines that run started are gone:
// closed connections and plugins end theirs shortly after Close returns.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, %d before the run:\n%s",
				runtime.NumGoroutine(), want, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCheck shows that check, hence the demo's exit status, fails on each
// thing the demo promises.
func TestCheck(t *testing.T) {
	ok := func() result {
		return result{
			plain: phaseResult{name: "plain", executions: 2, latencies: make([]time.Duration, 2)},
			cold:  phaseResult{name: "cold", executions: 1, latencies: make([]time.Duration, 2)},
			warm:  phaseResult{name: "warm", executions: 0, latencies: make([]time.Duration, 2)},
		}
	}
	for _, tc := range []struct {
		name string
		mod  func(*result)
		want string // in the error; "" for none
	}{
		{"ok", func(*result) {}, ""},
		{"cold key ran twice", func(r *result) { r.cold.executions = 2 }, "ran 2 times"},
		{"warm key ran", func(r *result) { r.warm.executions = 1 }, "ran 1 times"},
		{"caller error", func(r *result) { r.plain.errors, r.plain.firstErr = 1, errors.New("boom") }, "boom"},
		{"wrong rows", func(r *result) { r.cold.wrong, r.cold.firstErr = 1, errors.New("got 0 rows") }, "1 wrong rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok()
			tc.mod(&r)
			err := r.check()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("check() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("check() = %v, want an error with %q", err, tc.want)
			}
		})
	}
}
