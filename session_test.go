package gormflight

import (
	"testing"
	"time"

	"gorm.io/gorm"
)

func TestChangesSession(t *testing.T) {
	for _, c := range []struct {
		sql  string
		want sessionChange
	}{
		{"SELECT 1", sessionKept},
		{"SELECT * FROM settings WHERE set = 1", sessionKept},
		{"SET LOCAL search_path TO a", sessionKept},
		{"set local app.tenant = 'a'", sessionKept},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", sessionKept},
		{"SET CONSTRAINTS ALL DEFERRED", sessionKept},
		{"UPDATE t SET a = 1", sessionKept},
		{"DISCARD PLANS", sessionKept},
		{"SELECT 'set_config(' AS s", sessionKept},
		{"SET search_path TO a", sessionChanged},
		{"  set SESSION search_path = a", sessionChanged},
		{"SET ROLE tenant_a", sessionChanged},
		{"SET SESSION AUTHORIZATION tenant_a", sessionChanged},
		{"SELECT set_config('app.tenant', $1, false)", sessionChanged},
		{"SELECT set_config('app.tenant', 'a', true)", sessionChanged}, // is_local is not read
		{"SELECT 1; SET search_path TO a", sessionChanged},
		{"RESET search_path", sessionChanged},
		{"DISCARD TEMP; SET x = 1", sessionChanged},
		{"RESET ALL", sessionReset},
		{"DISCARD ALL", sessionReset},
		{"SET search_path TO a; RESET ALL", sessionChanged},
	} {
		if got := changesSession(c.sql); got != c.want {
			t.Errorf("changesSession(%q) = %d, want %d", c.sql, got, c.want)
		}
	}
}

// A db.Connection that changes its session and resets it with RESET ALL
// leaves the pool cached; one that does not switches reads on the pool to
// uncached, as does a SET run on the pool itself.
func TestSessionChangesStopPoolCaching(t *testing.T) {
	in := newInstances(t, 1, nil)[0]
	tag := uniqueTag(t)
	poolRead := func() {
		t.Helper()
		var n int
		if err := in.db.Scopes(Cache(time.Minute)).Raw("SELECT gft_record(?, 0) AS n", tag).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
	}
	cachedRead := func(what string, want bool) {
		t.Helper()
		before := calls(t, in.db, tag)
		poolRead()
		poolRead()
		n := calls(t, in.db, tag) - before
		if cached := n <= 1; cached != want {
			t.Fatalf("%s: two reads on the pool ran the query %d times; want cached=%v", what, n, want)
		}
	}
	cachedRead("before", true)
	err := in.db.Connection(func(c *gorm.DB) error {
		if err := c.Exec("SET search_path TO public").Error; err != nil {
			return err
		}
		cachedRead("while a connection has a changed session", false)
		return c.Exec("RESET ALL").Error
	})
	if err != nil {
		t.Fatal(err)
	}
	cachedRead("after RESET ALL", true)
	if err := in.db.Exec("SET search_path TO public").Error; err != nil {
		t.Fatal(err)
	}
	cachedRead("after a SET on the pool", false)
}
