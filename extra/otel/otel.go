package gormflightotel

import (
	"context"
	"errors"
	"fmt"

	"github.com/gormflight/gormflight/observe"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/gormflight/gormflight/extra/otel"

// Names of the span, its attributes and the instruments.
const (
	SpanName = "gormflight.cache"

	AttrOutcome = "gormflight.outcome" // observe.Outcome's name: "hit", "load", ...
	AttrKey     = "gormflight.key"     // the cache key's hash, in hex
	AttrTables  = "gormflight.tables"  // the tables the rows depend on
	AttrWait    = "gormflight.wait"    // seconds waited for a load elsewhere
	AttrLoad    = "gormflight.load"    // seconds the database took
	AttrErrType = "error.type"         // the error's Go type, when the statement failed

	MetricRequests     = "gormflight.requests"
	MetricWaitDuration = "gormflight.wait.duration"
	MetricLoadDuration = "gormflight.load.duration"
)

// durationBuckets are the histograms' bucket boundaries, in seconds, from
// a near-cache hit's half millisecond to a load near its 10 s bound; the
// Prometheus adapter uses the same.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Option configures NewObserver.
type Option func(*config)

type config struct {
	tp trace.TracerProvider
	mp metric.MeterProvider
}

// WithTracerProvider sets the provider of the spans' tracer. Default: the
// global one, otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithMeterProvider sets the provider of the instruments' meter. Default:
// the global one, otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// Observer turns gormflight's events into spans and metrics. It is an
// observe.Observer: set it as gormflight.Config.Observer or
// sqlflight.Config.Observer. It is safe for concurrent use.
type Observer struct {
	tracer   trace.Tracer
	requests metric.Int64Counter
	wait     metric.Float64Histogram
	load     metric.Float64Histogram
	// byOutcome is the outcome attribute of each outcome's measurements,
	// made once: a measurement then allocates no attribute set.
	byOutcome map[observe.Outcome]metric.MeasurementOption
}

var _ observe.Observer = (*Observer)(nil)

// NewObserver returns an Observer whose spans and instruments come from the
// global providers, or those the options give. It fails when the meter
// refuses an instrument.
func NewObserver(opts ...Option) (*Observer, error) {
	c := config{tp: otel.GetTracerProvider(), mp: otel.GetMeterProvider()}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	meter := c.mp.Meter(ScopeName)
	o := &Observer{tracer: c.tp.Tracer(ScopeName), byOutcome: make(map[observe.Outcome]metric.MeasurementOption)}
	var err error
	if o.requests, err = meter.Int64Counter(MetricRequests, metric.WithUnit("{request}"),
		metric.WithDescription("Statements that asked for the cache, by how the cache answered them (gormflight.outcome).")); err != nil {
		return nil, err
	}
	if o.wait, err = meter.Float64Histogram(MetricWaitDuration, metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(durationBuckets...),
		metric.WithDescription("How long a statement that waited waited for a load by another instance or another caller's flight.")); err != nil {
		return nil, err
	}
	if o.load, err = meter.Float64Histogram(MetricLoadDuration, metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(durationBuckets...),
		metric.WithDescription("How long the database took for the queries the cache ran (load, fallback) or let through (bypass).")); err != nil {
		return nil, err
	}
	for _, oc := range append(observe.Outcomes(), 0) {
		o.byOutcome[oc] = metric.WithAttributeSet(attribute.NewSet(attribute.String(AttrOutcome, oc.String())))
	}
	return o, nil
}

// Observe records ev: a span named gormflight.cache from ev.Start to its
// end, a child of the span in ctx, with the outcome, the key, the tables
// and the times as attributes (never SQL or argument values: an error
// sets the span's status with its kind only, since a database's message
// may quote values); one count of gormflight.requests; and the wait and
// the load, when there was one, in their histograms, by outcome.
func (o *Observer) Observe(ctx context.Context, ev observe.Event) {
	_, span := o.tracer.Start(ctx, SpanName,
		trace.WithTimestamp(ev.Start), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(
			attribute.String(AttrOutcome, ev.Outcome.String()),
			attribute.String(AttrKey, ev.Key),
			attribute.StringSlice(AttrTables, ev.Tables),
			attribute.Float64(AttrWait, ev.Wait.Seconds()),
			attribute.Float64(AttrLoad, ev.Load.Seconds()),
		))
	if ev.Err != nil {
		span.SetAttributes(attribute.String(AttrErrType, fmt.Sprintf("%T", ev.Err)))
		span.SetStatus(codes.Error, errorDescription(ev.Err))
	}
	span.End(trace.WithTimestamp(ev.Start.Add(ev.Duration)))

	by, ok := o.byOutcome[ev.Outcome]
	if !ok {
		by = o.byOutcome[0]
	}
	o.requests.Add(ctx, 1, by)
	if ev.Wait > 0 {
		o.wait.Record(ctx, ev.Wait.Seconds(), by)
	}
	if ev.Load > 0 {
		o.load.Record(ctx, ev.Load.Seconds(), by)
	}
}

// errorDescription is a span status's description for err: the context's
// own errors as they are, any other as what failed, since the database's
// message may quote the statement's values.
func errorDescription(err error) string {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err.Error()
	}
	return "gormflight: the statement failed"
}
