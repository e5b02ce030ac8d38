package gormflight

import (
	"fmt"
	"testing"

	"github.com/gormflight/gormflight/internal/testredis"
	"github.com/redis/go-redis/v9"
)

// BenchmarkClusterHit is BenchmarkHit's query answered from Redis Cluster
// (three masters with a replica each, internal/testredis), against the same
// hit on the single shared Redis, in one run: what a cluster client costs a
// hit (its lookup runs one pipeline per node it touches). With
// KeyCopies 16 a hit reads its tables' keys from one copy of sixteen, as
// with one copy: the cost is the same, and the load spreads over the
// shards (see TestCluster/ShardLoad).
func BenchmarkClusterHit(b *testing.B) {
	c := testredis.StartCluster(b)
	targets := []struct {
		name   string
		client func(b *testing.B, prefix string) redis.UniversalClient
		copies int
	}{
		{"single", func(b *testing.B, prefix string) redis.UniversalClient {
			rdb := openRedis(b, "")
			deletePrefix(b, rdb, prefix)
			return rdb
		}, 1},
		{"cluster", func(b *testing.B, _ string) redis.UniversalClient { return c.Client(b) }, 1},
		{"cluster-copies16", func(b *testing.B, _ string) redis.UniversalClient { return c.Client(b) }, 16},
	}
	for _, n := range benchRowCounts {
		for _, tg := range targets {
			b.Run(fmt.Sprintf("%s/rows=%d", tg.name, n), func(b *testing.B) {
				prefix := testPrefix(b)
				cfg := testConfig(tg.client(b, prefix), prefix)
				cfg.KeyCopies = tg.copies
				in := newInstance(b, cfg)
				setupBenchSchema(b, in.db)
				if _, err := benchQuery(in.db, true, n); err != nil {
					b.Fatal(err)
				}
				loopHits(b, in, in.db, n)
			})
		}
	}
}
