package gormflightotel

import (
	"context"

	"github.com/gormflight/gormflight/observe"
	"go.opentelemetry.io/otel/metric"
)

// MetricStatsPrefix prefixes the names of the Stats counters:
// "gormflight.hits", "gormflight.lock_takeovers", ...
const MetricStatsPrefix = "gormflight."

// RegisterStats registers on meter an observable counter per count of
// observe.Stats, named gormflight.<name> (observe.Counter's Name), which
// read stats at each collection: pass a Plugin's or a Connector's Stats
// method. Unregister the returned registration when the plugin closes. It
// fails when the meter refuses an instrument or the callback.
func RegisterStats(meter metric.Meter, stats func() observe.Stats) (metric.Registration, error) {
	counts := observe.Stats{}.Counters()
	instruments := make([]metric.Int64ObservableCounter, len(counts))
	observables := make([]metric.Observable, len(counts))
	for i, c := range counts {
		in, err := meter.Int64ObservableCounter(MetricStatsPrefix+c.Name, metric.WithDescription(c.Help))
		if err != nil {
			return nil, err
		}
		instruments[i], observables[i] = in, in
	}
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i, c := range stats().Counters() {
			o.ObserveInt64(instruments[i], int64(c.Value)) // #nosec G115 -- counts stay far below 2^63
		}
		return nil
	}, observables...)
}
