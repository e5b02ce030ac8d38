package gormflight

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Helpers for tests that need database objects of their own (schemas,
// roles, views, functions) and connections with settings of their own
// (another user, another search_path).

// tsSuffix returns a lower-case identifier suffix no other test run uses, so
// that schemas, roles and tables created by concurrent runs never collide.
func tsSuffix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// tsDSN returns the test DSN with extra settings ("key=value"), which
// override the test DSN's own: pgx keeps the last value of a repeated
// keyword, and the query parameters of a URL over its user part.
func tsDSN(settings ...string) string {
	dsn := testDSN()
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			for _, s := range settings {
				k, v, _ := strings.Cut(s, "=")
				q.Set(k, v)
			}
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	for _, s := range settings {
		k, v, _ := strings.Cut(s, "=")
		dsn += " " + k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	return dsn
}

// tsOpenDSN opens a GORM handle of its own on dsn, closed when the test
// ends. Unlike openDB it creates nothing: the recording schema must not land
// in whatever schema or role the DSN selects, so the caller opens openDB
// first.
func tsOpenDSN(t testing.TB, dsn string) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("open %q: %v", dsn, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db
}

// tsExec runs statements as the administrator, failing the test on error.
func tsExec(t testing.TB, admin *gorm.DB, sql string, args ...any) {
	t.Helper()
	if err := admin.Session(&gorm.Session{NewDB: true}).Exec(sql, args...).Error; err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// tsDropLater runs statements when the test ends, before the handles opened
// earlier close (cleanups run last-in first-out). Register it right after
// creating the objects, before opening connections that use them, so those
// connections are closed when the objects are dropped.
func tsDropLater(t testing.TB, admin *gorm.DB, statements ...string) {
	t.Helper()
	t.Cleanup(func() {
		for _, s := range statements {
			if err := admin.Session(&gorm.Session{NewDB: true}).Exec(s).Error; err != nil {
				t.Errorf("cleanup %s: %v", s, err)
			}
		}
	})
}

// tsIdent quotes a PostgreSQL identifier.
func tsIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// tsRow is the row shape of the tenant, role and declared-table tests.
type tsRow struct {
	ID   int64
	Name string
}

// tsRender renders rows for comparison and messages.
func tsRender(rows []tsRow) string {
	parts := make([]string, len(rows))
	for i, r := range rows {
		parts[i] = fmt.Sprintf("%d:%s", r.ID, r.Name)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// tsQuery runs query uncached on db and renders its rows.
func tsQuery(t testing.TB, db *gorm.DB, query string, args ...any) string {
	t.Helper()
	var rows []tsRow
	if err := db.Session(&gorm.Session{NewDB: true}).Raw(query, args...).Scan(&rows).Error; err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return tsRender(rows)
}
