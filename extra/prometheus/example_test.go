package gormflightprom_test

import (
	"log"
	"net/http"

	"github.com/gormflight/gormflight"
	gormflightprom "github.com/gormflight/gormflight/extra/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
)

func ExampleNewObserver() {
	var db *gorm.DB               // from gorm.Open
	var rdb redis.UniversalClient // from redis.NewClient

	obs := gormflightprom.NewObserver()
	p, err := gormflight.New(gormflight.Config{Redis: rdb, Prefix: "shop", Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	if err := db.Use(p); err != nil {
		log.Fatal(err)
	}

	// The outcomes and durations, and the plugin's counters.
	prometheus.MustRegister(obs, gormflightprom.NewCollector(p.Stats))
	http.Handle("/metrics", promhttp.Handler())
}
