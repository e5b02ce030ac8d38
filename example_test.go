package gormflight_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/gormflight/gormflight"
)

type User struct {
	ID   uint
	Name string
	Age  int
}

// OrderTotal is a row of order_totals, a view over the orders table.
type OrderTotal struct {
	CustomerID uint
	Total      int64
}

func ExampleNew() {
	db, err := gorm.Open(postgres.Open("host=127.0.0.1 user=postgres dbname=shop sslmode=disable"), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()

	// Every instance of the application uses the same prefix, so a miss
	// runs the query once across all of them.
	p, err := gormflight.New(gormflight.Config{Redis: rdb, Prefix: "shop"})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close() // before rdb.Close: the plugin does not own the client
	if err := db.Use(p); err != nil {
		log.Fatal(err)
	}

	var users []User
	err = db.Scopes(gormflight.Cache(5*time.Minute)).Where("age > ?", 30).Find(&users).Error
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(users), "users")
}

// A query that reads a table the SQL does not name, here through a view,
// declares it with Tables: writes to orders then invalidate the entry.
func ExampleCache() {
	var db *gorm.DB // with the plugin installed, as in the example for New

	var totals []OrderTotal
	err := db.Scopes(gormflight.Cache(time.Minute, gormflight.Tables("orders"))).
		Where("customer_id = ?", 42).Find(&totals).Error
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(totals)
}

func ExamplePlugin_Stats() {
	var p *gormflight.Plugin // created with New and installed with db.Use

	s := p.Stats()
	fmt.Printf("hits=%d misses=%d loads=%d shared=%d waits=%d fallbacks=%d\n",
		s.Hits, s.Misses, s.Loads, s.Shared, s.Waits, s.Fallbacks)
}

func ExampleNew_missingRedis() {
	_, err := gormflight.New(gormflight.Config{})
	fmt.Println(err)
	fmt.Println(errors.Is(err, gormflight.ErrNoRedis))
	// Output:
	// gormflight: Config.Redis is required
	// true
}
