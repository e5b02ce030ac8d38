package testdb

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Linearizability, for every adapter: K registers (rows of one table)
// written and read through cached queries by workers on several
// instances; each register's history is checked with porcupine against a
// sequential register, per cached query and across all queries. An
// adapter gives a LinClient per instance; LinRun and LinControl do the
// rest.

// LinRegisters is how many registers a history has.
const LinRegisters = 4

// LinClient is one instance's way to the registers.
type LinClient struct {
	First  func(k int) (int64, error) // a cached read of one register
	All    func() ([]int64, error)    // a cached read of every register, in order
	Join   func(k int) (int64, error) // a cached join that reads one register
	Writes []LinWrite                 // three ways to write, chosen at random
	Hits   func() uint64              // the instance's cache hits so far
}

// LinWrite is one way to write register k.
type LinWrite struct {
	Kind  string
	Write func(k int, v int64) error
}

// LinInput is an operation on register key: a read through query q, or a
// write of val.
type LinInput struct {
	key   int
	write bool
	val   int64
	q     string // the cached query that read: First, aggregate or join
}

// linModel is a register per key; every register starts at 0. It checks
// each register's history as a whole: every read, whatever query made it.
func LinModel() porcupine.Model {
	return linModelBy(func(in LinInput) string { return strconv.Itoa(in.key) })
}

// LinQueryModel checks each (register, query) pair on its own: the reads of
// one register through one cached query (one cache key per register, or
// the aggregate's single key) against every write of the register. Use it
// on LinPerQuery's history.
func LinQueryModel() porcupine.Model {
	return linModelBy(func(in LinInput) string { return strconv.Itoa(in.key) + "/" + in.q })
}

// LinPerQuery copies every write once per query kind, so that each
// (register, query) partition holds all the register's writes.
func LinPerQuery(ops []porcupine.Operation) []porcupine.Operation {
	qs := map[string]bool{}
	for _, op := range ops {
		if in := op.Input.(LinInput); !in.write {
			qs[in.q] = true
		}
	}
	out := make([]porcupine.Operation, 0, len(ops)*2)
	for _, op := range ops {
		in := op.Input.(LinInput)
		if !in.write {
			out = append(out, op)
			continue
		}
		for q := range qs {
			c := op
			in.q = q
			c.Input = in
			out = append(out, c)
		}
	}
	return out
}

func linModelBy(partition func(LinInput) string) porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			var order []string
			for _, op := range history {
				k := partition(op.Input.(LinInput))
				if _, ok := by[k]; !ok {
					order = append(order, k)
				}
				by[k] = append(by[k], op)
			}
			out := make([][]porcupine.Operation, 0, len(order))
			for _, k := range order {
				out = append(out, by[k])
			}
			return out
		},
		Init: func() any { return int64(0) },
		Step: func(state, input, output any) (bool, any) {
			in := input.(LinInput)
			if in.write {
				return true, in.val
			}
			return output.(int64) == state.(int64), state
		},
		DescribeOperation: func(input, output any) string {
			in := input.(LinInput)
			if in.write {
				return fmt.Sprintf("r%d := %d", in.key, in.val)
			}
			return fmt.Sprintf("r%d -> %d", in.key, output.(int64))
		},
		DescribeState: func(state any) string { return fmt.Sprint(state.(int64)) },
	}
}

// LinRecorder collects operations with call and return times on one
// monotonic clock.
type LinRecorder struct {
	epoch time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	kinds map[string]int
}

func NewLinRecorder() *LinRecorder {
	return &LinRecorder{epoch: time.Now(), kinds: map[string]int{}}
}

func (l *LinRecorder) now() int64 { return time.Since(l.epoch).Nanoseconds() }

func (l *LinRecorder) add(kind string, ops ...porcupine.Operation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, ops...)
	l.kinds[kind]++
}

// LinCheck runs porcupine with model.
func LinCheck(t *testing.T, label string, model porcupine.Model, ops []porcupine.Operation) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	t.Helper()
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, ops, 60*time.Second)
	t.Logf("porcupine (%s): %s for %d operations in %v", label, res, len(ops), time.Since(start).Round(time.Millisecond))
	return res, info
}

// LinVisualize writes porcupine's visualization of a failed check and logs
// where.
func LinVisualize(t *testing.T, model porcupine.Model, info porcupine.LinearizationInfo) {
	t.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("gormflight-%s-%d.html", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano()))
	if err := porcupine.VisualizePath(model, info, path); err != nil {
		t.Logf("porcupine visualization: %v", err)
		return
	}
	t.Logf("porcupine visualization: %s", path)
}

// LinExplain logs, per register, the reads that explain a violation:
// reads of a value that a later write had replaced before the read began
// (stale after the write returned), and pairs of reads where a read that
// began after another had returned saw an older value (new-then-old, which
// can happen only while the newer write is still in progress).
func LinExplain(t *testing.T, ops []porcupine.Operation) (stale, inversions int) {
	t.Helper()
	writes := map[int64]porcupine.Operation{0: {Call: -1 << 62, Return: -1 << 62}}
	for _, op := range ops {
		if in := op.Input.(LinInput); in.write {
			writes[in.val] = op
		}
	}
	desc := func(op porcupine.Operation) string {
		in, ok := op.Input.(LinInput)
		if !ok {
			return "[initial value]"
		}
		if in.write {
			return fmt.Sprintf("[%v %d..%d] r%d := %d", op.Metadata, op.Call, op.Return, in.key, in.val)
		}
		return fmt.Sprintf("[%v %d..%d] r%d -> %d", op.Metadata, op.Call, op.Return, in.key, op.Output.(int64))
	}
	// later reports whether write b is after write a in real time.
	later := func(a, b porcupine.Operation) bool { return b.Call > a.Return }
	for _, r := range ops {
		in := r.Input.(LinInput)
		if in.write {
			continue
		}
		wv, ok := writes[r.Output.(int64)]
		if !ok {
			t.Logf("read of a value never written: %s", desc(r))
			continue
		}
		for _, w := range ops {
			win := w.Input.(LinInput)
			if !win.write || win.key != in.key || !later(wv, w) || w.Return >= r.Call {
				continue
			}
			if stale++; stale <= 10 {
				t.Logf("STALE: %s read the value of %s, which %s replaced before the read began", desc(r), desc(wv), desc(w))
			}
			break
		}
		for _, r2 := range ops {
			in2 := r2.Input.(LinInput)
			if in2.write || in2.key != in.key || r2.Call <= r.Return {
				continue
			}
			w2, ok := writes[r2.Output.(int64)]
			if !ok || !later(w2, wv) {
				continue
			}
			if inversions++; inversions <= 10 {
				t.Logf("NEW-THEN-OLD: %s (written by %s), then %s (written by %s, which ended before the first's write began)", desc(r), desc(wv), desc(r2), desc(w2))
			}
		}
	}
	t.Logf("%d stale reads, %d new-then-old read pairs", stale, inversions)
	return stale, inversions
}

// LinWorker runs n random operations through c, as client id: 18 % writes
// (values id*1e6 + sequence, distinct), the rest reads through First, All
// and Join. keys limits the registers it uses.
func LinWorker(t *testing.T, rec *LinRecorder, c LinClient, id, n int, keys []int) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	seq := int64(0)
	for range n {
		k := keys[rng.IntN(len(keys))]
		call := rec.now()
		op := rng.IntN(100)
		switch {
		case op < 18:
			seq++
			v := int64(id+1)*1_000_000 + seq
			w := c.Writes[op%len(c.Writes)]
			err := w.Write(k, v)
			ret := rec.now()
			if err != nil {
				// It may or may not have happened: it stays pending forever.
				t.Errorf("worker %d: write %s r%d := %d: %v", id, w.Kind, k, v, err)
				ret = 1 << 62
			}
			rec.add("write "+w.Kind, porcupine.Operation{ClientId: id, Input: LinInput{key: k, write: true, val: v}, Call: call, Output: int64(0), Return: ret, Metadata: fmt.Sprintf("w%d %s", id, w.Kind)})
		case op < 50:
			linRead(t, rec, id, "First", k, call, func() (int64, error) { return c.First(k) })
		case op < 75:
			vals, err := c.All()
			ret := rec.now()
			if err != nil {
				t.Errorf("worker %d: aggregate: %v", id, err)
				continue
			}
			// One snapshot of every register: a read of each, all with the
			// same interval.
			ops := make([]porcupine.Operation, 0, len(keys))
			for _, kk := range keys {
				ops = append(ops, porcupine.Operation{ClientId: id, Input: LinInput{key: kk, q: "aggregate"}, Call: call, Output: vals[kk], Return: ret, Metadata: fmt.Sprintf("w%d aggregate", id)})
			}
			rec.add("read aggregate", ops...)
		default:
			linRead(t, rec, id, "join", k, call, func() (int64, error) { return c.Join(k) })
		}
	}
}

// linRead records a read of register k through query q, begun at call.
func linRead(t *testing.T, rec *LinRecorder, id int, q string, k int, call int64, read func() (int64, error)) (int64, bool) {
	v, err := read()
	ret := rec.now()
	if err != nil {
		t.Errorf("worker %d: %s r%d: %v", id, q, k, err)
		return 0, false
	}
	rec.add("read "+q, porcupine.Operation{ClientId: id, Input: LinInput{key: k, q: q}, Call: call, Output: v, Return: ret, Metadata: fmt.Sprintf("w%d %s", id, q)})
	return v, true
}

// LinRun runs workers x opsPerWorker operations, worker w on clients[w %
// len(clients)], and checks the history: no read after a write returned
// gets a value the write replaced, and porcupine finds it linearizable per
// register and cached query, and per register across queries.
func LinRun(t *testing.T, clients []LinClient, workers, opsPerWorker int) {
	LinRunDuring(t, clients, workers, opsPerWorker, nil)
}

// LinRunDuring is LinRun with during, when not nil, run on the test's
// goroutine while the workers run: what happens to the deployment under
// the history (a failover). The workers may end before it returns; it
// must check that they have not, if it matters.
func LinRunDuring(t *testing.T, clients []LinClient, workers, opsPerWorker int, during func()) {
	all := make([]int, LinRegisters)
	for k := range all {
		all[k] = k
	}
	hits := func() (n uint64) {
		for _, c := range clients {
			n += c.Hits()
		}
		return n
	}
	before := hits()
	rec := NewLinRecorder()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			LinWorker(t, rec, clients[w%len(clients)], w, opsPerWorker, all)
		}()
	}
	began := time.Now()
	close(start)
	if during != nil {
		defer wg.Wait() // if during fails the test: no worker outlives it
		during()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d workers x %d calls in %v: %d porcupine operations; calls by kind %v; %d hits", workers, opsPerWorker, time.Since(began).Round(time.Millisecond), len(rec.ops), rec.kinds, hits()-before)
	if hits() == before {
		t.Errorf("no read was served from the cache: the history says nothing about it")
	}
	stale, inversions := LinExplain(t, rec.ops)
	if stale != 0 {
		t.Errorf("%d reads returned a value replaced by a write that had returned before they began", stale)
	}
	if res, info := LinCheck(t, "per register and query", LinQueryModel(), LinPerQuery(rec.ops)); res != porcupine.Ok {
		t.Errorf("porcupine per register and query: %s, want %s", res, porcupine.Ok)
		LinVisualize(t, LinQueryModel(), info)
	}
	// Writes announce themselves before they commit, so no query's entry
	// answers between a write's COMMIT and its bump.
	if res, info := LinCheck(t, "per register, across queries", LinModel(), rec.ops); res != porcupine.Ok {
		t.Errorf("porcupine per register: %s (stale reads %d, new-then-old pairs %d), want %s", res, stale, inversions, porcupine.Ok)
		LinVisualize(t, LinModel(), info)
	}
}

// linControlRun builds the control's history on clients: background load
// on registers 1..K-1, and on register 0, client 0 alone: read, read,
// write, read, read.
func linControlRun(t *testing.T, clients []LinClient) (porcupine.CheckResult, int, []int64) {
	rec := NewLinRecorder()
	var wg sync.WaitGroup
	for w := range 4 { // background load on registers 1..K-1
		wg.Add(1)
		go func() {
			defer wg.Done()
			LinWorker(t, rec, clients[w%len(clients)], w+1, 60, []int{1, 2, 3})
		}()
	}
	// On register 0, client 0 alone writes: read, read, write, read, read.
	var reads []int64
	read := func(c LinClient) {
		if v, ok := linRead(t, rec, 0, "First", 0, rec.now(), func() (int64, error) { return c.First(0) }); ok {
			reads = append(reads, v)
		}
	}
	read(clients[0])
	read(clients[1])
	const v = 7_000_001
	call := rec.now()
	if err := clients[0].Writes[0].Write(0, v); err != nil {
		t.Fatal(err)
	}
	rec.add("write", porcupine.Operation{ClientId: 0, Input: LinInput{key: 0, write: true, val: v}, Call: call, Output: int64(0), Return: rec.now(), Metadata: "c0 write"})
	read(clients[0])
	read(clients[1])
	wg.Wait()
	if len(reads) != 4 {
		t.FailNow()
	}
	t.Logf("%d operations (calls by kind %v); register 0 read %v around writing %d", len(rec.ops), rec.kinds, reads, v)
	stale, _ := LinExplain(t, rec.ops)
	res, _ := LinCheck(t, "per register and query", LinQueryModel(), LinPerQuery(rec.ops))
	return res, stale, reads
}

// LinControl checks that the checker catches a real violation. history
// builds fresh registers and returns two instances' clients; with
// plainWrites, their writes go through a handle without the adapter,
// which bumps nothing, so the instances keep serving a register's old
// value after the write returned. Without, the same history is clean.
func LinControl(t *testing.T, history func(t *testing.T, plainWrites bool) []LinClient) {
	LinControlOf(t, "WithoutInvalidation", history)
}

// LinControlOf is LinControl for any injected bug that makes instances
// serve a register's old value after a write returned: history(t, true)
// builds the clients with the bug, in a subtest named bug, and
// history(t, false) the same clients without it, in a subtest named
// Control.
func LinControlOf(t *testing.T, bug string, history func(t *testing.T, injected bool) []LinClient) {
	run := func(t *testing.T, injected bool) (porcupine.CheckResult, int, []int64) {
		return linControlRun(t, history(t, injected))
	}
	t.Run(bug, func(t *testing.T) {
		res, stale, reads := run(t, true)
		if stale < 2 {
			t.Errorf("the explanation found %d stale reads, want at least the 2 on register 0", stale)
		}
		if reads[2] != 0 || reads[3] != 0 {
			t.Fatalf("the cached reads after the write returned %v, want the stale 0: the injected bug did not take", reads)
		}
		if res != porcupine.Illegal {
			t.Errorf("porcupine: %s for a history with stale reads after a write returned, want %s", res, porcupine.Illegal)
		}
	})
	t.Run("Control", func(t *testing.T) {
		res, stale, reads := run(t, false)
		if stale != 0 {
			t.Errorf("%d stale reads without the injected bug", stale)
		}
		if reads[2] != 7_000_001 || reads[3] != 7_000_001 {
			t.Errorf("without the injected bug, register 0 read %v, want 7000001 after the write", reads)
		}
		if res != porcupine.Ok {
			t.Errorf("porcupine: %s without the injected bug, want %s", res, porcupine.Ok)
		}
	})
}

// LinSchema is the registers' tables, for every database.
var LinSchema = []string{
	`CREATE TABLE IF NOT EXISTS gft_lin_reg (id bigint PRIMARY KEY, val bigint NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS gft_lin_name (id bigint PRIMARY KEY, name varchar(64) NOT NULL)`,
}

// LinBase returns the first of K consecutive register ids no other run
// gets (the tables outlive runs on PostgreSQL and MariaDB): a random
// multiple of K below 2^50.
func LinBase() int64 { return rand.Int64N(1<<50/LinRegisters) * LinRegisters }

// LinRegisterRows are the statements that make registers base..base+K-1,
// each 0 and named r0..r3, with ? placeholders.
func LinRegisterRows(base int64) (statements []string, args [][]any) {
	for k := range LinRegisters {
		statements = append(statements, "INSERT INTO gft_lin_reg (id, val) VALUES (?, 0)", "INSERT INTO gft_lin_name (id, name) VALUES (?, ?)")
		args = append(args, []any{base + int64(k)}, []any{base + int64(k), fmt.Sprintf("r%d", k)})
	}
	return statements, args
}

// LinAll orders an aggregate read's rows, which must be the K registers
// from base, into their values.
func LinAll(base int64, ids, vals []int64) ([]int64, error) {
	if len(ids) != LinRegisters {
		return nil, fmt.Errorf("aggregate read %d registers, want %d", len(ids), LinRegisters)
	}
	for i, id := range ids {
		if id != base+int64(i) {
			return nil, fmt.Errorf("aggregate row %d has id %d", i, id)
		}
	}
	return vals, nil
}

// LinReadOp is the operation of a read of register key through query q
// that returned v, for a history a test builds by hand.
func LinReadOp(client, key int, q string, call, ret, v int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: LinInput{key: key, q: q}, Call: call, Output: v, Return: ret}
}

// LinWriteOp is the operation of a write of v to register key.
func LinWriteOp(client, key int, v, call, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: LinInput{key: key, write: true, val: v}, Call: call, Output: int64(0), Return: ret}
}
