package gormflight

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
	"gorm.io/gorm"
)

// Linearizability: K registers (rows of gft_lin_reg) written by GORM
// Update, Update in a transaction and Exec, and read through three kinds of
// cached query (First, an aggregate over every register, a join), by
// workers on three instances. Each register's history is checked with
// porcupine against a sequential register, per cached query and across all
// queries; both must be linearizable. (Across queries this rests on writes
// announcing themselves before COMMIT: without that, a miss could read the
// new row while another query's older entry was still served, new-then-old
// while a write is in progress.)

const linRegisters = 4

func linSchema(t testing.TB, d *testDB, db *gorm.DB) {
	t.Helper()
	d.setup(t, db, schemaLockLinearizability,
		`CREATE TABLE IF NOT EXISTS gft_lin_reg (id bigint PRIMARY KEY, val bigint NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS gft_lin_name (id bigint PRIMARY KEY, name varchar(64) NOT NULL)`)
}

type linReg struct {
	ID  int64
	Val int64
}

func (linReg) TableName() string { return "gft_lin_reg" }

// linInput is an operation on register key: a read through query q, or a
// write of val.
type linInput struct {
	key   int
	write bool
	val   int64
	q     string // the cached query that read: First, aggregate or join
}

// linModel is a register per key; every register starts at 0. It checks
// each register's history as a whole: every read, whatever query made it.
func linModel() porcupine.Model {
	return linModelBy(func(in linInput) string { return strconv.Itoa(in.key) })
}

// linQueryModel checks each (register, query) pair on its own: the reads of
// one register through one cached query (one cache key per register, or
// the aggregate's single key) against every write of the register. Use it
// on linPerQuery's history.
func linQueryModel() porcupine.Model {
	return linModelBy(func(in linInput) string { return strconv.Itoa(in.key) + "/" + in.q })
}

// linPerQuery copies every write once per query kind, so that each
// (register, query) partition holds all the register's writes.
func linPerQuery(ops []porcupine.Operation) []porcupine.Operation {
	qs := map[string]bool{}
	for _, op := range ops {
		if in := op.Input.(linInput); !in.write {
			qs[in.q] = true
		}
	}
	out := make([]porcupine.Operation, 0, len(ops)*2)
	for _, op := range ops {
		in := op.Input.(linInput)
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

func linModelBy(partition func(linInput) string) porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			var order []string
			for _, op := range history {
				k := partition(op.Input.(linInput))
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
			in := input.(linInput)
			if in.write {
				return true, in.val
			}
			return output.(int64) == state.(int64), state
		},
		DescribeOperation: func(input, output any) string {
			in := input.(linInput)
			if in.write {
				return fmt.Sprintf("r%d := %d", in.key, in.val)
			}
			return fmt.Sprintf("r%d -> %d", in.key, output.(int64))
		},
		DescribeState: func(state any) string { return fmt.Sprint(state.(int64)) },
	}
}

// linRegs are one run's registers: rows base..base+K-1 of gft_lin_reg,
// val 0, each with a row in gft_lin_name.
type linRegs struct{ base int64 }

func linNewRegs(t testing.TB, d *testDB, db *gorm.DB) linRegs {
	t.Helper()
	linSchema(t, d, db)
	// K consecutive ids no other run gets (the tables outlive runs on
	// PostgreSQL and MariaDB): a random multiple of K below 2^50.
	base := rand.Int64N(1<<50/linRegisters) * linRegisters
	for k := range linRegisters {
		if err := db.Exec("INSERT INTO gft_lin_reg (id, val) VALUES (?, 0)", base+int64(k)).Error; err != nil {
			t.Fatal(err)
		}
		if err := db.Exec("INSERT INTO gft_lin_name (id, name) VALUES (?, ?)", base+int64(k), fmt.Sprintf("r%d", k)).Error; err != nil {
			t.Fatal(err)
		}
	}
	return linRegs{base: base}
}

func (r linRegs) id(k int) int64 { return r.base + int64(k) }

// Reads. Each returns the value of register k, or of every register.

func (r linRegs) readFirst(db *gorm.DB, k int) (int64, error) {
	var reg linReg
	err := db.Scopes(Cache(time.Minute)).First(&reg, r.id(k)).Error
	return reg.Val, err
}

func (r linRegs) readAll(db *gorm.DB) ([]int64, error) {
	var regs []linReg
	err := db.Scopes(Cache(time.Minute)).
		Raw("SELECT id, val FROM gft_lin_reg WHERE id BETWEEN ? AND ? ORDER BY id", r.id(0), r.id(linRegisters-1)).
		Scan(&regs).Error
	if err != nil {
		return nil, err
	}
	if len(regs) != linRegisters {
		return nil, fmt.Errorf("aggregate read %d registers, want %d", len(regs), linRegisters)
	}
	out := make([]int64, linRegisters)
	for i, reg := range regs {
		if reg.ID != r.id(i) {
			return nil, fmt.Errorf("aggregate row %d has id %d", i, reg.ID)
		}
		out[i] = reg.Val
	}
	return out, nil
}

func (r linRegs) readJoin(db *gorm.DB, k int) (int64, error) {
	var row struct {
		Val  int64
		Name string
	}
	err := db.Scopes(Cache(time.Minute)).
		Raw("SELECT r.val, n.name FROM gft_lin_reg r JOIN gft_lin_name n ON n.id = r.id WHERE r.id = ?", r.id(k)).
		Scan(&row).Error
	if err == nil && row.Name != fmt.Sprintf("r%d", k) {
		err = fmt.Errorf("join read of r%d returned name %q", k, row.Name)
	}
	return row.Val, err
}

// Writes.

func (r linRegs) writeUpdate(db *gorm.DB, k int, v int64) error {
	return db.Model(&linReg{}).Where("id = ?", r.id(k)).Update("val", v).Error
}

func (r linRegs) writeTx(db *gorm.DB, k int, v int64) error {
	return db.Transaction(func(tx *gorm.DB) error {
		return tx.Model(&linReg{}).Where("id = ?", r.id(k)).Update("val", v).Error
	})
}

func (r linRegs) writeExec(db *gorm.DB, k int, v int64) error {
	return db.Exec("UPDATE gft_lin_reg SET val = ? WHERE id = ?", v, r.id(k)).Error
}

// linRecorder collects operations with call and return times on one
// monotonic clock.
type linRecorder struct {
	epoch time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	kinds map[string]int
}

func newLinRecorder() *linRecorder {
	return &linRecorder{epoch: time.Now(), kinds: map[string]int{}}
}

func (l *linRecorder) now() int64 { return time.Since(l.epoch).Nanoseconds() }

func (l *linRecorder) add(kind string, ops ...porcupine.Operation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, ops...)
	l.kinds[kind]++
}

// linWorker runs n random operations on in, as client id. Writers write
// distinct values: id*1e6 + sequence. writeDB, when not nil, replaces in's
// handle for writes; keys limits the registers it uses.
func linWorker(t *testing.T, rec *linRecorder, regs linRegs, in *instance, writeDB *gorm.DB, id, n int, keys []int) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	if writeDB == nil {
		writeDB = in.db
	}
	seq := int64(0)
	for range n {
		k := keys[rng.IntN(len(keys))]
		call := rec.now()
		op := rng.IntN(100)
		switch {
		case op < 18: // write
			seq++
			v := int64(id+1)*1_000_000 + seq
			var err error
			var kind string
			switch op % 3 {
			case 0:
				kind, err = "write Update", regs.writeUpdate(writeDB, k, v)
			case 1:
				kind, err = "write Transaction", regs.writeTx(writeDB, k, v)
			default:
				kind, err = "write Exec", regs.writeExec(writeDB, k, v)
			}
			ret := rec.now()
			if err != nil {
				// It may or may not have happened: it stays pending forever.
				t.Errorf("worker %d: %s r%d := %d: %v", id, kind, k, v, err)
				ret = 1 << 62
			}
			rec.add(kind, porcupine.Operation{ClientId: id, Input: linInput{key: k, write: true, val: v}, Call: call, Output: int64(0), Return: ret, Metadata: fmt.Sprintf("w%d %s", id, kind)})
		case op < 50:
			v, err := regs.readFirst(in.db, k)
			ret := rec.now()
			if err != nil {
				t.Errorf("worker %d: First r%d: %v", id, k, err)
				continue
			}
			rec.add("read First", porcupine.Operation{ClientId: id, Input: linInput{key: k, q: "First"}, Call: call, Output: v, Return: ret, Metadata: fmt.Sprintf("w%d First", id)})
		case op < 75:
			vals, err := regs.readAll(in.db)
			ret := rec.now()
			if err != nil {
				t.Errorf("worker %d: aggregate: %v", id, err)
				continue
			}
			// One snapshot of every register: a read of each, all with
			// the same interval.
			ops := make([]porcupine.Operation, 0, len(keys))
			for _, kk := range keys {
				ops = append(ops, porcupine.Operation{ClientId: id, Input: linInput{key: kk, q: "aggregate"}, Call: call, Output: vals[kk], Return: ret, Metadata: fmt.Sprintf("w%d aggregate", id)})
			}
			rec.add("read aggregate", ops...)
		default:
			v, err := regs.readJoin(in.db, k)
			ret := rec.now()
			if err != nil {
				t.Errorf("worker %d: join r%d: %v", id, k, err)
				continue
			}
			rec.add("read join", porcupine.Operation{ClientId: id, Input: linInput{key: k, q: "join"}, Call: call, Output: v, Return: ret, Metadata: fmt.Sprintf("w%d join", id)})
		}
	}
}

// linCheck runs porcupine with model.
func linCheck(t *testing.T, label string, model porcupine.Model, ops []porcupine.Operation) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	t.Helper()
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, ops, 60*time.Second)
	t.Logf("porcupine (%s): %s for %d operations in %v", label, res, len(ops), time.Since(start).Round(time.Millisecond))
	return res, info
}

// linVisualize writes porcupine's visualization of a failed check and logs
// where.
func linVisualize(t *testing.T, model porcupine.Model, info porcupine.LinearizationInfo) {
	t.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("gormflight-%s-%d.html", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano()))
	if err := porcupine.VisualizePath(model, info, path); err != nil {
		t.Logf("porcupine visualization: %v", err)
		return
	}
	t.Logf("porcupine visualization: %s", path)
}

func TestLinearizability(t *testing.T) {
	forEachDB(t, testLinearizability)
}

func testLinearizability(t *testing.T, d *testDB) {
	const workers, opsPerWorker = 8, 600
	ins := d.instances(t, 3, nil)
	regs := linNewRegs(t, d, ins[0].db)
	all := make([]int, linRegisters)
	for k := range all {
		all[k] = k
	}
	rec := newLinRecorder()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			linWorker(t, rec, regs, ins[w%len(ins)], nil, w, opsPerWorker, all)
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(began)
	if t.Failed() {
		t.FailNow()
	}

	s := sumStats(ins...)
	t.Logf("%d workers x %d calls in %v: %d porcupine operations; calls by kind %v", workers, opsPerWorker, elapsed.Round(time.Millisecond), len(rec.ops), rec.kinds)
	t.Logf("plugin stats summed over instances: hits %d, misses %d, loads %d, fallbacks %d, shared %d, waits %d, invalidations %d, invalidation errors %d",
		s.Hits, s.Misses, s.Loads, s.Fallbacks, s.Shared, s.Waits, s.Invalidations, s.InvalidationErrors)
	if s.Hits == 0 {
		t.Errorf("no read was served from the cache: the history says nothing about it")
	}

	// 1. Read after write, across every query: no read returns a value that
	// a write which returned before the read began had replaced.
	stale, inversions := linExplain(t, rec.ops)
	if stale != 0 {
		t.Errorf("%d reads returned a value replaced by a write that had returned before they began", stale)
	}
	// 2. Linearizable per cache key (README): the reads through one cached
	// query, against every write of the register.
	if res, info := linCheck(t, "per register and query", linQueryModel(), linPerQuery(rec.ops)); res != porcupine.Ok {
		t.Errorf("porcupine per register and query: %s, want %s", res, porcupine.Ok)
		linVisualize(t, linQueryModel(), info)
	}
	// 3. Linearizable per register across queries: the cached First, the
	// aggregate and the join all read one register. Writes announce
	// themselves before they commit, so no query's entry answers between a
	// write's COMMIT and its bump (TestConsistencyCommitToBumpWindow).
	res, info := linCheck(t, "per register, across queries", linModel(), rec.ops)
	if res != porcupine.Ok {
		t.Errorf("porcupine per register: %s (stale reads %d, new-then-old pairs %d), want %s", res, stale, inversions, porcupine.Ok)
		linVisualize(t, linModel(), info)
	}
}

// The checker must catch a real violation: writes made through a GORM
// handle without the plugin bump nothing, so the instances keep serving the
// register's old value after the write has returned.
func TestLinearizabilityCheckerCatchesMissingInvalidation(t *testing.T) {
	forEachDB(t, testCheckerCatchesMissingInvalidation)
}

func testCheckerCatchesMissingInvalidation(t *testing.T, d *testDB) {
	// run builds a history on fresh instances and registers. writer (nil:
	// the instances themselves) makes every write.
	run := func(t *testing.T, plainWrites bool) (porcupine.CheckResult, int, []int64) {
		ins := d.instances(t, 2, nil)
		regs := linNewRegs(t, d, ins[0].db)
		var writer *gorm.DB
		if plainWrites {
			writer = d.open(t) // no plugin: its writes bump nothing
		}
		rec := newLinRecorder()
		var wg sync.WaitGroup
		// Background load on registers 1..K-1.
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				linWorker(t, rec, regs, ins[w%len(ins)], writer, w+1, 60, []int{1, 2, 3})
			}()
		}
		// On register 0, client 0 alone writes: read, read, write, read, read.
		reads := make([]int64, 0, 4)
		read := func(in *instance) {
			call := rec.now()
			v, err := regs.readFirst(in.db, 0)
			ret := rec.now()
			if err != nil {
				t.Fatal(err)
			}
			reads = append(reads, v)
			rec.add("read First", porcupine.Operation{ClientId: 0, Input: linInput{key: 0, q: "First"}, Call: call, Output: v, Return: ret, Metadata: "c0 First"})
		}
		read(ins[0])
		read(ins[1])
		w := writer
		if w == nil {
			w = ins[0].db
		}
		const v = 7_000_001
		call := rec.now()
		if err := regs.writeUpdate(w, 0, v); err != nil {
			t.Fatal(err)
		}
		rec.add("write Update", porcupine.Operation{ClientId: 0, Input: linInput{key: 0, write: true, val: v}, Call: call, Output: int64(0), Return: rec.now(), Metadata: "c0 write Update"})
		read(ins[0])
		read(ins[1])
		wg.Wait()
		t.Logf("%d operations (calls by kind %v); register 0 read %v around writing %d", len(rec.ops), rec.kinds, reads, v)
		stale, _ := linExplain(t, rec.ops)
		res, _ := linCheck(t, "per register and query", linQueryModel(), linPerQuery(rec.ops))
		return res, stale, reads
	}

	t.Run("WithoutInvalidation", func(t *testing.T) {
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
			t.Errorf("%d stale reads with invalidation in place", stale)
		}
		if reads[2] != 7_000_001 || reads[3] != 7_000_001 {
			t.Errorf("with the plugin writing, register 0 read %v, want 7000001 after the write", reads)
		}
		if res != porcupine.Ok {
			t.Errorf("porcupine: %s with invalidation in place, want %s", res, porcupine.Ok)
		}
	})
}

// linExplain logs, per register, the reads that explain a violation:
// reads of a value that a later write had replaced before the read began
// (stale after the write returned), and pairs of reads where a read that
// began after another had returned saw an older value (new-then-old, which
// can happen only while the newer write is still in progress).
func linExplain(t *testing.T, ops []porcupine.Operation) (stale, inversions int) {
	t.Helper()
	writes := map[int64]porcupine.Operation{0: {Call: -1 << 62, Return: -1 << 62}}
	for _, op := range ops {
		if in := op.Input.(linInput); in.write {
			writes[in.val] = op
		}
	}
	desc := func(op porcupine.Operation) string {
		in, ok := op.Input.(linInput)
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
		in := r.Input.(linInput)
		if in.write {
			continue
		}
		wv, ok := writes[r.Output.(int64)]
		if !ok {
			t.Logf("read of a value never written: %s", desc(r))
			continue
		}
		for _, w := range ops {
			win := w.Input.(linInput)
			if !win.write || win.key != in.key || !later(wv, w) || w.Return >= r.Call {
				continue
			}
			if stale++; stale <= 10 {
				t.Logf("STALE: %s read the value of %s, which %s replaced before the read began", desc(r), desc(wv), desc(w))
			}
			break
		}
		for _, r2 := range ops {
			in2 := r2.Input.(linInput)
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
