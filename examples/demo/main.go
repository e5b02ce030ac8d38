// Command demo shows gormflight collapsing a cold cache key across several
// application instances, with nothing to install: Redis is an in-process
// miniredis and the database a temporary SQLite file.
//
// It starts -instances simulated instances, each with its own *gorm.DB,
// Redis client and plugin, and releases -callers callers per instance at
// once on one slow query. The query runs first without the plugin, then
// with it on the cold key, then on the warm key. SQLite counts the query's
// executions itself: the query calls demo_slow, a Go function that sleeps
// and counts. See README.md next to this file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"
)

// options sizes a run.
type options struct {
	instances int           // simulated application instances
	callers   int           // callers per instance, all released at once
	query     time.Duration // how long one execution of the query sleeps
	progress  progress      // where and how callers' progress is shown
}

// shortOptions is the run of -short and of the test: small enough for the
// race detector, still two instances so that one has to wait for the other.
var shortOptions = options{instances: 2, callers: 5, query: 50 * time.Millisecond}

func main() {
	instances := flag.Int("instances", 4, "simulated application instances")
	callers := flag.Int("callers", 25, "concurrent callers per instance")
	queryMS := flag.Int("query-ms", 200, "milliseconds one execution of the query takes")
	short := flag.Bool("short", false, "a small run for CI: 2 instances x 5 callers, a 50 ms query (overrides the three flags above)")
	flag.Parse()

	opts := options{instances: *instances, callers: *callers, query: time.Duration(*queryMS) * time.Millisecond}
	if *short {
		opts = shortOptions
	}
	// A terminal shows the count rising on one line; a log gets one line
	// per phase instead of a hundred carriage returns.
	fi, err := os.Stderr.Stat()
	opts.progress = progress{w: os.Stderr, live: err == nil && fi.Mode()&os.ModeCharDevice != 0}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, opts, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		stop()
		os.Exit(1)
	}
}

// run sets up the database, Redis and the instances, runs the three phases
// on one key, prints their figures to w and checks them: the error says
// what went wrong, and the result holds the figures either way.
func run(ctx context.Context, opts options, w io.Writer) (result, error) {
	if opts.instances < 1 || opts.callers < 1 || opts.query < 0 {
		return result{}, errors.New("need at least one instance, one caller per instance and a query time of 0 or more")
	}
	env, err := newEnv(ctx)
	if err != nil {
		return result{}, err
	}
	defer env.close()

	fmt.Fprintf(w, "%d instances x %d callers, one key, query sleeps %v per execution\n",
		opts.instances, opts.callers, opts.query)
	res, err := runPhases(ctx, env, opts)
	if err != nil {
		return res, err
	}
	printTable(w, res)
	return res, res.check()
}

// runPhases runs the phases in order on one cold key: plain GORM, then the
// plugin while the key is cold, then the plugin on the key it stored.
func runPhases(ctx context.Context, env *env, opts options) (result, error) {
	want, err := env.reference(ctx, opts.query)
	if err != nil {
		return result{}, fmt.Errorf("reference query: %w", err)
	}
	var res result

	plain, err := env.openPlain(opts.instances)
	if err != nil {
		return res, err
	}
	res.plain = runPhase(ctx, "phase 1 (without gormflight)", plain, nil, opts, want)
	closeAll(plain)

	cluster, err := env.openCluster(opts.instances)
	if err != nil {
		return res, err
	}
	defer cluster.close()
	res.cold = runPhase(ctx, "phase 2 (gormflight, cold key)", cluster.dbs, cluster.plugins, opts, want)
	res.warm = runPhase(ctx, "phase 3 (gormflight, warm key)", cluster.dbs, cluster.plugins, opts, want)
	return res, nil
}
