package gormflight

import (
	"strings"
	"testing"

	"gorm.io/gorm"
)

// Foreign-key cascades on MariaDB and SQLite, read from their catalogs
// (information_schema, pragma_foreign_key_list): a write to a parent
// invalidates the children its actions change. TestCascadeWrites covers
// PostgreSQL.

// cascadeDialectCase is one cascade on MariaDB and SQLite: statements
// (split on ";\n") make its tables before the instances start.
type cascadeDialectCase struct {
	name          string
	mysql, sqlite string
	grandchild    bool                // read {g} instead of {c}
	also          map[string][]string // AlsoWrites
	// ddl runs on instance A after the instances started and before the
	// reads are primed (mysql and sqlite variants); write is SQL run on A.
	ddlMySQL, ddlSQLite string
	write               string
}

var cascadeDialectCases = []cascadeDialectCase{{
	name: "on delete cascade",
	mysql: `CREATE TABLE {p} (id int PRIMARY KEY);
CREATE TABLE {c} (id int PRIMARY KEY, ref int, FOREIGN KEY (ref) REFERENCES {p} (id) ON DELETE CASCADE);
INSERT INTO {p} VALUES (1), (2);
INSERT INTO {c} VALUES (1, 1), (2, 2)`,
	sqlite: `CREATE TABLE {p} (id int PRIMARY KEY);
CREATE TABLE {c} (id int PRIMARY KEY, ref int REFERENCES {p} ON DELETE CASCADE);
INSERT INTO {p} VALUES (1), (2);
INSERT INTO {c} VALUES (1, 1), (2, 2)`,
	write: "DELETE FROM {p} WHERE id = 1",
}, {
	name: "on update cascade, mixed-case names",
	mysql: `CREATE TABLE {P} (id int PRIMARY KEY, refer int UNIQUE NOT NULL);
CREATE TABLE {C} (id int PRIMARY KEY, ref int, FOREIGN KEY (ref) REFERENCES {P} (refer) ON UPDATE CASCADE);
INSERT INTO {P} VALUES (1, 1);
INSERT INTO {C} VALUES (1, 1)`,
	sqlite: `CREATE TABLE {P} (id int PRIMARY KEY, refer int UNIQUE NOT NULL);
CREATE TABLE {C} (id int PRIMARY KEY, ref int REFERENCES {P} (refer) ON UPDATE CASCADE);
INSERT INTO {P} VALUES (1, 1);
INSERT INTO {C} VALUES (1, 1)`,
	write: "UPDATE {P} SET refer = 100 WHERE id = 1",
}, {
	name: "two levels, set null",
	mysql: `CREATE TABLE {p} (id int PRIMARY KEY);
CREATE TABLE {c} (id int PRIMARY KEY, ref int, FOREIGN KEY (ref) REFERENCES {p} (id) ON DELETE CASCADE);
CREATE TABLE {g} (id int PRIMARY KEY, ref int, FOREIGN KEY (ref) REFERENCES {c} (id) ON DELETE SET NULL);
INSERT INTO {p} VALUES (1);
INSERT INTO {c} VALUES (1, 1);
INSERT INTO {g} VALUES (1, 1)`,
	sqlite: `CREATE TABLE {p} (id int PRIMARY KEY);
CREATE TABLE {c} (id int PRIMARY KEY, ref int REFERENCES {p} ON DELETE CASCADE);
CREATE TABLE {g} (id int PRIMARY KEY, ref int REFERENCES {c} ON DELETE SET NULL);
INSERT INTO {p} VALUES (1);
INSERT INTO {c} VALUES (1, 1);
INSERT INTO {g} VALUES (1, 1)`,
	grandchild: true,
	write:      "DELETE FROM {p}",
}, {
	name: "foreign key made by DDL after Initialize",
	mysql: `CREATE TABLE {p} (id int PRIMARY KEY);
CREATE TABLE {c} (id int PRIMARY KEY, ref int);
INSERT INTO {p} VALUES (1);
INSERT INTO {c} VALUES (1, 1)`,
	ddlMySQL: "ALTER TABLE {c} ADD CONSTRAINT {c}_fk FOREIGN KEY (ref) REFERENCES {p} (id) ON DELETE CASCADE",
	// SQLite adds no constraint to a table: the child is made after Initialize.
	sqlite:    "CREATE TABLE {p} (id int PRIMARY KEY);\nINSERT INTO {p} VALUES (1)",
	ddlSQLite: "CREATE TABLE {c} (id int PRIMARY KEY, ref int REFERENCES {p} ON DELETE CASCADE);\nINSERT INTO {c} VALUES (1, 1)",
	write:     "DELETE FROM {p}",
}, {
	name: "AlsoWrites declares a trigger's writes",
	mysql: `CREATE TABLE {p} (id int PRIMARY KEY, v int NOT NULL);
CREATE TABLE {c} (id int PRIMARY KEY, ref int NOT NULL);
INSERT INTO {c} VALUES (1, 0);
CREATE TRIGGER {p}_trg AFTER INSERT ON {p} FOR EACH ROW UPDATE {c} SET ref = ref + NEW.v WHERE id = 1`,
	sqlite: `CREATE TABLE {p} (id int PRIMARY KEY, v int NOT NULL);
CREATE TABLE {c} (id int PRIMARY KEY, ref int NOT NULL);
INSERT INTO {c} VALUES (1, 0);
CREATE TRIGGER {p}_trg AFTER INSERT ON {p} BEGIN UPDATE {c} SET ref = ref + NEW.v WHERE id = 1; END`,
	also:  map[string][]string{"{p}": {"{c}"}},
	write: "INSERT INTO {p} (id, v) VALUES (1, 5)",
}}

func TestCascadeWritesDialects(t *testing.T) {
	for _, d := range []*testDB{&mysqlTestDB, &sqliteTestDB} {
		t.Run(d.name, func(t *testing.T) {
			for _, c := range cascadeDialectCases {
				t.Run(c.name, func(t *testing.T) { testCascadeDialect(t, d, c) })
			}
		})
	}
}

func testCascadeDialect(t *testing.T, d *testDB, c cascadeDialectCase) {
	r, names := cascadeNames()
	quote := `"`
	schema, ddl := c.sqlite, c.ddlSQLite
	read := `SELECT coalesce(group_concat(id || '=' || coalesce(ref, 'null'), ','), 'empty') FROM (SELECT id, ref FROM {t} ORDER BY id)`
	if d.name == "mysql" {
		quote, schema, ddl = "`", c.mysql, c.ddlMySQL
		read = `SELECT COALESCE(GROUP_CONCAT(CONCAT(id, '=', COALESCE(ref, 'null')) ORDER BY id SEPARATOR ','), 'empty') FROM {t}`
	}
	for _, k := range []string{"{P}", "{C}"} { // quoted the dialect's way
		names[k] = quote + strings.Trim(names[k], `"`) + quote
	}
	var pairs []string
	for k, v := range names {
		pairs = append(pairs, k, v)
	}
	r = strings.NewReplacer(pairs...)
	table := "{c}"
	switch {
	case c.grandchild:
		table = "{g}"
	case strings.Contains(c.write, "{P}"):
		table = "{C}"
	}
	read = r.Replace(strings.ReplaceAll(read, "{t}", table))

	live := d.open(t)
	cascadeExec(t, live, r.Replace(schema))
	if d.name == "mysql" {
		t.Cleanup(func() {
			if err := live.Exec(r.Replace("DROP TABLE IF EXISTS {g}, {c}, {p}, {C}, {P}")).Error; err != nil {
				t.Errorf("drop: %v", err)
			}
		})
	}
	also := make(map[string][]string)
	for k, vs := range c.also {
		for _, v := range vs {
			also[r.Replace(k)] = append(also[r.Replace(k)], r.Replace(v))
		}
	}
	ins := d.instances(t, 2, func(cfg *Config) { cfg.AlsoWrites = also })
	if ddl != "" {
		cascadeExec(t, ins[0].db, r.Replace(ddl))
	}
	cascadeCheck(t, ins[0], ins[1], live, read, func() error {
		return ins[0].db.Exec(r.Replace(c.write)).Error
	})
}

// cascadeExec runs statements separated by ";\n" one by one on db.
func cascadeExec(t *testing.T, db *gorm.DB, statements string) {
	t.Helper()
	for _, s := range strings.Split(statements, ";\n") {
		if err := db.Exec(s).Error; err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}
