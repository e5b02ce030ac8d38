// Command server is a small HTTP service that shows gormflight collapsing a
// cache miss across several app instances.
//
// Each /fetch runs a deliberately slow query (-delay) through the cache.
// Start a few instances against the same PostgreSQL and Redis, hit them all
// at once with the same key, and /stats shows a single Load cluster-wide:
// the other requests were shared in-process or waited for the Redis "ready"
// notification. See README.md next to this file.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormflight/gormflight"
)

// fetchRow is the result of the /fetch query.
type fetchRow struct {
	Key        string    `json:"key"`
	Digest     string    `json:"digest"`
	ComputedAt time.Time `json:"computed_at"`
}

// fetchSQL sleeps for the given number of seconds, then computes a digest of
// the key. pg_sleep returns void, so it runs in a FROM subquery; clock_timestamp
// (not now()) records when the row was actually produced.
const fetchSQL = `SELECT ?::text AS key, md5(?::text) AS digest, clock_timestamp() AS computed_at
FROM (SELECT pg_sleep(?)) AS s`

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "HTTP listen address (port 0 picks a free port)")
	dsn := flag.String("dsn", "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable", "PostgreSQL DSN")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	prefix := flag.String("prefix", "gormflight-example", "Redis key prefix")
	delay := flag.Duration("delay", time.Second, "deliberate slowness of the /fetch query")
	ttl := flag.Duration("ttl", 30*time.Second, "cache TTL of /fetch results")
	// Plugin timings; 0 keeps the library default (see gormflight.Config).
	lockExpiry := flag.Duration("lock-expiry", 0, "how soon a dead loader's lock expires (0: library default, 2s)")
	redisTimeout := flag.Duration("redis-timeout", 0, "bound on each Redis operation (0: library default, 250ms)")
	maxWait := flag.Duration("max-wait", 0, "longest wait for another instance's result (0: library default, 10s)")
	local := flag.Duration("local", 0, "serve /fetch from the near cache, missing other instances' writes for at most this long (0: off)")
	flag.Parse()

	cfg := gormflight.Config{
		Prefix:       *prefix,
		LockExpiry:   *lockExpiry,
		RedisTimeout: *redisTimeout,
		MaxWait:      *maxWait,
		Local:        *local,
	}
	if err := run(*listen, *dsn, *redisAddr, cfg, *delay, *ttl); err != nil {
		log.Fatal(err)
	}
}

// run serves until SIGINT or SIGTERM. cfg is the plugin's configuration
// without its Redis client, which run creates.
func run(listen, dsn, redisAddr string, cfg gormflight.Config, delay, ttl time.Duration) error {
	// Errors only: GORM's slow-query warning would also fire for requests
	// that merely waited for another instance's load.
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Default.LogMode(logger.Error)})
	if err != nil {
		return err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	defer sqlDB.Close()

	// ContextTimeoutEnabled lets -redis-timeout (applied through contexts)
	// bound socket reads too, as gormflight.Config.RedisTimeout asks.
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, ContextTimeoutEnabled: true})
	defer rdb.Close()

	cfg.Redis = rdb
	p, err := gormflight.New(cfg)
	if err != nil {
		return err
	}
	// Deferred calls run in reverse: on the way out the plugin is closed
	// first (after the HTTP server has drained), then Redis, then the pool.
	defer func() {
		if err := p.Close(); err != nil {
			log.Printf("closing gormflight: %v", err)
		}
	}()
	if err := db.Use(p); err != nil {
		return err
	}

	return serve(listen, routes(db, p, delay, ttl))
}

// routes returns the server's handlers: /fetch reads one key through the
// cache, /stats shows the plugin's counters.
func routes(db *gorm.DB, p *gormflight.Plugin, delay, ttl time.Duration) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fetch", func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		if key == "" {
			http.Error(w, "missing key", http.StatusBadRequest)
			return
		}
		var row fetchRow
		err := db.WithContext(r.Context()).
			Scopes(gormflight.Cache(ttl)).
			Raw(fetchSQL, key, key, delay.Seconds()).
			Scan(&row).Error
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, row)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, p.Stats())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	})

	return mux
}

// serve serves h on listen until SIGINT or SIGTERM, then drains requests in
// flight.
func serve(listen string, h http.Handler) error {
	// Catch signals before announcing readiness, so a SIGTERM sent right
	// after the "listening" line still shuts down gracefully.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Bind first, then log: once the line is printed the server accepts
	// connections, and it shows the real port when -listen ends in :0.
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("listening on %s", ln.Addr())

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	stop() // a second signal now kills the process the default way
	log.Printf("shutting down")

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// Stop accepting requests and wait for in-flight ones; run's deferred
	// closes then release the plugin, Redis and the database.
	return srv.Shutdown(shutdownCtx)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Printf("writing response: %v", err)
	}
}
