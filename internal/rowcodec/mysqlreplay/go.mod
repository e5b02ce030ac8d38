module github.com/gormflight/gormflight/internal/rowcodec/mysqlreplay

go 1.26.8

replace github.com/gormflight/gormflight => ../../..

require (
	github.com/go-sql-driver/mysql v1.10.1
	github.com/gormflight/gormflight v0.0.0-00010101000000-000000000000
)

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	github.com/vmihailenco/msgpack/v5 v5.4.1 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
)
