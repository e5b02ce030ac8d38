package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// result is what a run measured.
type result struct {
	plain phaseResult // without the plugin
	cold  phaseResult // with it, on the cold key
	warm  phaseResult // with it, on the key phase 2 stored
}

// printTable writes one line per phase.
func printTable(w io.Writer, r result) {
	fmt.Fprintln(w) // after the progress lines, when they share a terminal
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	phases := []phaseResult{r.plain, r.cold, r.warm}
	// Numbers align right; names are padded to one width so they read
	// left-aligned.
	width := 0
	for _, p := range phases {
		width = max(width, len(p.name))
	}
	fmt.Fprintf(tw, "%-*s\tcallers\tdb executions\tp50\tp99\tfailed\thits\tloads\tshared\twaits\tfallbacks\t\n", width, "phase")
	for _, p := range phases {
		fmt.Fprintf(tw, "%-*s\t%d\t%d\t%s\t%s\t%d\t%s\t\n", width, p.name, len(p.latencies), p.executions,
			ms(p.percentile(50)), ms(p.percentile(99)), p.errors+p.wrong, p.stats)
	}
	tw.Flush()
	fmt.Fprintln(w, "\ndb executions: demo_slow calls counted by SQLite; hits, loads, shared, waits, fallbacks: gormflight's Stats summed over the instances")
}

// String formats the counters as cells of the table, dashes without a
// plugin.
func (c *counts) String() string {
	if c == nil {
		return "-\t-\t-\t-\t-"
	}
	return fmt.Sprintf("%d\t%d\t%d\t%d\t%d", c.hits, c.loads, c.shared, c.waits, c.fallbacks)
}

// ms formats d in milliseconds, with a tenth for short ones.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// check reports what the run must show: every caller got the reference
// rows, and with the plugin the query ran once for the cold key and not
// at all for the warm one.
func (r result) check() error {
	var errs []error
	for _, p := range []phaseResult{r.plain, r.cold, r.warm} {
		if p.errors+p.wrong > 0 {
			errs = append(errs, fmt.Errorf("%s: %d of %d callers failed (%d errors, %d wrong rows); first: %w",
				p.name, p.errors+p.wrong, len(p.latencies), p.errors, p.wrong, p.firstErr))
		}
	}
	if r.cold.executions != 1 {
		errs = append(errs, fmt.Errorf("%s: the query ran %d times, want once for the key", r.cold.name, r.cold.executions))
	}
	if r.warm.executions != 0 {
		errs = append(errs, fmt.Errorf("%s: the query ran %d times, want 0: the key was stored", r.warm.name, r.warm.executions))
	}
	return errors.Join(errs...)
}
