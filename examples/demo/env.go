package main

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	sqlitedriver "github.com/glebarez/go-sqlite"
	"github.com/glebarez/sqlite"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormflight/gormflight"
)

// executions counts the calls of demo_slow, that is the executions of the
// query, in every database of the process. Phases read it before and after,
// so runs must not overlap (the test runs one at a time).
var executions atomic.Int64

var registerSlow sync.Once

// registerSlowFunc gives SQLite demo_slow(ms): it sleeps ms milliseconds,
// counts the call and returns 1. The driver registers functions for the
// connections opened after it, so it runs before the first gorm.Open.
func registerSlowFunc() {
	registerSlow.Do(func() {
		sqlitedriver.MustRegisterScalarFunction("demo_slow", 1, func(_ *sqlitedriver.FunctionContext, args []driver.Value) (driver.Value, error) {
			ms, _ := args[0].(int64)
			executions.Add(1)
			time.Sleep(time.Duration(ms) * time.Millisecond)
			return int64(1), nil
		})
	})
}

// product is a row of the products table.
type product struct {
	ID         int64
	Name       string
	Category   string
	PriceCents int64
}

// querySQL is the slow query. demo_slow sits in an uncorrelated scalar
// subquery, which SQLite evaluates once per execution, not once per row;
// the function is not deterministic, so a bare call would run per row.
const querySQL = `SELECT id, name, category, price_cents FROM products
WHERE category = ? AND (SELECT demo_slow(?)) = 1
ORDER BY id`

// queryCategory is the one key every caller asks for.
const queryCategory = "coffee"

// env is what every phase shares: the database file and the Redis server.
type env struct {
	dir   string // temporary directory of the database file
	dsn   string
	redis *miniredis.Miniredis
}

// newEnv creates the database file with its products and starts miniredis.
func newEnv(ctx context.Context) (_ *env, err error) {
	registerSlowFunc()
	dir, err := os.MkdirTemp("", "gormflight-demo-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	// WAL lets the callers' connections read side by side; the busy
	// timeout queues a connection that meets the seeding write.
	e.dsn = filepath.Join(dir, "demo.db") + "?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)"
	if err := e.seed(ctx); err != nil {
		return nil, fmt.Errorf("seed the database: %w", err)
	}
	if e.redis, err = miniredis.Run(); err != nil {
		return nil, fmt.Errorf("start miniredis: %w", err)
	}
	return e, nil
}

// seed creates and fills the products table.
func (e *env) seed(ctx context.Context) error {
	db, err := e.open()
	if err != nil {
		return err
	}
	defer closeAll([]*gorm.DB{db})
	if err := db.WithContext(ctx).AutoMigrate(&product{}); err != nil {
		return err
	}
	return db.WithContext(ctx).Create([]product{
		{Name: "Espresso beans 1 kg", Category: "coffee", PriceCents: 2490},
		{Name: "Filter coffee 500 g", Category: "coffee", PriceCents: 1190},
		{Name: "Decaf 250 g", Category: "coffee", PriceCents: 790},
		{Name: "Green tea 100 g", Category: "tea", PriceCents: 650},
		{Name: "Earl Grey 100 g", Category: "tea", PriceCents: 590},
		{Name: "Ceramic mug", Category: "kitchen", PriceCents: 1200},
	}).Error
}

// open opens a handle of its own on the database, as one application
// instance has. GORM logs errors only: its slow-query warning would fire
// for every caller of the deliberately slow query.
func (e *env) open() (*gorm.DB, error) {
	return gorm.Open(sqlite.Open(e.dsn), &gorm.Config{Logger: logger.Default.LogMode(logger.Error)})
}

// openPlain opens n handles without the plugin.
func (e *env) openPlain(n int) ([]*gorm.DB, error) {
	dbs := make([]*gorm.DB, 0, n)
	for range n {
		db, err := e.open()
		if err != nil {
			closeAll(dbs)
			return nil, err
		}
		dbs = append(dbs, db)
	}
	return dbs, nil
}

// reference returns the query's rows read without the plugin, which every
// caller's rows must equal.
func (e *env) reference(ctx context.Context, query time.Duration) ([]product, error) {
	db, err := e.open()
	if err != nil {
		return nil, err
	}
	defer closeAll([]*gorm.DB{db})
	return fetch(ctx, db, query)
}

// fetch runs the slow query on db with scopes (gormflight.Cache to opt
// in). The scopes join a new session each call: a chained *gorm.DB is not
// safe to share between goroutines.
func fetch(ctx context.Context, db *gorm.DB, query time.Duration, scopes ...func(*gorm.DB) *gorm.DB) ([]product, error) {
	var rows []product
	err := db.WithContext(ctx).Scopes(scopes...).Raw(querySQL, queryCategory, query.Milliseconds()).Scan(&rows).Error
	return rows, err
}

// close removes everything newEnv made.
func (e *env) close() {
	if e.redis != nil {
		e.redis.Close()
	}
	if err := os.RemoveAll(e.dir); err != nil {
		fmt.Fprintln(os.Stderr, "remove the database:", err)
	}
}

// cluster is the simulated instances: handle i, with its own Redis client,
// has plugin i installed.
type cluster struct {
	dbs     []*gorm.DB
	clients []*redis.Client
	plugins []*gormflight.Plugin
}

// openCluster opens n instances, each with its own Redis client and plugin,
// all with the same prefix so that they share entries and locks.
func (e *env) openCluster(n int) (_ *cluster, err error) {
	c := &cluster{}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	for range n {
		// ContextTimeoutEnabled lets the plugin bound each Redis call.
		rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr(), ContextTimeoutEnabled: true})
		c.clients = append(c.clients, rdb)
		p, err := gormflight.New(gormflight.Config{Redis: rdb, Prefix: "gormflight-demo"})
		if err != nil {
			return nil, err
		}
		c.plugins = append(c.plugins, p)
		db, err := e.open()
		if err != nil {
			return nil, err
		}
		c.dbs = append(c.dbs, db)
		if err := db.Use(p); err != nil {
			return nil, fmt.Errorf("install gormflight: %w", err)
		}
	}
	return c, nil
}

// close closes the plugins before the clients they use, then the handles.
func (c *cluster) close() {
	var errs []error
	for _, p := range c.plugins {
		errs = append(errs, p.Close())
	}
	for _, rdb := range c.clients {
		errs = append(errs, rdb.Close())
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, "close the instances:", err)
	}
	closeAll(c.dbs)
}

// closeAll closes the connection pools of dbs.
func closeAll(dbs []*gorm.DB) {
	for _, db := range dbs {
		sqlDB, err := db.DB()
		if err == nil {
			err = sqlDB.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "close the database:", err)
		}
	}
}
