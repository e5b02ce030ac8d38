// Package gormflightprom exports what the gormflight cache does as
// Prometheus metrics.
//
// It is a module of its own, so that gormflight itself does not depend on
// the Prometheus client:
//
//	go get github.com/gormflight/gormflight/extra/prometheus
//
// Two collectors, to register on a prometheus.Registerer:
//
//   - NewCollector exports each count of the plugin's Stats as a counter,
//     gormflight_<name>_total: gormflight_hits_total,
//     gormflight_loads_total, gormflight_lock_takeovers_total, ...
//   - NewObserver returns an observe.Observer for gormflight.Config.Observer
//     (or sqlflight.Config.Observer) that counts the statements that asked
//     for the cache, gormflight_requests_total{outcome}, and records
//     gormflight_wait_seconds{outcome} and gormflight_load_seconds{outcome}.
//
// outcome is hit, local_hit, shared, wait, load, fallback or bypass
// (observe.Outcome). No label holds SQL or argument values.
package gormflightprom
