package gormflightprom_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	gormflightprom "github.com/gormflight/gormflight/extra/prometheus"
	"github.com/gormflight/gormflight/internal/extratest"
	"github.com/gormflight/gormflight/observe"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// expectedStats is the exposition of s as the Collector must write it,
// with the const label db="main".
func expectedStats(s observe.Stats) string {
	var b strings.Builder
	for _, c := range s.Counters() {
		name := "gormflight_" + c.Name + "_total"
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s{db=\"main\"} %d\n", name, c.Help, name, name, c.Value)
	}
	return b.String()
}

// The Collector exports every Stats counter of a plugin that ran a real
// scenario, with its const labels, in a form promlint accepts.
func TestCollector(t *testing.T) {
	played := extratest.Play(t, context.Background(), extratest.New(t), gormflightprom.NewObserver())
	c := gormflightprom.NewCollector(played.A.P.Stats, gormflightprom.WithConstLabels(prometheus.Labels{"db": "main"}))
	s := played.A.P.Stats()
	if s.Loads != 3 || s.Misses != 3 || s.Bypassed != 1 || s.Hits != 0 {
		t.Fatalf("instance A's Stats %+v, want 3 loads, 3 misses, 1 bypass, no hit", s)
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(expectedStats(s))); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c); n != len(s.Counters()) {
		t.Errorf("%d metrics, want %d", n, len(s.Counters()))
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

// The Observer counts the statements of a real scenario by outcome and
// records the waits and the loads; promlint accepts its metrics, and no
// label holds SQL or argument values.
func TestObserver(t *testing.T) {
	obs := gormflightprom.NewObserver()
	played := extratest.Play(t, context.Background(), extratest.New(t), obs)
	var want strings.Builder
	want.WriteString("# HELP gormflight_requests_total Statements that asked for the cache, by how the cache answered them: hit, local_hit, shared, wait, load, fallback or bypass.\n")
	want.WriteString("# TYPE gormflight_requests_total counter\n")
	for _, o := range observe.Outcomes() {
		fmt.Fprintf(&want, "gormflight_requests_total{outcome=%q} %d\n", o, extratest.Count(played.Outcomes, o))
	}
	if err := testutil.CollectAndCompare(obs, strings.NewReader(want.String()), gormflightprom.MetricRequests); err != nil {
		t.Error(err)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(obs)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := histogramCounts(families)
	// Every load and the bypass took database time; the wait waited.
	wantCounts := map[string]uint64{
		gormflightprom.MetricLoad + "{load}": 3, gormflightprom.MetricLoad + "{bypass}": 1,
		gormflightprom.MetricWait + "{wait}": 1,
	}
	if fmt.Sprint(counts) != fmt.Sprint(wantCounts) {
		t.Errorf("histogram sample counts %v, want %v", counts, wantCounts)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	all := fmt.Sprint(families)
	for _, secret := range append(played.Tags, "SELECT", "gft_record", extratest.Table) {
		if strings.Contains(all, secret) {
			t.Errorf("the metrics hold %q", secret)
		}
	}
}

// histogramCounts returns each histogram series' sample count, as
// "name{outcome}".
func histogramCounts(families []*dto.MetricFamily) map[string]uint64 {
	out := make(map[string]uint64)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				for _, l := range m.GetLabel() {
					if l.GetName() == gormflightprom.LabelOutcome {
						out[f.GetName()+"{"+l.GetValue()+"}"] = h.GetSampleCount()
					}
				}
			}
		}
	}
	return out
}
