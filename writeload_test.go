package gormflight

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"
)

// Write load: one writer updates a table while readers in every instance
// run one cached query on it. Each write should cost about one execution of
// the query, whatever the number of instances: the readers of all instances
// together, not each instance on its own, go to the database after a write.
// And no read may be stale: a read that starts after an update returned sees
// that update or a newer one.

// wlWrites is how many updates the writer makes; wlReaders how many reader
// goroutines each instance runs.
const (
	wlWrites  = 40
	wlReaders = 3
)

// wlBarrier tells the writer when every instance has read a value at least
// as new as its last write, so the next write comes only once the previous
// one has been read everywhere: the pace is set by the system, not a clock.
type wlBarrier struct {
	mu      sync.Mutex
	target  int64
	pending []bool // per instance: has not read target yet
	left    int
	done    chan struct{}
}

// arm starts waiting for every one of n instances to read a value >= target.
func (b *wlBarrier) arm(target int64, n int) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.target, b.left, b.done = target, n, make(chan struct{})
	b.pending = make([]bool, n)
	for i := range b.pending {
		b.pending[i] = true
	}
	return b.done
}

// observe records that instance i read v.
func (b *wlBarrier) observe(i int, v int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done == nil || v < b.target || !b.pending[i] {
		return
	}
	b.pending[i] = false
	if b.left--; b.left == 0 {
		close(b.done)
		b.done = nil
	}
}

func TestWriteLoadOneExecutionPerWrite(t *testing.T) {
	for _, n := range []int{2, 4, 8} {
		t.Run(fmt.Sprintf("instances=%d", n), func(t *testing.T) { wlRun(t, n) })
	}
}

// wlStale is the first stale read seen.
type wlStale struct {
	instance int
	floor    int64 // committed before the read started
	got      int64
}

func wlRun(t *testing.T, n int) {
	admin := openDB(t)
	table := "gft_wl_" + randHex(5)
	adminExec(t, admin, "CREATE TABLE "+quotedIdent(table)+" (id bigint PRIMARY KEY, val bigint NOT NULL)")
	dropAtEnd(t, admin, "DROP TABLE IF EXISTS "+quotedIdent(table))
	adminExec(t, admin, "INSERT INTO "+quotedIdent(table)+" VALUES (1, 0)")
	tag := uniqueTag(t)
	query := "SELECT val, gft_record(?, 0) AS n FROM " + quotedIdent(table) + " WHERE id = 1"
	read := func(db *gorm.DB) (int64, error) {
		var r struct {
			Val int64
			N   int
		}
		err := db.Scopes(Cache(time.Minute)).Raw(query, tag).Scan(&r).Error
		return r.Val, err
	}

	ins := newInstances(t, n+1, nil)
	writer, readers := ins[0], ins[1:]
	var (
		committed atomic.Int64 // the newest value an update has returned for
		reads     atomic.Int64
		stale     atomic.Pointer[wlStale]
		readErr   atomic.Pointer[error]
		barrier   wlBarrier
		wg        sync.WaitGroup
	)
	stop := make(chan struct{})
	stopReaders := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopReaders()
	ready := barrier.arm(0, n)
	for i, in := range readers {
		for range wlReaders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					floor := committed.Load()
					v, err := read(in.db)
					reads.Add(1)
					if err != nil {
						readErr.CompareAndSwap(nil, &err)
						continue
					}
					if v < floor {
						stale.CompareAndSwap(nil, &wlStale{instance: i, floor: floor, got: v})
					}
					barrier.observe(i, v)
				}
			}()
		}
	}
	wlAwait(t, ready, "every instance to read the initial value", &readErr)
	before := calls(t, admin, tag)

	for k := int64(1); k <= wlWrites; k++ {
		seen := barrier.arm(k, n)
		if err := writer.db.Table(table).Where("id = ?", 1).Update("val", k).Error; err != nil {
			t.Fatalf("update %d: %v", k, err)
		}
		committed.Store(k)
		wlAwait(t, seen, fmt.Sprintf("every instance to read update %d", k), &readErr)
	}
	stopReaders()

	execs := calls(t, admin, tag) - before
	perWrite := float64(execs) / wlWrites
	st := sumStats(readers...)
	t.Logf("%d instances × %d readers: %d executions for %d writes = %.2f per write (%d reads; hits %d, loads %d, uncached %d)",
		n, wlReaders, execs, wlWrites, perWrite, reads.Load(), st.Hits, st.Loads, st.Uncached)
	if perWrite > 1.5 {
		t.Errorf("%.2f executions per write with %d instances, want at most 1.5: the instances' readers go to the database on their own while a write is announced", perWrite, n)
	}
	if s := stale.Load(); s != nil {
		t.Errorf("stale read: instance %d read val=%d after the update to %d had returned", s.instance, s.got, s.floor)
	}
	if e := readErr.Load(); e != nil {
		t.Errorf("a read failed: %v", *e)
	}
}

// wlAwait waits for ch, failing the test if the readers cannot get there.
// The bound is a guard against a hung test, not a timing assertion.
func wlAwait(t *testing.T, ch <-chan struct{}, what string, readErr *atomic.Pointer[error]) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		if e := readErr.Load(); e != nil {
			t.Fatalf("timed out waiting for %s; a read failed: %v", what, *e)
		}
		t.Fatalf("timed out waiting for %s", what)
	}
}
