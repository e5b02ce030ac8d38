package sqlscan

import (
	"reflect"
	"testing"
)

// DO blocks, CALL and EXECUTE run code the walk cannot follow: they may
// write every table.
func TestPostgresCodeWritesEverything(t *testing.T) {
	want := Result{Writes: l(AllTables), Schema: true}
	for _, q := range []string{
		"DO $$ BEGIN UPDATE t SET a = 1; END $$",
		"do language plpgsql 'BEGIN DELETE FROM t; END'",
		"CALL refresh_totals(1)",
		"EXECUTE plan(1)",
		"SELECT 1; CALL p()",
	} {
		if got := Analyze(PostgreSQL, q); !reflect.DeepEqual(got, want) && !(len(got.Writes) == 1 && got.Writes[0] == AllTables && got.Schema) {
			t.Errorf("Analyze(%q) = %+v, want every table written", q, got)
		}
	}
}
