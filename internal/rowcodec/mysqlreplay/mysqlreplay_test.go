// Package mysqlreplay checks that an entry captured from MariaDB through
// go-sql-driver/mysql, encoded, decoded and replayed, scans exactly like
// the live rows: every value with its Go type, every column type, through
// the text protocol (a query without arguments) and the binary one (with
// arguments), with parseTime on and off. It is a module of its own so
// that the library does not depend on a MySQL driver; it needs MariaDB at
// 127.0.0.1:3306 (root, no password) or GORMFLIGHT_MYSQL_DSN.
package mysqlreplay

import (
	"context"
	"crypto/rand"
	"database/sql"
	"os"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/gormflight/gormflight/internal/rowcodec"
	"github.com/gormflight/gormflight/internal/rowcodec/replaytest"
)

const table = `CREATE TABLE kinds (
	id INT PRIMARY KEY,
	i8 TINYINT, u8 TINYINT UNSIGNED, i16 SMALLINT, u16 SMALLINT UNSIGNED,
	i32 INT, u32 INT UNSIGNED, i64 BIGINT, u64 BIGINT UNSIGNED,
	f32 FLOAT, f64 DOUBLE, dcm DECIMAL(30,10),
	ch CHAR(3), vc VARCHAR(20), tx TEXT, bl BLOB, bin BINARY(4), vb VARBINARY(8),
	d DATE, dt DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME(2), yr YEAR, bt BIT(10),
	js JSON, en ENUM('a','b'), st SET('x','y')
)`

var inserts = []string{
	`INSERT INTO kinds VALUES (1, -128, 255, -32768, 65535, -2147483648, 4294967295,
		-9223372036854775808, 18446744073709551615, 3.25, -1.5e300, '-12345678901234567890.0123456789',
		'ab', 'héllo', 'text', x'00ff10', 'ab', x'', '2024-02-29', '2024-02-29 23:59:59.123456',
		'2024-01-01 00:00:00.5', '-838:59:59.99', 2024, b'1010101010', '{"a": [1, null]}', 'b', 'x,y')`,
	`INSERT INTO kinds (id) VALUES (2)`,
	`INSERT INTO kinds VALUES (3, 0, 0, 0, 0, 0, 0, 0, 9223372036854775808, 0, 0, 0,
		'', '', '', '', x'00000000', x'00', '0000-00-00', '0000-00-00 00:00:00', NULL, '00:00:00', 0, b'0', 'null', 'a', '')`,
}

func dsn() string {
	if v := os.Getenv("GORMFLIGHT_MYSQL_DSN"); v != "" {
		return v
	}
	return "root@tcp(127.0.0.1:3306)/test"
}

// scratch creates a database of its own with the table, dropped at the
// end, and returns its name.
func scratch(t *testing.T) string {
	db, err := sql.Open("mysql", dsn())
	if err == nil {
		err = db.Ping()
	}
	if err != nil {
		if os.Getenv("GORMFLIGHT_TEST_REQUIRED") != "" {
			t.Fatalf("MariaDB: %v", err)
		}
		t.Skipf("MariaDB not reachable: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	name := "gft_replay_" + strings.ToLower(rand.Text()[:10])
	for _, s := range []string{"CREATE DATABASE " + name, "USE " + name} {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = db.Exec("DROP DATABASE IF EXISTS " + name) })
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, s := range append([]string{"USE " + name, "SET time_zone = '+00:00'", table}, inserts...) {
		if _, err := conn.ExecContext(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return name
}

func TestReplayExact(t *testing.T) {
	name := scratch(t)
	replay := rowcodec.NewReplayer()
	defer replay.Close()
	for _, parseTime := range []bool{false, true} {
		cfg, err := mysql.ParseDSN(dsn())
		if err != nil {
			t.Fatal(err)
		}
		cfg.DBName, cfg.ParseTime = name, parseTime
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, protocol := range []struct {
			name  string
			query string
			args  []any
		}{
			{"text", "SELECT * FROM kinds ORDER BY id", nil},
			{"binary", "SELECT * FROM kinds WHERE id >= ? ORDER BY id", []any{0}},
		} {
			t.Run(protocol.name+map[bool]string{false: "", true: "/parseTime"}[parseTime], func(t *testing.T) {
				replaytest.Check(t, db, replay, protocol.query, protocol.args...)
			})
		}
	}
}
