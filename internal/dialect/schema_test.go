package dialect

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
)

func TestGraphExpand(t *testing.T) {
	g := BuildGraph([]FKEdge{
		{Parent: "a", Child: "b", Modifies: true}, {Parent: "b", Child: "c", Modifies: true}, {Parent: "c", Child: "a", Modifies: true}, // a cycle
		{Parent: "a", Child: "x", Modifies: false}, {Parent: "x", Child: "y", Modifies: false}, // only TRUNCATE ... CASCADE reaches these
		{Parent: "m", Child: "n", Modifies: true},
	}, []string{"t"}, map[string][]string{"t": {"u"}, "u": {"m"}, "quiet": nil}, time.Now())
	for _, c := range []struct {
		in       []string
		truncate bool
		want     []string
	}{
		{[]string{"a"}, false, []string{"a", "b", "c"}},
		{[]string{"c"}, false, []string{"a", "b", "c"}},
		{[]string{"a"}, true, []string{"a", "b", "c", "x", "y"}},
		{[]string{"x"}, false, []string{"x"}},
		{[]string{"t"}, false, []string{"m", "n", "t", "u"}},
		{[]string{"quiet", "z"}, false, []string{"quiet", "z"}},
		{nil, true, nil},
	} {
		if got := g.Expand(c.in, c.truncate); !slices.Equal(got, c.want) {
			t.Errorf("expand(%v, truncate=%v) = %v, want %v", c.in, c.truncate, got, c.want)
		}
	}
	old := BuildGraph([]FKEdge{{Parent: "a", Child: "old", Modifies: true}}, []string{"s"}, nil, time.Unix(1, 0))
	u := g.Union(old)
	if got := u.Expand([]string{"a"}, false); !slices.Equal(got, []string{"a", "b", "c", "old"}) {
		t.Errorf("union: expand(a) = %v", got)
	}
	if !slices.Equal(u.Triggers, []string{"s", "t"}) || !u.Loaded.Equal(old.Loaded) {
		t.Errorf("union: triggers %v loaded %v", u.Triggers, u.Loaded)
	}
	var none *Graph
	if got := none.Expand([]string{"a"}, false); !slices.Equal(got, []string{"a"}) {
		t.Errorf("nil graph: %v", got)
	}
}

func TestStatementKinds(t *testing.T) {
	for _, c := range []struct {
		sql           string
		ddl, truncCas bool
	}{
		{"SELECT * FROM t", false, false},
		{"  create table t (id int)", true, false},
		{"ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES p ON DELETE CASCADE", true, false},
		{"DROP TABLE t CASCADE", true, false},
		{"-- comment\nDROP TRIGGER x ON t", true, false},
		{"/* c */ create trigger x", true, false},
		{"/* unterminated", false, false},
		{"(SELECT 1); DROP TABLE t", true, false},
		{"UPDATE t SET a = 'create'; alter table t drop column b", true, false},
		{"INSERT INTO created VALUES (1)", false, false},
		{"TRUNCATE t CASCADE", false, true},
		{"truncate table only t, u restart identity cascade", false, true},
		{"TRUNCATE t", false, false},
		{"TRUNCATE t; DELETE FROM cascade", false, false},
		{"DELETE FROM t WHERE a = 'truncate x cascade'", false, false},
	} {
		if got := Postgres.IsDDL(c.sql); got != c.ddl {
			t.Errorf("isDDL(%q) = %v", c.sql, got)
		}
		if got := Postgres.TruncatesCascade(c.sql); got != c.truncCas {
			t.Errorf("truncatesCascade(%q) = %v", c.sql, got)
		}
	}
}

func TestNormAlsoWrites(t *testing.T) {
	got, err := NormAlsoWrites(Postgres.TableName, map[string][]string{"Public.Orders": {`"Totals"`, "audit", "AUDIT"}, "q": nil})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !slices.Equal(got["orders"], []string{"Totals", "audit"}) {
		t.Errorf("normalised: %v", got)
	}
	if _, ok := got["q"]; !ok {
		t.Errorf("a key with no tables was dropped: %v", got)
	}
	for _, bad := range []map[string][]string{{"": {"x"}}, {"x": {"1abc"}}} {
		if _, err := NormAlsoWrites(Postgres.TableName, bad); !errors.Is(err, engine.ErrInvalidConfig) {
			t.Errorf("NormAlsoWrites(%v): err %v, want engine.ErrInvalidConfig", bad, err)
		}
	}
}
