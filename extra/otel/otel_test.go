package gormflightotel_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	gormflightotel "github.com/gormflight/gormflight/extra/otel"
	"github.com/gormflight/gormflight/internal/extratest"
	"github.com/gormflight/gormflight/observe"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// providers are an SDK tracer provider whose ended spans a recorder keeps,
// and an SDK meter provider read by hand.
type providers struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newProviders(t *testing.T) *providers {
	p := &providers{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	p.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(p.spans))
	p.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(p.reader))
	t.Cleanup(func() {
		_ = p.tp.Shutdown(context.Background())
		_ = p.mp.Shutdown(context.Background())
	})
	return p
}

// cacheSpans returns the ended spans named gormflight.cache.
func (p *providers) cacheSpans() []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range p.spans.Ended() {
		if s.Name() == gormflightotel.SpanName {
			out = append(out, s)
		}
	}
	return out
}

// collect returns the metrics collected now, by name.
func (p *providers) collect(t *testing.T) map[string]metricdata.Metrics {
	var rm metricdata.ResourceMetrics
	if err := p.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]metricdata.Metrics)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := make(map[attribute.Key]attribute.Value)
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

var hexKey = regexp.MustCompile(`^[0-9a-f]{32}$`)

// Each cached statement of a real scenario is a span, a child of the
// request's span, with its outcome, key, tables and times, and an error
// status when it failed; no span holds SQL or argument values.
func TestSpans(t *testing.T) {
	pr := newProviders(t)
	obs, err := gormflightotel.NewObserver(gormflightotel.WithTracerProvider(pr.tp), gormflightotel.WithMeterProvider(pr.mp))
	if err != nil {
		t.Fatal(err)
	}
	ctx, parent := pr.tp.Tracer("test").Start(context.Background(), "request")
	played := extratest.Play(t, ctx, extratest.New(t), obs)
	parent.End()

	spans := pr.cacheSpans()
	if len(spans) != len(played.Outcomes) {
		t.Fatalf("%d gormflight.cache spans, want %d", len(spans), len(played.Outcomes))
	}
	var outcomes []observe.Outcome
	for _, s := range spans {
		a := attrs(s)
		for _, o := range observe.Outcomes() {
			if a[gormflightotel.AttrOutcome].AsString() == o.String() {
				outcomes = append(outcomes, o)
			}
		}
		checkSpan(t, s, a, parent.SpanContext().SpanID(), played.Tags)
	}
	for _, o := range observe.Outcomes() {
		if got, want := extratest.Count(outcomes, o), extratest.Count(played.Outcomes, o); got != want {
			t.Errorf("%d spans of outcome %s, want %d", got, o, want)
		}
	}
	failed := spans[len(spans)-1]
	if failed.Status().Code != codes.Error || attrs(failed)[gormflightotel.AttrErrType].AsString() == "" {
		t.Errorf("the failed statement's span has status %+v and attributes %v", failed.Status(), failed.Attributes())
	}
	if strings.Contains(failed.Status().Description, "9223372036854775808") {
		t.Errorf("the error status %q holds the argument", failed.Status().Description)
	}
}

// checkSpan checks a span's parent, times and attributes, and that it
// holds no SQL and none of the secrets.
func checkSpan(t *testing.T, s sdktrace.ReadOnlySpan, a map[attribute.Key]attribute.Value, parent fmt.Stringer, secrets []string) {
	t.Helper()
	outcome := a[gormflightotel.AttrOutcome].AsString()
	if s.Parent().SpanID().String() != parent.String() {
		t.Errorf("%s span's parent is %s, want the request's span %s", outcome, s.Parent().SpanID(), parent)
	}
	if !s.EndTime().After(s.StartTime()) {
		t.Errorf("%s span from %v to %v", outcome, s.StartTime(), s.EndTime())
	}
	if key := a[gormflightotel.AttrKey].AsString(); outcome != "bypass" && !hexKey.MatchString(key) {
		t.Errorf("%s span's key %q, want 32 hex digits", outcome, key)
	}
	if tables := a[gormflightotel.AttrTables].AsStringSlice(); !slices.Equal(tables, []string{extratest.Table}) {
		t.Errorf("%s span's tables %q, want [%s]", outcome, tables, extratest.Table)
	}
	switch outcome {
	case "load":
		if a[gormflightotel.AttrLoad].AsFloat64() <= 0 {
			t.Errorf("load span with %s %v", gormflightotel.AttrLoad, a[gormflightotel.AttrLoad].Emit())
		}
	case "wait":
		if a[gormflightotel.AttrWait].AsFloat64() <= 0 {
			t.Errorf("wait span with %s %v", gormflightotel.AttrWait, a[gormflightotel.AttrWait].Emit())
		}
	}
	all := fmt.Sprint(s.Name(), s.Attributes(), s.Status(), s.Events())
	for _, secret := range append(slices.Clone(secrets), "SELECT", "gft_record", "9223372036854775808") {
		if strings.Contains(all, secret) {
			t.Errorf("%s span holds %q: %s", outcome, secret, all)
		}
	}
}

// The metrics of a real scenario: requests by outcome, the wait and the
// load histograms, and the Stats counters RegisterStats observes.
func TestMetrics(t *testing.T) {
	pr := newProviders(t)
	obs, err := gormflightotel.NewObserver(gormflightotel.WithTracerProvider(pr.tp), gormflightotel.WithMeterProvider(pr.mp))
	if err != nil {
		t.Fatal(err)
	}
	played := extratest.Play(t, context.Background(), extratest.New(t), obs)
	regA, err := gormflightotel.RegisterStats(pr.mp.Meter("test-a"), played.A.P.Stats)
	if err != nil {
		t.Fatal(err)
	}
	defer regA.Unregister()
	ms := pr.collect(t)

	requests := sumByOutcome(t, ms[gormflightotel.MetricRequests])
	for _, o := range observe.Outcomes() {
		if got, want := requests[o.String()], int64(extratest.Count(played.Outcomes, o)); got != want {
			t.Errorf("%s{outcome=%s} = %d, want %d", gormflightotel.MetricRequests, o, got, want)
		}
	}
	// Every load and the bypass took database time; the wait waited.
	loads := histCounts(t, ms[gormflightotel.MetricLoadDuration])
	waits := histCounts(t, ms[gormflightotel.MetricWaitDuration])
	if loads["load"] != 3 || loads["bypass"] != 1 || loads["hit"] != 0 || waits["wait"] != 1 || waits["load"] != 0 {
		t.Errorf("load duration counts %v, wait duration counts %v", loads, waits)
	}
	// Instance A ran three loads (two stored, one failed), each after a
	// miss, and one statement uncached.
	want := played.A.P.Stats()
	for _, c := range want.Counters() {
		m, ok := ms[gormflightotel.MetricStatsPrefix+c.Name]
		if !ok {
			t.Errorf("no metric %s", gormflightotel.MetricStatsPrefix+c.Name)
			continue
		}
		sum, _ := m.Data.(metricdata.Sum[int64])
		if len(sum.DataPoints) != 1 || sum.DataPoints[0].Value != int64(c.Value) || !sum.IsMonotonic {
			t.Errorf("%s = %+v, want one monotonic point of %d", m.Name, m.Data, c.Value)
		}
	}
	if want.Loads != 3 || want.Misses != 3 || want.Bypassed != 1 {
		t.Errorf("instance A's Stats %+v, want 3 loads, 3 misses, 1 bypass", want)
	}
}

// sumByOutcome returns a counter's values by outcome attribute.
func sumByOutcome(t *testing.T, m metricdata.Metrics) map[string]int64 {
	t.Helper()
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is %T, want a sum", m.Name, m.Data)
	}
	out := make(map[string]int64)
	for _, dp := range sum.DataPoints {
		v, _ := dp.Attributes.Value(gormflightotel.AttrOutcome)
		out[v.AsString()] += dp.Value
	}
	return out
}

// histCounts returns a histogram's counts by outcome attribute.
func histCounts(t *testing.T, m metricdata.Metrics) map[string]uint64 {
	t.Helper()
	out := make(map[string]uint64)
	if m.Data == nil {
		return out // nothing recorded
	}
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s is %T, want a histogram", m.Name, m.Data)
	}
	for _, dp := range h.DataPoints {
		v, _ := dp.Attributes.Value(gormflightotel.AttrOutcome)
		out[v.AsString()] += dp.Count
	}
	return out
}

// Without options the Observer uses the global providers.
func TestGlobalProviders(t *testing.T) {
	pr := newProviders(t)
	prevT, prevM := otel.GetTracerProvider(), otel.GetMeterProvider()
	otel.SetTracerProvider(pr.tp)
	otel.SetMeterProvider(pr.mp)
	t.Cleanup(func() {
		otel.SetTracerProvider(prevT)
		otel.SetMeterProvider(prevM)
	})
	obs, err := gormflightotel.NewObserver()
	if err != nil {
		t.Fatal(err)
	}
	in := extratest.New(t).Instance(t, obs, nil)
	if err := in.Read(context.Background(), "global"); err != nil {
		t.Fatal(err)
	}
	if n := len(pr.cacheSpans()); n != 1 {
		t.Errorf("%d spans on the global tracer provider, want 1", n)
	}
	if got := sumByOutcome(t, pr.collect(t)[gormflightotel.MetricRequests]); got["load"] != 1 {
		t.Errorf("requests on the global meter provider: %v, want load 1", got)
	}
}
