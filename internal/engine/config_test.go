package engine

import (
	"context"
	"database/sql/driver"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/redis/go-redis/v9"
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
		req := Request{Hash: "big", Tables: []string{"*", "t"}, TTL: time.Minute,
			Load: func(context.Context) (*rowcodec.Entry, error) {
				loads.Add(1)
				return rowcodec.NewEntry([]string{"v"}, [][]driver.Value{{big}})
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

// New refuses a Config it cannot work with, and a zero Engine is inert.
func TestNewAndZeroEngine(t *testing.T) {
	_, srv := newTestEngine(t, nil)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	good := testConfig(t, rdb)
	for name, mod := range map[string]func(*Config){
		"no Redis":              func(c *Config) { c.Redis = nil },
		"zero RedisTimeout":     func(c *Config) { c.RedisTimeout = 0 },
		"zero MaxWait":          func(c *Config) { c.MaxWait = 0 },
		"short LockExpiry":      func(c *Config) { c.LockExpiry = time.Millisecond },
		"prefix with {":         func(c *Config) { c.Prefix = "a{b" },
		"negative FailoverWait": func(c *Config) { c.FailoverWait = -time.Second },
	} {
		cfg := good
		mod(&cfg)
		if e, err := New(cfg); !errors.Is(err, ErrInvalidConfig) || e != nil {
			t.Errorf("%s: New returned %v, %v; want ErrInvalidConfig", name, e, err)
		}
	}

	var zero Engine
	if zero.Enter() {
		t.Error("a zero Engine admitted a caller")
	}
	if closed, err := zero.Close(); closed || err != nil {
		t.Errorf("zero Engine Close: %v, %v", closed, err)
	}
	if err := zero.Invalidate(context.Background(), []string{"t"}, Announcement{}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("zero Engine Invalidate: %v, want ErrInvalidRequest", err)
	}
	if a := zero.Announce(context.Background(), []string{"t"}, false); !a.Empty() {
		t.Errorf("zero Engine announced %v", a.Tables())
	}
}

// Do refuses a request it could not serve correctly.
func TestDoRefusesInvalidRequests(t *testing.T) {
	e, _ := newTestEngine(t, nil)
	var loads atomic.Int64
	for name, mod := range map[string]func(*Request){
		"no hash":   func(r *Request) { r.Hash = "" },
		"no tables": func(r *Request) { r.Tables = nil },
		"no *":      func(r *Request) { r.Tables = []string{"t"} }, // a restart would not end its entries
		"TTL 0":     func(r *Request) { r.TTL = 0 },
		"TTL 1µs":   func(r *Request) { r.TTL = time.Microsecond },
		"no load":   func(r *Request) { r.Load = nil },
	} {
		req := testRequest("k", "x", &loads)
		mod(&req)
		e.Enter()
		_, err := e.Do(context.Background(), req)
		e.Exit()
		if !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: Do: %v, want ErrInvalidRequest", name, err)
		}
	}
	if n := loads.Load(); n != 0 {
		t.Errorf("%d loads of invalid requests", n)
	}
}

// A BreakerFailures beyond what gobreaker counts in 32 bits does not wrap
// around to an opening at the first failure.
func TestBreakerFailuresLarge(t *testing.T) {
	e, srv := newTestEngine(t, func(c *Config) { c.BreakerFailures = 1 << 32; c.RedisTimeout = 100 * time.Millisecond })
	srv.Close()
	var loads atomic.Int64
	do(t, e, testRequest("k", "x", &loads))
	if s := e.BreakerState(); s != gobreaker.StateClosed {
		t.Errorf("breaker %v after one failure with BreakerFailures 1<<32, want closed", s)
	}
}

// parseMeta reads what EncodeStored writes, and an older writer's meta
// without a stale field, and refuses anything else.
func TestParseMeta(t *testing.T) {
	for _, tc := range []struct {
		in          string
		load, stale time.Duration
		ok          bool
	}{
		{"TAG,250", 250 * time.Millisecond, 0, true},
		{"TAG,250,60000", 250 * time.Millisecond, time.Minute, true},
		{"TAG,0,0,future", 0, 0, true},
		{"TAG", 0, 0, false},
		{",5", 0, 0, false},
		{"TAG,", 0, 0, false},
		{"TAG,-1", 0, 0, false},
		{"TAG,1x", 0, 0, false},
		{"TAG,5,", 0, 0, false},
		{"TAG,1234567890123456", 0, 0, false},
		{"", 0, 0, false},
	} {
		m, ok := parseMeta(tc.in)
		if ok != tc.ok || ok && (m.load != tc.load || m.stale != tc.stale) {
			t.Errorf("parseMeta(%q) = %+v, %v; want load %v, stale %v, %v", tc.in, m, ok, tc.load, tc.stale, tc.ok)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { parseMeta([]byte("TAG,250,60000")) }); allocs != 0 {
		t.Errorf("parseMeta allocates %v times", allocs)
	}
}
