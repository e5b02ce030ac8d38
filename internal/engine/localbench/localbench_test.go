// Package localbench compares the two in-memory caches the near cache
// could be built on, otter v2 and ristretto v2, on its workload: entries of
// a few KB bounded by weight, read far more often than written, one key
// very hot. It is a module of its own so that the library depends on the
// chosen one only.
//
//	go test -run '^$' -bench . -benchmem -count 10 | benchstat -col /cache -
package localbench

import (
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/maypok86/otter/v2"
)

// item stands for a near-cache item: what matters is its weight.
type item struct {
	weight int
}

// cache is the interface both are driven through.
type cache interface {
	get(key string) (*item, bool)
	set(key string, it *item)
	weight() int
}

type otterCache struct{ c *otter.Cache[string, *item] }

func newOtter(limit int) cache {
	return otterCache{otter.Must(&otter.Options[string, *item]{
		MaximumWeight:    uint64(limit),
		Weigher:          func(_ string, it *item) uint32 { return uint32(it.weight) },
		ExpiryCalculator: otter.ExpiryWriting[string, *item](time.Minute),
	})}
}

func (o otterCache) get(key string) (*item, bool) { return o.c.GetIfPresent(key) }
func (o otterCache) set(key string, it *item)     { o.c.Set(key, it) }
func (o otterCache) weight() int {
	o.c.CleanUp()
	return int(o.c.WeightedSize())
}

type ristrettoCache struct {
	c *ristretto.Cache[string, *item]
}

// metrics turns ristretto's metrics on, which weight needs; the
// benchmarks run without them.
var metrics = false

func newRistretto(limit int) cache {
	c, err := ristretto.NewCache(&ristretto.Config[string, *item]{
		NumCounters: 100_000, // ten times the keys, as its documentation advises
		MaxCost:     int64(limit),
		BufferItems: 64,
		Metrics:     metrics,
	})
	if err != nil {
		panic(err)
	}
	return ristrettoCache{c}
}

func (r ristrettoCache) get(key string) (*item, bool) { return r.c.Get(key) }
func (r ristrettoCache) set(key string, it *item) {
	r.c.SetWithTTL(key, it, int64(it.weight), time.Minute)
}
func (r ristrettoCache) weight() int {
	r.c.Wait()
	return int(r.c.Metrics.CostAdded() - r.c.Metrics.CostEvicted())
}

var caches = []struct {
	name string
	make func(limit int) cache
}{{"otter", newOtter}, {"ristretto", newRistretto}}

const (
	keys  = 10_000
	limit = 8 << 20 // about half of what the keys weigh
)

func keyName(i int) string { return "gft:{" + strconv.Itoa(i) + "}" }

func itemFor(i int) *item { return &item{weight: 512 + (i*7919)%3072} }

// BenchmarkHotKey: every goroutine reads one key.
func BenchmarkHotKey(b *testing.B) {
	for _, c := range caches {
		b.Run("cache="+c.name, func(b *testing.B) {
			ch, hot := c.make(limit), keyName(0)
			ch.set(hot, itemFor(0))
			if r, ok := ch.(ristrettoCache); ok {
				r.c.Wait()
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, ok := ch.get(hot); !ok {
						b.Error("hot key missing")
						return
					}
				}
			})
		})
	}
}

// BenchmarkZipf: reads of keys drawn from a Zipf distribution, a miss
// followed by a set, as the near cache does; reports the hit ratio.
func BenchmarkZipf(b *testing.B) {
	names := make([]string, keys)
	for i := range names {
		names[i] = keyName(i)
	}
	for _, c := range caches {
		b.Run("cache="+c.name, func(b *testing.B) {
			ch := c.make(limit)
			var hits, reads atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				z := rand.NewZipf(rand.New(rand.NewPCG(rand.Uint64(), 1)), 1.01, 1, keys-1)
				var h, n int64
				for pb.Next() {
					i := int(z.Uint64())
					n++
					if _, ok := ch.get(names[i]); ok {
						h++
						continue
					}
					ch.set(names[i], itemFor(i))
				}
				hits.Add(h)
				reads.Add(n)
			})
			b.ReportMetric(float64(hits.Load())/float64(reads.Load()), "hit-ratio")
		})
	}
}

// TestBoundedByWeight: both keep what they hold within the limit once
// their buffers are drained, and keep a set item readable.
func TestBoundedByWeight(t *testing.T) {
	metrics = true
	defer func() { metrics = false }()
	for _, c := range caches {
		t.Run(c.name, func(t *testing.T) {
			ch := c.make(1 << 20)
			total := 0
			for i := range 2000 {
				ch.set(keyName(i), itemFor(i))
				total += itemFor(i).weight
			}
			if total <= 1<<20 {
				t.Fatalf("the test sets only %d bytes", total)
			}
			if w := ch.weight(); w > 1<<20 || w <= 0 {
				t.Errorf("holds %d bytes, want (0, %d]", w, 1<<20)
			}
		})
	}
}
