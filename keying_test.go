package gormflight

import (
	"encoding/json"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// The key encoding is tested without services in internal/cachekey. This
// file keeps what needs PostgreSQL and Redis: keys checked against what the
// database answers.

// openDBProtocol opens a GORM handle that sends arguments through the
// extended protocol (pgx's default) or, as PreferSimpleProtocol users do,
// through the simple protocol, where pgx renders them as SQL literals.
func openDBProtocol(t *testing.T, simple bool) *gorm.DB {
	t.Helper()
	dial := postgres.New(postgres.Config{DSN: testDSN(), PreferSimpleProtocol: simple})
	return openHandle(t, dial, &gorm.Config{Logger: logger.Discard})
}

// TestQueryKeyDriverDistinctArgs runs, cached and live, queries whose
// arguments pgx sends differently but an earlier key encoding confused: after
// the first argument is cached, the next must not be answered from its entry.
func TestQueryKeyDriverDistinctArgs(t *testing.T) {
	tests := []struct {
		name   string
		simple bool
		column string   // type of column v
		rows   []string // SQL literals inserted into v
		args   []any    // compared with v in this order
	}{
		{"nil then empty bytes", false, "bytea", []string{"''", "NULL"}, []any{[]byte(nil), []byte{}}},
		{"empty then nil bytes", false, "bytea", []string{"''", "NULL"}, []any{[]byte{}, []byte(nil)}},
		{"nil then empty bytes, simple protocol", true, "bytea", []string{"''", "NULL"}, []any{[]byte(nil), []byte{}}},
		// The simple protocol renders json.RawMessage as its JSON text but
		// []byte as a bytea literal ('\x7b...').
		{"json.RawMessage then bytes, simple protocol", true, "text", []string{`'{"a":1}'`},
			[]any{json.RawMessage(`{"a":1}`), []byte(`{"a":1}`)}},
		// pgx prints float32 with 32-bit precision: '0.1', not '0.10000000149011612'.
		{"float32 then float64, simple protocol", true, "float8", []string{"0.1"},
			[]any{float32(0.1), float64(float32(0.1))}},
		// time.Duration is an interval ('00:00:01'), not its nanoseconds.
		{"duration then int64, simple protocol", true, "text", []string{"'00:00:01'"},
			[]any{time.Second, int64(time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDBProtocol(t, tt.simple)
			table := "gft_key_" + randHex(6)
			if err := db.Exec("CREATE TABLE " + table + " (v " + tt.column + ")").Error; err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Exec("DROP TABLE IF EXISTS " + table).Error })
			for _, lit := range tt.rows {
				if err := db.Exec("INSERT INTO " + table + " (v) VALUES (" + lit + ")").Error; err != nil {
					t.Fatal(err)
				}
			}
			in := installPlugin(t, db, testConfig(openRedis(t, ""), testPrefix(t)))

			for _, arg := range tt.args {
				var live, cached int64
				if err := in.db.Table(table).Where("v = ?", arg).Count(&live).Error; err != nil {
					t.Fatalf("live count for %#v: %v", arg, err)
				}
				if err := in.db.Scopes(Cache(time.Minute)).Table(table).Where("v = ?", arg).Count(&cached).Error; err != nil {
					t.Fatalf("cached count for %#v: %v", arg, err)
				}
				if cached != live {
					t.Errorf("v = %T %#v: cached count %d, live count %d", arg, arg, cached, live)
				}
			}
		})
	}
}
