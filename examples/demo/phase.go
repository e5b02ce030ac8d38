package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/gormflight/gormflight"
)

// phaseResult is what one phase measured.
type phaseResult struct {
	name       string
	executions int64           // demo_slow calls SQLite made during the phase
	latencies  []time.Duration // each caller's, from the release, sorted
	errors     int             // callers whose query failed
	wrong      int             // callers whose rows differ from the reference
	firstErr   error           // the first failure, to show what went wrong
	stats      *counts         // the plugins' counters during the phase; nil without them
}

// outcome is one caller's answer.
type outcome struct {
	took time.Duration
	err  error
	rows []product
}

// runPhase releases opts.callers callers on each handle at once, all on
// the same query, and waits for every one of them. With plugins (installed
// on dbs) the query is opted into the cache.
func runPhase(ctx context.Context, name string, dbs []*gorm.DB, plugins []*gormflight.Plugin, opts options, want []product) phaseResult {
	statsBefore, execsBefore := sumStats(plugins), executions.Load()
	n := len(dbs) * opts.callers
	// Buffered, so that no caller blocks on sending once it has answered.
	outcomes := make(chan outcome, n)
	start := make(chan struct{})
	var scopes []func(*gorm.DB) *gorm.DB
	if plugins != nil {
		scopes = append(scopes, gormflight.Cache(time.Minute))
	}
	var released time.Time
	for _, db := range dbs {
		for range opts.callers {
			go func() {
				<-start
				rows, err := fetch(ctx, db, opts.query, scopes...)
				outcomes <- outcome{took: time.Since(released), err: err, rows: rows}
			}()
		}
	}
	// The callers read released only after start is closed, which orders
	// the write before their reads.
	released = time.Now()
	close(start)

	res := phaseResult{name: name}
	for i := range n {
		o := <-outcomes
		res.record(o, want)
		opts.progress.update(name, i+1, n)
	}
	slices.Sort(res.latencies)
	res.executions = executions.Load() - execsBefore
	if plugins != nil {
		d := sumStats(plugins).minus(statsBefore)
		res.stats = &d
	}
	return res
}

// progress reports how many callers of a phase are done.
type progress struct {
	w    io.Writer // nil: no report
	live bool      // rewrite one line as callers finish; else write the phase's last count only
}

// update reports that done of the phase's n callers are done.
func (p progress) update(phase string, done, n int) {
	if p.w == nil || !p.live && done < n {
		return
	}
	if p.live {
		fmt.Fprint(p.w, "\r")
	}
	fmt.Fprintf(p.w, "  %s: %d/%d callers done", phase, done, n)
	if done == n {
		fmt.Fprintln(p.w)
	}
}

// record adds one caller's outcome to the phase.
func (r *phaseResult) record(o outcome, want []product) {
	r.latencies = append(r.latencies, o.took)
	switch {
	case o.err != nil:
		r.errors++
		if r.firstErr == nil {
			r.firstErr = o.err
		}
	case !slices.Equal(o.rows, want):
		r.wrong++
		if r.firstErr == nil {
			r.firstErr = fmt.Errorf("got %d rows %v, want %d rows %v", len(o.rows), o.rows, len(want), want)
		}
	}
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// the sorted latencies.
func (r *phaseResult) percentile(p int) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := (p*len(r.latencies)+99)/100 - 1
	return r.latencies[max(i, 0)]
}

// counts are the plugin counters the demo shows, summed over instances.
type counts struct {
	hits, loads, shared, waits, fallbacks uint64
}

// sumStats adds up the counters of every plugin: each counts its own
// instance only.
func sumStats(plugins []*gormflight.Plugin) counts {
	var c counts
	for _, p := range plugins {
		s := p.Stats()
		c.hits += s.Hits
		c.loads += s.Loads
		c.shared += s.Shared
		c.waits += s.Waits
		c.fallbacks += s.Fallbacks
	}
	return c
}

// minus returns the counts since before.
func (c counts) minus(before counts) counts {
	return counts{
		hits:      c.hits - before.hits,
		loads:     c.loads - before.loads,
		shared:    c.shared - before.shared,
		waits:     c.waits - before.waits,
		fallbacks: c.fallbacks - before.fallbacks,
	}
}
