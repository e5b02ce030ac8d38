package gormflightprom

import (
	"context"

	"github.com/gormflight/gormflight/observe"
	"github.com/prometheus/client_golang/prometheus"
)

// Namespace is the first part of every metric's name.
const Namespace = "gormflight"

// Names of the Observer's metrics and of their label.
const (
	MetricRequests = "gormflight_requests_total"
	MetricWait     = "gormflight_wait_seconds"
	MetricLoad     = "gormflight_load_seconds"
	LabelOutcome   = "outcome"
)

// DurationBuckets are the histograms' bucket boundaries, in seconds, from
// a near-cache hit's half millisecond to a load near its 10 s bound; the
// OpenTelemetry adapter uses the same.
var DurationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Option configures NewCollector and NewObserver.
type Option func(*options)

type options struct {
	constLabels prometheus.Labels
}

// WithConstLabels adds labels of fixed values to every metric, for
// instance to tell two plugins of one process apart ({"db": "orders"}).
// Default: none.
func WithConstLabels(l prometheus.Labels) Option {
	return func(o *options) { o.constLabels = l }
}

func newOptions(opts []Option) options {
	var o options
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	return o
}

// Collector exports the counters of a Plugin's (or a Connector's) Stats
// as Prometheus counters, gormflight_<name>_total (observe.Counter's
// Name), read at each scrape. Register it once per plugin, with
// WithConstLabels when one registry serves several plugins. It is safe for
// concurrent use.
type Collector struct {
	stats func() observe.Stats
	descs []*prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector that reads stats at each scrape: pass
// the plugin's Stats method.
func NewCollector(stats func() observe.Stats, opts ...Option) *Collector {
	o := newOptions(opts)
	counts := observe.Stats{}.Counters()
	c := &Collector{stats: stats, descs: make([]*prometheus.Desc, len(counts))}
	for i, n := range counts {
		c.descs[i] = prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", n.Name+"_total"), n.Help, nil, o.constLabels)
	}
	return c
}

// Describe sends the descriptions of every counter.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect reads the Stats once and sends every counter.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for i, n := range c.stats().Counters() {
		ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.CounterValue, float64(n.Value))
	}
}

// Observer counts gormflight's events by outcome and records their waits
// and loads in histograms. It is an observe.Observer, for
// gormflight.Config.Observer or sqlflight.Config.Observer, and a
// prometheus.Collector: register it. It is safe for concurrent use.
type Observer struct {
	requests *prometheus.CounterVec
	wait     *prometheus.HistogramVec
	load     *prometheus.HistogramVec
}

var (
	_ observe.Observer     = (*Observer)(nil)
	_ prometheus.Collector = (*Observer)(nil)
)

// NewObserver returns an Observer. Its gormflight_requests_total has a
// series for every outcome from the start, so that rates start at zero.
func NewObserver(opts ...Option) *Observer {
	o := newOptions(opts)
	obs := &Observer{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        MetricRequests,
			Help:        "Statements that asked for the cache, by how the cache answered them: hit, local_hit, shared, wait, load, fallback or bypass.",
			ConstLabels: o.constLabels,
		}, []string{LabelOutcome}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        MetricWait,
			Help:        "How long statements waited for a load by another instance or another caller's flight, by outcome.",
			ConstLabels: o.constLabels,
			Buckets:     DurationBuckets,
		}, []string{LabelOutcome}),
		load: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        MetricLoad,
			Help:        "How long the database took for the queries the cache ran (load, fallback) or let through (bypass), by outcome.",
			ConstLabels: o.constLabels,
			Buckets:     DurationBuckets,
		}, []string{LabelOutcome}),
	}
	for _, oc := range observe.Outcomes() {
		obs.requests.WithLabelValues(oc.String())
	}
	return obs
}

// Observe counts ev by its outcome, and records its wait and its load,
// when there was one.
func (o *Observer) Observe(_ context.Context, ev observe.Event) {
	outcome := ev.Outcome.String()
	o.requests.WithLabelValues(outcome).Inc()
	if ev.Wait > 0 {
		o.wait.WithLabelValues(outcome).Observe(ev.Wait.Seconds())
	}
	if ev.Load > 0 {
		o.load.WithLabelValues(outcome).Observe(ev.Load.Seconds())
	}
}

// Describe sends the descriptions of the Observer's metrics.
func (o *Observer) Describe(ch chan<- *prometheus.Desc) {
	o.requests.Describe(ch)
	o.wait.Describe(ch)
	o.load.Describe(ch)
}

// Collect sends the Observer's metrics.
func (o *Observer) Collect(ch chan<- prometheus.Metric) {
	o.requests.Collect(ch)
	o.wait.Collect(ch)
	o.load.Collect(ch)
}
