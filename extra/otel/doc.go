// Package gormflightotel reports what the gormflight cache does to
// OpenTelemetry: a span per cached statement, and metrics.
//
// It is a module of its own, so that gormflight itself does not depend on
// OpenTelemetry, the way go-redis keeps redisotel apart:
//
//	go get github.com/gormflight/gormflight/extra/otel
//
// NewObserver returns an observe.Observer for gormflight.Config.Observer
// (or sqlflight.Config.Observer). Each statement that asked for the cache
// becomes a span named gormflight.cache, a child of the span in the
// statement's context, from when the plugin took the statement to when its
// result was known, with these attributes:
//
//   - gormflight.outcome: hit, local_hit, shared, wait, load, fallback or
//     bypass (observe.Outcome);
//   - gormflight.key: the cache key, a hash in hex;
//   - gormflight.tables: the tables its rows depend on;
//   - gormflight.wait, gormflight.load: seconds it waited for a load
//     elsewhere, and seconds the database took;
//   - error.type, and an Error status, when it failed.
//
// No span holds SQL text or argument values; GORM's own tracing
// (gorm.io/plugin/opentelemetry) records the statements.
//
// The Observer also counts gormflight.requests by gormflight.outcome and
// records gormflight.wait.duration and gormflight.load.duration, in
// seconds, by outcome. RegisterStats adds an observable counter per count
// of the plugin's Stats (gormflight.hits, gormflight.loads, ...).
package gormflightotel
