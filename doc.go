// Package gormflight stops cache stampedes for GORM applications that run as
// many instances against one database.
//
// When the Redis entry of a hot query is cold or has expired, every instance
// and every request in it misses at once. With gormflight installed, such a
// miss runs once across the whole cluster: callers in one instance share one
// flight (golang.org/x/sync/singleflight), instances share one Redis lock
// (redsync); the instance that wins queries the database, stores the rows in
// Redis and publishes "ready", and every waiting instance reads the entry the
// moment the message arrives. A hit costs one Redis round trip.
//
// Install the plugin once per *gorm.DB and opt queries in with a scope:
//
//	p, err := gormflight.New(gormflight.Config{Redis: rdb, Prefix: "shop"})
//	if err != nil { ... }
//	if err := db.Use(p); err != nil { ... }
//	db.Scopes(gormflight.Cache(5*time.Minute)).Where("age > ?", 30).Find(&users)
//
// A query without the scope behaves as if the plugin were not installed.
// The plugin serves PostgreSQL, MySQL and MariaDB, and SQLite; db.Use
// refuses any other dialect with ErrUnsupportedDialect. Code on
// database/sql (sqlx, sqlc, bun) gets the same from package sqlflight, and
// the two invalidate each other on one database and Redis prefix.
//
// Reads are linearizable: a read that starts after a write returned never
// gets rows from before it, on any instance. A hot key is refreshed in the
// background ahead of its expiry (Config.RefreshBeta), so no caller waits
// for it to load again. Per query, StaleFor(d) serves an entry up to d past
// its TTL while it is refreshed (an entry of a written table never), which
// lengthens by d the bound on writes the plugin cannot see; and
// Local(maxStale) gives up linearizable reads for speed: it serves the entry
// from this instance's memory with no round trip, missing writes through
// other instances for at most maxStale (usually for one pub/sub hop), never
// this instance's own.
//
// Entries hold the rows as the database driver produced them, not Go
// values: a hit is replayed through a small database/sql driver as a real
// *sql.Rows, so GORM and database/sql fill every destination (structs,
// Scanners, maps, Pluck, Count, Row, Rows) exactly as for a live query.
//
// Errors are never cached. If Redis fails, queries fall back to the
// database, still deduplicated within the instance. Reads inside a
// transaction, and statements that write, bypass the cache.
package gormflight
