package sqlscan

import "testing"

// TestClassify covers the two callers of the classifier: a Select needs no
// analysis for writes (a second statement after a semicolon must not hide
// behind the first one's SELECT), and only a statement that IsQuery may be
// cached (anything else, such as CALL, may write where no analysis sees).
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		sql  string
		want Kind
	}{
		{"SELECT * FROM t", Select},
		{"select 1", Select},
		{"SELECT", Select},
		{"select(1)", Select},
		{"  (SELECT 1) UNION (SELECT 2)", Select},
		{"\r\n\t((SELECT 1))", Select},
		{"SELECT pg_advisory_lock(1); UPDATE t SET a = 1", Query},
		{"SELECT 1;", Query},
		{"SELECT ';'", Query}, // a semicolon anywhere: no lexing to tell
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", Query},
		{"with x as (select 1) select * from x", Query},
		{"VALUES (1), (2)", Query},
		{"(VALUES (1))", Query},
		{"TABLE t", Query},
		{"SHOW search_path", Query},
		{"show ALL", Query},
		{"INSERT INTO t VALUES (1)", Write},
		{"UPDATE t SET a = 1", Write},
		{"delete from t", Write},
		{"MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", Write},
		{"SELECTED", Other},
		{"select$1", Other},
		{"selectx FROM t", Other},
		{"sélect 1", Other},
		{"ſelect 1", Other}, // ASCII keywords only: ſ folds to s in Unicode
		{"ſhow all", Other},
		{"CALL p()", Other},
		{"DO $$BEGIN END$$", Other},
		{"EXPLAIN SELECT 1", Other},
		{"SET search_path TO s", Other},
		{"CREATE TABLE t (a int)", Other},
		{"/* c */ SELECT 1", Other}, // comments are not skipped
		{"-- c\nSELECT 1", Other},
		{"\fSELECT 1", Other},
		{"", Other},
		{"(", Other},
	} {
		t.Run(c.sql, func(t *testing.T) {
			if got := Classify(PostgreSQL, c.sql); got != c.want {
				t.Errorf("Classify(%q) = %v, want %v", c.sql, got, c.want)
			}
		})
	}
}

func TestKindIsQuery(t *testing.T) {
	for k, want := range map[Kind]bool{Other: false, Select: true, Query: true, Write: false} {
		if got := k.IsQuery(); got != want {
			t.Errorf("Kind(%d).IsQuery() = %v, want %v", k, got, want)
		}
	}
}

func TestClassifyAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { Classify(PostgreSQL, gormJoinQuery) }); n != 0 {
		t.Errorf("Classify allocates %v times per call, want 0", n)
	}
}

func BenchmarkClassify(b *testing.B) {
	for b.Loop() {
		Classify(PostgreSQL, gormJoinQuery)
	}
}
