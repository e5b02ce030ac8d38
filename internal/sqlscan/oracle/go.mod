module github.com/gormflight/gormflight/internal/sqlscan/oracle

go 1.26.8

require (
	github.com/gormflight/gormflight v0.0.0-00010101000000-000000000000
	github.com/pganalyze/pg_query_go/v6 v6.2.5
	google.golang.org/protobuf v1.33.0
)

replace github.com/gormflight/gormflight => ../../..
