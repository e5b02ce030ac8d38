package gormflightotel_test

import (
	"log"

	"github.com/gormflight/gormflight"
	gormflightotel "github.com/gormflight/gormflight/extra/otel"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"gorm.io/gorm"
)

func ExampleNewObserver() {
	var db *gorm.DB               // from gorm.Open
	var rdb redis.UniversalClient // from redis.NewClient

	// Spans and metrics go to the global providers, which the
	// application's OpenTelemetry setup installed.
	obs, err := gormflightotel.NewObserver()
	if err != nil {
		log.Fatal(err)
	}
	p, err := gormflight.New(gormflight.Config{Redis: rdb, Prefix: "shop", Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	if err := db.Use(p); err != nil {
		log.Fatal(err)
	}

	// The plugin's counters, as observable counters.
	reg, err := gormflightotel.RegisterStats(otel.Meter(gormflightotel.ScopeName), p.Stats)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()
}
