package gormflight

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"
)

// Cascade tests: writes the SQL does not name but the schema does (foreign
// key actions, TRUNCATE ... CASCADE) or the user declares (AlsoWrites, for
// triggers) invalidate every table they change. Each test makes tables of
// its own, so the foreign-key graph other tests see does not change.

// cascadeNames returns the replacer of a test's table names: {p} parent,
// {c} child, {g} grandchild, and {P} {C} quoted mixed-case ones.
func cascadeNames() (*strings.Replacer, map[string]string) {
	suffix := randHex(4)
	base := "gft_cas_" + suffix
	n := map[string]string{
		"{p}": base + "_p", "{c}": base + "_c", "{g}": base + "_g",
		"{P}": `"Gft_Cas_` + suffix + `_P"`,
		"{C}": `"Gft_Cas_` + suffix + `_C"`,
	}
	var pairs []string
	for k, v := range n {
		pairs = append(pairs, k, v)
	}
	return strings.NewReplacer(pairs...), n
}

// cascadeSchema creates the test's tables on a handle without the plugin
// (so only Initialize can have read them) and drops them when it ends.
func cascadeSchema(t *testing.T, r *strings.Replacer, schema string) *gorm.DB {
	t.Helper()
	live := openDB(t)
	if err := live.Exec(r.Replace(schema)).Error; err != nil {
		t.Fatalf("schema: %v", err)
	}
	t.Cleanup(func() {
		drop := "DROP TABLE IF EXISTS {g}, {c}, {p}, {C}, {P} CASCADE; DROP FUNCTION IF EXISTS {p}_fn()"
		if err := live.Exec(r.Replace(drop)).Error; err != nil {
			t.Errorf("drop: %v", err)
		}
	})
	return live
}

// cascadeRead reads one text value with read, cached or not.
func cascadeRead(t *testing.T, db *gorm.DB, read string, cached bool) string {
	t.Helper()
	var s string
	if cached {
		db = db.Scopes(Cache(time.Minute))
	}
	if err := db.Raw(read).Scan(&s).Error; err != nil {
		t.Fatalf("read: %v", err)
	}
	return s
}

// cascadeCheck primes the cached read on a and b (b's must be a hit), runs
// write, and checks that both then read what the database holds.
func cascadeCheck(t *testing.T, a, b *instance, live *gorm.DB, read string, write func() error) {
	t.Helper()
	before := cascadeRead(t, live, read, false)
	if got := cascadeRead(t, a.db, read, true); got != before {
		t.Fatalf("A's cached read before the write: got %q, want %q", got, before)
	}
	hits := b.p.Stats().Hits
	if got := cascadeRead(t, b.db, read, true); got != before {
		t.Fatalf("B's cached read before the write: got %q, want %q", got, before)
	}
	if b.p.Stats().Hits == hits {
		t.Fatalf("B's read before the write was not a hit: the test would prove nothing")
	}
	if err := write(); err != nil {
		t.Fatalf("write: %v", err)
	}
	after := cascadeRead(t, live, read, false)
	if after == before {
		t.Fatalf("the write left %q as it was: the test would prove nothing", before)
	}
	for _, in := range []struct {
		name string
		in   *instance
	}{{"A", a}, {"B", b}} {
		if got := cascadeRead(t, in.in.db, read, true); got != after {
			t.Errorf("%s's cached read after the write: got %q, want the live %q", in.name, got, after)
		}
	}
}

const (
	cascadeReadC = `SELECT coalesce(string_agg(id || '=' || coalesce(ref::text, 'null'), ',' ORDER BY id), 'empty') FROM {c}`
	cascadeReadG = `SELECT coalesce(string_agg(id || '=' || coalesce(ref::text, 'null'), ',' ORDER BY id), 'empty') FROM {g}`
)

// A child without a foreign key yet, the DDL that adds one, and the write
// it then cascades.
const (
	cascadeNoFK = `CREATE TABLE {p} (id int PRIMARY KEY);
CREATE TABLE {c} (id int PRIMARY KEY, ref int);
INSERT INTO {p} VALUES (1); INSERT INTO {c} VALUES (1, 1);`
	cascadeAddFK = "ALTER TABLE {c} ADD CONSTRAINT {c}_fk FOREIGN KEY (ref) REFERENCES {p} ON DELETE CASCADE"
)

func cascadeDeleteP(a, _ *instance, _ *gorm.DB, r *strings.Replacer) error {
	return a.db.Exec(r.Replace("DELETE FROM {p}")).Error
}

func TestCascadeWrites(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		schema string // tables and rows, made before the instances start
		read   string
		also   map[string][]string
		// ddl runs after the instances started and before the cached reads
		// are primed: the DDL statement's own invalidation proves nothing.
		ddl   func(a, b *instance, r *strings.Replacer) error
		write func(a, b *instance, live *gorm.DB, r *strings.Replacer) error
	}{{
		name: "on update cascade",
		schema: `CREATE TABLE {p} (id int PRIMARY KEY, refer int UNIQUE NOT NULL);
CREATE TABLE {c} (id int PRIMARY KEY, ref int REFERENCES {p}(refer) ON UPDATE CASCADE ON DELETE CASCADE);
INSERT INTO {p} VALUES (1, 1); INSERT INTO {c} VALUES (1, 1);`,
		read: cascadeReadC,
		write: func(a, _ *instance, _ *gorm.DB, r *strings.Replacer) error {
			return a.db.Table(r.Replace("{p}")).Where("id = ?", 1).Update("refer", 100).Error
		},
	}, {
		name: "on delete cascade",
		schema: `CREATE TABLE {p} (id int PRIMARY KEY);
CREATE TABLE {c} (id int PRIMARY KEY, ref int REFERENCES {p} ON DELETE CASCADE);
INSERT INTO {p} VALUES (1), (2); INSERT INTO {c} VALUES (1, 1), (2, 2);`,
		read: cascadeReadC,
		write: func(a, _ *instance, _ *gorm.DB, r *strings.Replacer) error {
			return a.db.Exec(r.Replace("DELETE FROM {p} WHERE id = ?"), 1).Error
		},
	}, {
		name: "on delete set null, quoted mixed-case names",
		schema: `CREATE TABLE {P} (id int PRIMARY KEY);
CREATE TABLE {C} (id int PRIMARY KEY, ref int REFERENCES {P} ON DELETE SET NULL);
INSERT INTO {P} VALUES (1); INSERT INTO {C} VALUES (1, 1);`,
		read: `SELECT coalesce(string_agg(id || '=' || coalesce(ref::text, 'null'), ',' ORDER BY id), 'empty') FROM public.{C}`,
		write: func(a, _ *instance, _ *gorm.DB, r *strings.Replacer) error {
			return a.db.Exec(r.Replace("DELETE FROM {P} WHERE id = 1")).Error
		},
	}, {
		name: "two levels",
		schema: `CREATE TABLE {p} (id int PRIMARY KEY);
CREATE TABLE {c} (id int PRIMARY KEY, ref int REFERENCES {p} ON DELETE CASCADE);
CREATE TABLE {g} (id int PRIMARY KEY, ref int DEFAULT 0 REFERENCES {c} ON DELETE SET NULL);
INSERT INTO {p} VALUES (1); INSERT INTO {c} VALUES (1, 1); INSERT INTO {g} VALUES (1, 1);`,
		read: cascadeReadG,
		write: func(a, _ *instance, _ *gorm.DB, r *strings.Replacer) error {
			return a.db.Exec(r.Replace("DELETE FROM {p}")).Error
		},
	}, {
		name: "truncate cascade empties tables whatever their actions",
		schema: `CREATE TABLE {p} (id int PRIMARY KEY);
CREATE TABLE {c} (id int PRIMARY KEY, ref int REFERENCES {p});
CREATE TABLE {g} (id int PRIMARY KEY, ref int REFERENCES {c} ON DELETE RESTRICT);
INSERT INTO {p} VALUES (1); INSERT INTO {c} VALUES (1, 1); INSERT INTO {g} VALUES (1, 1);`,
		read: cascadeReadG,
		write: func(a, _ *instance, _ *gorm.DB, r *strings.Replacer) error {
			return a.db.Exec(r.Replace("TRUNCATE TABLE {p} CASCADE")).Error
		},
	}, {
		name:   "foreign key added by DDL after Initialize",
		schema: cascadeNoFK,
		read:   cascadeReadC,
		ddl: func(a, _ *instance, r *strings.Replacer) error {
			return a.db.Exec(r.Replace(cascadeAddFK)).Error
		},
		write: cascadeDeleteP,
	}, {
		name:   "foreign key added inside a transaction",
		schema: cascadeNoFK,
		read:   cascadeReadC,
		ddl: func(a, _ *instance, r *strings.Replacer) error {
			return a.db.Transaction(func(tx *gorm.DB) error { return tx.Exec(r.Replace(cascadeAddFK)).Error })
		},
		write: cascadeDeleteP,
	}, {
		name:   "foreign key added by another instance",
		schema: cascadeNoFK,
		read:   cascadeReadC,
		ddl: func(a, b *instance, r *strings.Replacer) error {
			a.p.schema.maxAge = 0 // as if a minute had passed: A's next write reloads
			return b.db.Exec(r.Replace(cascadeAddFK)).Error
		},
		write: cascadeDeleteP,
	}, {
		name: "Invalidate of a parent written outside GORM",
		schema: `CREATE TABLE {p} (id int PRIMARY KEY);
CREATE TABLE {c} (id int PRIMARY KEY, ref int REFERENCES {p} ON DELETE CASCADE);
INSERT INTO {p} VALUES (1); INSERT INTO {c} VALUES (1, 1);`,
		read: cascadeReadC,
		write: func(a, _ *instance, live *gorm.DB, r *strings.Replacer) error {
			if err := live.Exec(r.Replace("DELETE FROM {p}")).Error; err != nil {
				return err
			}
			return a.p.Invalidate(ctx, r.Replace("{p}"))
		},
	}, {
		name: "AlsoWrites declares a trigger's writes",
		schema: `CREATE TABLE {p} (id int PRIMARY KEY, v int NOT NULL);
CREATE TABLE {c} (id int PRIMARY KEY, ref int NOT NULL);
INSERT INTO {c} VALUES (1, 0);
CREATE FUNCTION {p}_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE {c} SET ref = ref + NEW.v WHERE id = 1; RETURN NEW; END $$;
CREATE TRIGGER {p}_trg AFTER INSERT ON {p} FOR EACH ROW EXECUTE FUNCTION {p}_fn();`,
		read: cascadeReadC,
		also: map[string][]string{"public.{p}": {"{c}"}},
		write: func(a, _ *instance, _ *gorm.DB, r *strings.Replacer) error {
			return a.db.Table(r.Replace("{p}")).Create(map[string]any{"id": 1, "v": 5}).Error
		},
	}} {
		t.Run(c.name, func(t *testing.T) {
			r, _ := cascadeNames()
			live := cascadeSchema(t, r, c.schema)
			also := make(map[string][]string)
			for k, vs := range c.also {
				for _, v := range vs {
					also[r.Replace(k)] = append(also[r.Replace(k)], r.Replace(v))
				}
			}
			ins := newInstances(t, 2, func(cfg *Config) { cfg.AlsoWrites = also })
			if c.ddl != nil {
				if err := c.ddl(ins[0], ins[1], r); err != nil {
					t.Fatalf("DDL: %v", err)
				}
			}
			cascadeCheck(t, ins[0], ins[1], live, r.Replace(c.read), func() error {
				return c.write(ins[0], ins[1], live, r)
			})
		})
	}
}

// TestCascadeTriggerWarning: Initialize names the tables with triggers
// AlsoWrites does not declare, and a reload after DDL names new ones.
func TestCascadeTriggerWarning(t *testing.T) {
	r, n := cascadeNames()
	live := cascadeSchema(t, r, `CREATE TABLE {p} (id int PRIMARY KEY);
CREATE TABLE {c} (id int PRIMARY KEY);
CREATE TABLE {g} (id int PRIMARY KEY);
CREATE FUNCTION {p}_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER t1 AFTER INSERT ON {p} FOR EACH ROW EXECUTE FUNCTION {p}_fn();
CREATE TRIGGER t2 AFTER INSERT ON {c} FOR EACH ROW EXECUTE FUNCTION {p}_fn();`)
	_ = live
	log := &dirtyLog{}
	cfg := testConfig(openRedis(t, ""), testPrefix(t))
	cfg.AlsoWrites = map[string][]string{strings.ToUpper(n["{c}"]): nil} // declared: writes no other table
	in := dirtyInstance(t, cfg, log)
	if w := log.warnings("triggers", n["{p}"], "AlsoWrites"); len(w) != 1 {
		t.Errorf("Initialize: want one warning naming %s, got %v", n["{p}"], log.all())
	}
	if w := log.warnings(n["{c}"]); len(w) != 0 {
		t.Errorf("Initialize warned about %s, which AlsoWrites declares: %v", n["{c}"], w)
	}
	if err := in.db.Exec(r.Replace("CREATE TRIGGER t3 AFTER INSERT ON {g} FOR EACH ROW EXECUTE FUNCTION {p}_fn()")).Error; err != nil {
		t.Fatal(err)
	}
	if w := log.warnings("triggers", n["{g}"]); len(w) != 1 {
		t.Errorf("after CREATE TRIGGER: want one warning naming %s, got %v", n["{g}"], log.all())
	}
	if w := log.warnings(n["{p}"]); len(w) != 1 {
		t.Errorf("the reload warned about %s again: %v", n["{p}"], w)
	}
}

// TestCascadeGormConstraints is GORM's TestForeignKeyConstraints with
// cached reads: the foreign key comes from AutoMigrate run through the
// plugin's handle (DDL, so a reload), on an instance B that started before
// it and only reads.
func TestCascadeGormConstraints(t *testing.T) {
	type Profile struct {
		ID       uint
		Name     string
		MemberID uint
	}
	type Member struct {
		ID      uint
		Refer   uint `gorm:"uniqueIndex"`
		Name    string
		Profile Profile `gorm:"Constraint:OnUpdate:CASCADE,OnDelete:CASCADE;ForeignKey:MemberID;References:Refer"`
	}
	_, n := cascadeNames()
	prefix := strings.TrimSuffix(n["{p}"], "p")
	gcfg := func() *gorm.Config {
		return &gorm.Config{Logger: logger.Discard, NamingStrategy: schema.NamingStrategy{TablePrefix: prefix}}
	}
	live := openDBWith(t, gcfg())
	t.Cleanup(func() {
		if err := live.Migrator().DropTable(&Profile{}, &Member{}); err != nil {
			t.Errorf("drop: %v", err)
		}
	})
	rprefix := testPrefix(t)
	a := installPlugin(t, openDBWith(t, gcfg()), testConfig(openRedis(t, ""), rprefix))
	b := installPlugin(t, openDBWith(t, gcfg()), testConfig(openRedis(t, ""), rprefix))
	if err := a.db.AutoMigrate(&Member{}, &Profile{}); err != nil { // members first: profiles references it
		t.Fatal(err)
	}
	member := Member{Refer: 1, Name: "foreign_key_constraints", Profile: Profile{Name: "my_profile"}}
	if err := a.db.Create(&member).Error; err != nil {
		t.Fatal(err)
	}
	read := func(in *instance) (Profile, error) {
		var p Profile
		err := in.db.Scopes(Cache(time.Minute)).First(&p, "id = ?", member.Profile.ID).Error
		return p, err
	}
	for _, in := range []*instance{a, b, b} {
		if p, err := read(in); err != nil || p.MemberID != 1 {
			t.Fatalf("before: profile %+v, err %v; want member_id 1", p, err)
		}
	}
	if err := a.db.Model(&member).Update("Refer", 100).Error; err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]*instance{"A": a, "B": b} {
		if p, err := read(in); err != nil || p.MemberID != 100 {
			t.Errorf("%s after ON UPDATE CASCADE: profile %+v, err %v; want member_id 100", name, p, err)
		}
	}
	if err := a.db.Delete(&member).Error; err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]*instance{"A": a, "B": b} {
		if p, err := read(in); !errors.Is(err, gorm.ErrRecordNotFound) {
			t.Errorf("%s after ON DELETE CASCADE: profile %+v, err %v; want ErrRecordNotFound", name, p, err)
		}
	}
}
