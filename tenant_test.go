package gormflight

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"
)

// Tenant isolation: one SQL text returns different rows to different
// sessions when the session selects them (search_path, the role, settings
// that row-level security policies read). Every read must return the
// caller's own rows, cached or not, whichever tenant filled the entry
// first: the tests interleave tenants across two instances sharing one
// prefix so that a key which did not tell sessions apart would serve one
// tenant's entry to the other. The known rows of each tenant are read
// uncached by the administrator, by qualified name or with the tenant's
// filter spelt out.

// tenReads are the cached read paths the tests check: GORM's Find through
// Table, and Raw SQL.
var tenReads = []struct {
	name string
	read func(db *gorm.DB, table string) ([]idName, error)
}{
	{"Find", func(db *gorm.DB, table string) ([]idName, error) {
		var rows []idName
		err := db.Scopes(Cache(time.Minute)).Table(table).Select("id", "name").Order("id").Find(&rows).Error
		return rows, err
	}},
	{"Raw", func(db *gorm.DB, table string) ([]idName, error) {
		var rows []idName
		err := db.Scopes(Cache(time.Minute)).Raw("SELECT id, name FROM " + quotedIdent(table) + " ORDER BY id").Scan(&rows).Error
		return rows, err
	}},
}

// tenExpect reads table on db by every path in tenReads and fails the test
// unless each returns truth[tenant]. When the rows are another tenant's,
// the message names that tenant.
func tenExpect(t testing.TB, what string, db *gorm.DB, table string, truth map[string]string, tenant string) {
	t.Helper()
	want := truth[tenant]
	for _, r := range tenReads {
		rows, err := r.read(db, table)
		if err != nil {
			t.Errorf("%s (%s): tenant %s: %v", what, r.name, tenant, err)
			continue
		}
		got := renderRows(rows)
		if got == want {
			continue
		}
		whose := "nobody"
		for other, rows := range truth {
			if rows == got {
				whose = other
			}
		}
		t.Errorf("%s (%s): tenant %s was served %s's rows %s, want its own %s", what, r.name, tenant, whose, got, want)
	}
}

// tenSchemas is a schema per tenant ("a" and "b") holding one table of the
// same name, with different rows, and a table of that name in public ("default").
type tenSchemas struct {
	admin   *gorm.DB
	table   string
	schemas map[string]string // tenant -> schema
}

func newTenSchemas(t *testing.T, admin *gorm.DB) *tenSchemas {
	t.Helper()
	s := randHex(5)
	f := &tenSchemas{admin: admin, table: "gft_ten_" + s, schemas: map[string]string{
		"a":       "gft_tenant_a_" + s,
		"b":       "gft_tenant_b_" + s,
		"default": "public",
	}}
	rows := map[string]int{"a": 2, "b": 3, "default": 1}
	for tenant, schema := range f.schemas {
		if schema != "public" {
			adminExec(t, admin, "CREATE SCHEMA "+quotedIdent(schema))
			dropAtEnd(t, admin, "DROP SCHEMA IF EXISTS "+quotedIdent(schema)+" CASCADE")
		} else {
			dropAtEnd(t, admin, "DROP TABLE IF EXISTS "+f.qualified(tenant))
		}
		adminExec(t, admin, "CREATE TABLE "+f.qualified(tenant)+" (id bigint PRIMARY KEY, name text NOT NULL)")
		for i := 1; i <= rows[tenant]; i++ {
			adminExec(t, admin, "INSERT INTO "+f.qualified(tenant)+" VALUES (?, ?)", i, fmt.Sprintf("%s-%d", tenant, i))
		}
	}
	return f
}

func (f *tenSchemas) qualified(tenant string) string {
	return quotedIdent(f.schemas[tenant]) + "." + quotedIdent(f.table)
}

// truth reads every tenant's rows uncached, by qualified name.
func (f *tenSchemas) truth(t testing.TB) map[string]string {
	t.Helper()
	out := make(map[string]string, len(f.schemas))
	for tenant := range f.schemas {
		out[tenant] = queryRows(t, f.admin, "SELECT id, name FROM "+f.qualified(tenant)+" ORDER BY id")
	}
	return out
}

// insert adds a row to the table db's session sees, through GORM, so the
// writer's plugin bumps the table.
func (f *tenSchemas) insert(t testing.TB, db *gorm.DB, id int64, name string) {
	t.Helper()
	if err := db.Table(f.table).Create(&idName{ID: id, Name: name}).Error; err != nil {
		t.Fatalf("insert into %s: %v", f.table, err)
	}
}

// Schema per tenant chosen by the DSN: instance A connects with
// search_path=<tenant a's schema>, instance B with tenant b's; both share a
// prefix and run the same SQL.
func TestTenantSearchPathInDSN(t *testing.T) {
	admin := openDB(t)
	f := newTenSchemas(t, admin)
	prefix := testPrefix(t)
	a := installPlugin(t, openDSN(t, dsnWith("search_path="+f.schemas["a"])), testConfig(openRedis(t, ""), prefix))
	b := installPlugin(t, openDSN(t, dsnWith("search_path="+f.schemas["b"])), testConfig(openRedis(t, ""), prefix))

	truth := f.truth(t)
	tenExpect(t, "A first (fills)", a.db, f.table, truth, "a")
	tenExpect(t, "B after A filled", b.db, f.table, truth, "b")
	tenExpect(t, "A again", a.db, f.table, truth, "a")
	tenExpect(t, "B again", b.db, f.table, truth, "b")

	// A write through B bumps the shared table name; this time B fills first.
	f.insert(t, b.db, 10, "b-10")
	truth = f.truth(t)
	tenExpect(t, "B after its write (fills)", b.db, f.table, truth, "b")
	tenExpect(t, "A after B filled", a.db, f.table, truth, "a")
	tenExpect(t, "B again", b.db, f.table, truth, "b")
	t.Logf("hits %d, loads %d", sumStats(a, b).Hits, sumStats(a, b).Loads)
}

// tenInSchema runs check on a connection of db after SET search_path to
// schema; it resets the search_path afterwards unless leak is set, as an
// application that forgets to would.
func tenInSchema(t *testing.T, db *gorm.DB, schema string, leak bool, check func(c *gorm.DB)) {
	t.Helper()
	err := db.Connection(func(c *gorm.DB) error {
		if err := c.Exec("SET search_path TO " + quotedIdent(schema)).Error; err != nil {
			return err
		}
		check(c)
		if leak {
			return nil
		}
		return c.Exec("RESET search_path").Error
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Schema per tenant chosen by SET search_path inside db.Connection, mixed
// with reads of the default schema on the plain pools of both instances.
func TestTenantSearchPathInConnection(t *testing.T) {
	admin := openDB(t)
	f := newTenSchemas(t, admin)
	prefix := testPrefix(t)
	a := newInstance(t, testConfig(openRedis(t, ""), prefix))
	b := newInstance(t, testConfig(openRedis(t, ""), prefix))
	inTenant := func(t *testing.T, in *instance, tenant, what string, truth map[string]string) {
		t.Helper()
		tenInSchema(t, in.db, f.schemas[tenant], false, func(c *gorm.DB) {
			tenExpect(t, what, c, f.table, truth, tenant)
		})
	}

	t.Run("reset after use", func(t *testing.T) {
		truth := f.truth(t)
		tenExpect(t, "A plain (fills)", a.db, f.table, truth, "default")
		inTenant(t, a, "a", "A in tenant a's connection", truth)
		inTenant(t, b, "b", "B in tenant b's connection", truth)
		tenExpect(t, "B plain", b.db, f.table, truth, "default")
		inTenant(t, a, "b", "A in tenant b's connection", truth)
		inTenant(t, b, "a", "B in tenant a's connection", truth)

		// After a write, a tenant's connection fills first.
		f.insert(t, b.db, 10, "default-10")
		truth = f.truth(t)
		inTenant(t, b, "a", "B in tenant a's connection after the write (fills)", truth)
		tenExpect(t, "A plain", a.db, f.table, truth, "default")
		inTenant(t, a, "b", "A in tenant b's connection", truth)
		tenExpect(t, "B plain", b.db, f.table, truth, "default")
	})

	// A connection returned to the pool with its search_path still set (a
	// leaked SET). Instance L has one connection, so its later reads run on
	// that session: they must get what PostgreSQL returns there, tenant a's
	// rows, and nothing it fills may reach a clean session, whose reads must
	// still return the default schema's rows.
	t.Run("leaked SET", func(t *testing.T) {
		ldb := openDB(t)
		sqlDB, err := ldb.DB()
		if err != nil {
			t.Fatal(err)
		}
		sqlDB.SetMaxOpenConns(1)
		l := installPlugin(t, ldb, testConfig(openRedis(t, ""), prefix))
		truth := f.truth(t)
		tenExpect(t, "B plain (fills)", b.db, f.table, truth, "default")
		tenInSchema(t, l.db, f.schemas["a"], true, func(c *gorm.DB) {
			tenExpect(t, "L in tenant a's connection", c, f.table, truth, "a")
		})
		if got := queryRows(t, l.db, "SELECT id, name FROM "+quotedIdent(f.table)+" ORDER BY id"); got != truth["a"] {
			t.Fatalf("L's pool reads %s uncached, not tenant a's rows %s: the SET did not leak, the test proves nothing", got, truth["a"])
		}
		for round := 0; round < 2; round++ {
			// A write makes the next read fill; L's leaked session fills first.
			f.insert(t, b.db, int64(20+round), fmt.Sprintf("default-%d", 20+round))
			truth = f.truth(t)
			tenExpect(t, fmt.Sprintf("L plain on the leaked session, round %d (fills)", round), l.db, f.table, truth, "a")
			tenExpect(t, fmt.Sprintf("B plain, round %d", round), b.db, f.table, truth, "default")
			tenExpect(t, fmt.Sprintf("A plain, round %d", round), a.db, f.table, truth, "default")
			inTenant(t, a, "b", fmt.Sprintf("A in tenant b's connection, round %d", round), truth)
		}
	})
}

// tenRLS is a table in public under row-level security: a session sees the
// rows whose tenant column equals its app.tenant setting. Role is a
// non-superuser granted SELECT on it (superusers and the owner bypass RLS).
type tenRLS struct {
	admin *gorm.DB
	table string
	role  string
}

func newTenRLS(t *testing.T, admin *gorm.DB) *tenRLS {
	t.Helper()
	s := randHex(5)
	f := &tenRLS{admin: admin, table: "gft_rls_" + s, role: "gft_rls_" + s}
	tbl := quotedIdent(f.table)
	adminExec(t, admin, "CREATE TABLE "+tbl+" (id bigint PRIMARY KEY, tenant text NOT NULL, name text NOT NULL)")
	adminExec(t, admin, "CREATE ROLE "+quotedIdent(f.role)+" LOGIN")
	dropAtEnd(t, admin, "DROP TABLE IF EXISTS "+tbl, "DROP OWNED BY "+quotedIdent(f.role), "DROP ROLE IF EXISTS "+quotedIdent(f.role))
	adminExec(t, admin, `INSERT INTO `+tbl+` VALUES (1, 'a', 'a-1'), (2, 'b', 'b-2'), (3, 'a', 'a-3'), (4, 'b', 'b-4'), (5, 'b', 'b-5')`)
	adminExec(t, admin, "ALTER TABLE "+tbl+" ENABLE ROW LEVEL SECURITY")
	adminExec(t, admin, "CREATE POLICY tenant_isolation ON "+tbl+" USING (tenant = current_setting('app.tenant'))")
	adminExec(t, admin, "GRANT SELECT ON "+tbl+" TO "+quotedIdent(f.role))
	return f
}

// truth reads each tenant's rows uncached, with the policy's filter spelt out.
func (f *tenRLS) truth(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tenant := range []string{"a", "b"} {
		out[tenant] = queryRows(t, f.admin, "SELECT id, name FROM "+quotedIdent(f.table)+" WHERE tenant = ? ORDER BY id", tenant)
	}
	return out
}

// connRequest is a request that sets its tenant for the session in
// db.Connection, then reads cached.
func (f *tenRLS) connRequest(t testing.TB, in *instance, tenant, what string, truth map[string]string) {
	t.Helper()
	err := in.db.Connection(func(c *gorm.DB) error {
		if err := c.Exec("SELECT set_config('app.tenant', ?, false)", tenant).Error; err != nil {
			return err
		}
		tenExpect(t, what, c, f.table, truth, tenant)
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// txRequest is a request that sets its tenant with SET LOCAL in a
// transaction, then reads (a read in a transaction bypasses the cache).
func (f *tenRLS) txRequest(t testing.TB, in *instance, tenant, what string, truth map[string]string) {
	t.Helper()
	err := in.db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SET LOCAL app.tenant = '" + tenant + "'").Error; err != nil {
			return err
		}
		tenExpect(t, what, tx, f.table, truth, tenant)
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// Row-level security with a per-request setting: two instances connected
// as a non-superuser role serve requests of both tenants, in turn and
// concurrently.
func TestTenantRowLevelSecurity(t *testing.T) {
	admin := openDB(t)
	f := newTenRLS(t, admin)
	prefix := testPrefix(t)
	dsn := dsnWith("user=" + f.role)
	a := installPlugin(t, openDSN(t, dsn), testConfig(openRedis(t, ""), prefix))
	b := installPlugin(t, openDSN(t, dsn), testConfig(openRedis(t, ""), prefix))
	truth := f.truth(t)

	t.Run("in turn", func(t *testing.T) {
		f.connRequest(t, a, "a", "A, tenant a (fills)", truth)
		f.connRequest(t, b, "b", "B, tenant b", truth)
		f.connRequest(t, a, "b", "A, tenant b", truth)
		f.txRequest(t, b, "a", "B in a transaction, tenant a", truth)
		f.connRequest(t, b, "a", "B, tenant a", truth)
		f.txRequest(t, a, "b", "A in a transaction, tenant b", truth)
		f.connRequest(t, a, "a", "A, tenant a again", truth)
	})

	t.Run("concurrently", func(t *testing.T) {
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			in := []*instance{a, b}[g%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10 && !t.Failed(); i++ { // one failure tells enough
					tenant := []string{"a", "b"}[(g/2+i)%2]
					what := fmt.Sprintf("goroutine %d request %d", g, i)
					if i%5 == 4 {
						f.txRequest(t, in, tenant, what+" (transaction)", truth)
					} else {
						f.connRequest(t, in, tenant, what, truth)
					}
				}
			}()
		}
		wg.Wait()
	})
	t.Logf("hits %d, loads %d, bypassed %d", sumStats(a, b).Hits, sumStats(a, b).Loads, sumStats(a, b).Bypassed)
}

// The same SQL run by different roles: two roles that row-level security
// policies give different rows, a role without the grant, which must get
// PostgreSQL's permission error rather than anyone's rows, and the
// superuser, who bypasses RLS, before and after SET ROLE in db.Connection.
func TestTenantRoles(t *testing.T) {
	admin := openDB(t)
	s := randHex(5)
	table := "gft_roles_" + s
	roles := map[string]string{"a": "gft_role_a_" + s, "b": "gft_role_b_" + s, "none": "gft_role_none_" + s}
	tbl := quotedIdent(table)
	adminExec(t, admin, "CREATE TABLE "+tbl+" (id bigint PRIMARY KEY, tenant text NOT NULL, name text NOT NULL)")
	drops := []string{"DROP TABLE IF EXISTS " + tbl}
	for _, r := range roles {
		adminExec(t, admin, "CREATE ROLE "+quotedIdent(r)+" LOGIN")
		drops = append(drops, "DROP OWNED BY "+quotedIdent(r), "DROP ROLE IF EXISTS "+quotedIdent(r))
	}
	dropAtEnd(t, admin, drops...)
	adminExec(t, admin, `INSERT INTO `+tbl+` VALUES (1, 'a', 'a-1'), (2, 'b', 'b-2'), (3, 'a', 'a-3'), (4, 'b', 'b-4')`)
	adminExec(t, admin, "ALTER TABLE "+tbl+" ENABLE ROW LEVEL SECURITY")
	for _, tenant := range []string{"a", "b"} {
		adminExec(t, admin, "GRANT SELECT ON "+tbl+" TO "+quotedIdent(roles[tenant]))
		adminExec(t, admin, "CREATE POLICY "+quotedIdent("own_"+tenant)+" ON "+tbl+" TO "+quotedIdent(roles[tenant])+" USING (tenant = '"+tenant+"')")
	}
	truth := map[string]string{"superuser": queryRows(t, admin, "SELECT id, name FROM "+tbl+" ORDER BY id")}
	for _, tenant := range []string{"a", "b"} {
		truth[tenant] = queryRows(t, admin, "SELECT id, name FROM "+tbl+" WHERE tenant = ? ORDER BY id", tenant)
	}

	prefix := testPrefix(t)
	as := func(role string) *instance {
		return installPlugin(t, openDSN(t, dsnWith("user="+role)), testConfig(openRedis(t, ""), prefix))
	}
	su := newInstance(t, testConfig(openRedis(t, ""), prefix))
	a, b, none := as(roles["a"]), as(roles["b"]), as(roles["none"])
	denied := func(what string) {
		t.Helper()
		for _, r := range tenReads {
			rows, err := r.read(none.db, table)
			if err == nil || !strings.Contains(err.Error(), "42501") {
				t.Errorf("%s (%s): a role without SELECT got rows %s, error %v; want permission denied (SQLSTATE 42501)", what, r.name, renderRows(rows), err)
			}
		}
	}
	asRole := func(tenant, what string) {
		t.Helper()
		err := su.db.Connection(func(c *gorm.DB) error {
			if err := c.Exec("SET ROLE " + quotedIdent(roles[tenant])).Error; err != nil {
				return err
			}
			tenExpect(t, what, c, table, truth, tenant)
			return c.Exec("RESET ROLE").Error
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	tenExpect(t, "superuser (fills)", su.db, table, truth, "superuser")
	tenExpect(t, "role a", a.db, table, truth, "a")
	tenExpect(t, "role b", b.db, table, truth, "b")
	denied("role without the grant")
	asRole("b", "superuser after SET ROLE b")
	tenExpect(t, "role a again", a.db, table, truth, "a")
	asRole("a", "superuser after SET ROLE a")
	tenExpect(t, "superuser again", su.db, table, truth, "superuser")
	denied("role without the grant, again")
}
