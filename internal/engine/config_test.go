package engine

import (
	"context"
	"database/sql/driver"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/sony/gobreaker/v2"
)

// What the adapter's negative values turn off, as the engine receives them.

// A breaker of BreakerFailures <= 0 never opens: with Redis gone, every
// read still tries it, and every read is answered from the database.
func TestBreakerOff(t *testing.T) {
	for _, tc := range []struct {
		failures int
		want     gobreaker.State
	}{{3, gobreaker.StateOpen}, {-1, gobreaker.StateClosed}} {
		e, srv := newTestEngine(t, func(c *Config) { c.BreakerFailures = tc.failures; c.RedisTimeout = 100 * time.Millisecond })
		srv.Close()
		var loads atomic.Int64
		for i := range 6 {
			if v := do(t, e, testRequest("k", "x", &loads)); v != "x" {
				t.Fatalf("read %d: %q", i, v)
			}
		}
		if n := loads.Load(); n != 6 {
			t.Errorf("BreakerFailures %d: %d loads for 6 reads without Redis, want 6", tc.failures, n)
		}
		if s := e.BreakerState(); s != tc.want {
			t.Errorf("BreakerFailures %d: breaker %v after 6 failed reads, want %v", tc.failures, s, tc.want)
		}
	}
}

// MaxEntrySize caps what is stored; <= 0 stores any size.
func TestMaxEntrySize(t *testing.T) {
	big := strings.Repeat("x", 2<<20)
	for _, tc := range []struct {
		limit int
		loads int64
	}{{1 << 20, 3}, {-1, 1}} {
		e, _ := newTestEngine(t, func(c *Config) { c.MaxEntrySize = tc.limit })
		var loads atomic.Int64
		req := Request{Hash: "big", Tables: []string{"t"}, TTL: time.Minute,
			Load: func(context.Context) (*rowcodec.Entry, error) {
				loads.Add(1)
				return rowcodec.NewEntry([]string{"v"}, [][]driver.Value{{big}}), nil
			}}
		for range 3 {
			if v := do(t, e, req); len(v) != len(big) {
				t.Fatalf("MaxEntrySize %d: read %d bytes, want %d", tc.limit, len(v), len(big))
			}
		}
		if n := loads.Load(); n != tc.loads {
			t.Errorf("MaxEntrySize %d: %d loads of a 2 MiB result in 3 reads, want %d", tc.limit, n, tc.loads)
		}
	}
}
