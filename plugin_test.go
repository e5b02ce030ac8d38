package gormflight

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type slowRow struct {
	N   int
	Tag string
	Key string
}

// slowQuery is a cached query whose execution PostgreSQL records under tag
// and which takes ms milliseconds.
func slowQuery(ctx context.Context, in *instance, tag, key string, ms int) (slowRow, error) {
	return postgresTestDB.slowQuery(ctx, in, tag, key, ms)
}

// slowQuery is a cached query whose execution d's database records under
// tag and which takes ms milliseconds.
func (d *testDB) slowQuery(ctx context.Context, in *instance, tag, key string, ms int) (slowRow, error) {
	var r slowRow
	err := in.db.WithContext(ctx).Scopes(Cache(time.Minute)).
		Raw("SELECT gft_record(?, ?) AS n, "+d.text+" AS tag, "+d.text+" AS "+in.db.Statement.Quote("key"), tag, ms, tag, key).
		Scan(&r).Error
	return r, err
}

func TestStampedeRunsQueryOnceAcrossInstances(t *testing.T) {
	forEachDB(t, testStampede)
}

func testStampede(t *testing.T, d *testDB) { stampede(t, d, 8, d.instances) }

// stampede releases 100 callers per instance, on as many instances as
// instances says, at once on one cold key, then on 10, and checks that
// d's database ran the query once per key. newInstances returns n
// instances sharing a fresh prefix.
func stampede(t *testing.T, d *testDB, instances int, newInstances func(t testing.TB, n int, mod func(*Config)) []*instance) {
	for _, nkeys := range []int{1, 10} {
		t.Run(fmt.Sprintf("keys=%d", nkeys), func(t *testing.T) {
			const callers = 100
			ins := newInstances(t, instances, nil)
			tag := uniqueTag(t)

			// Every caller is released at once by closing start.
			start := make(chan struct{})
			var wg sync.WaitGroup
			var failures atomic.Int64
			results := make([][]slowRow, instances)
			for i, in := range ins {
				results[i] = make([]slowRow, callers)
				for c := range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						key := fmt.Sprintf("k%d", (i*callers+c)%nkeys)
						r, err := d.slowQuery(context.Background(), in, tag, key, 200)
						if err != nil {
							failures.Add(1)
							t.Error(err)
							return
						}
						results[i][c] = r
					}()
				}
			}
			close(start)
			wg.Wait()

			if got := d.calls(t, ins[0].db, tag); got != int64(nkeys) {
				t.Errorf("%s ran the query %d times for %d keys, want %d", d.name, got, nkeys, nkeys)
			}
			if failures.Load() != 0 {
				t.Fatalf("%d callers failed", failures.Load())
			}
			for i := range results {
				for c, r := range results[i] {
					want := slowRow{N: 1, Tag: tag, Key: fmt.Sprintf("k%d", (i*callers+c)%nkeys)}
					if r != want {
						t.Fatalf("instance %d caller %d got %+v, want %+v", i, c, r, want)
					}
				}
			}
			s := sumStats(ins...)
			t.Logf("keys=%d: db executions=%d; plugin stats summed: %+v", nkeys, d.calls(t, ins[0].db, tag), s)
		})
	}
}
