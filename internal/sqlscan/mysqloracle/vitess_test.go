package mysqloracle

import (
	"slices"
	"strings"
	"testing"

	"github.com/gormflight/gormflight/internal/sqlscan"
	"vitess.io/vitess/go/vt/sqlparser"
)

// vitessTables returns the tables vitess's MySQL parser finds in stmt: those
// read (every table of a FROM, JOIN or subquery, but the CTEs in scope),
// and those written (INSERT's table, every table of a multi-table UPDATE
// or DELETE, what DDL affects). ok is false when vitess cannot parse stmt.
func vitessTables(p *sqlparser.Parser, stmt string) (read, written []string, ok bool) {
	st, err := p.Parse(stmt)
	if err != nil {
		return nil, nil, false
	}
	ctes := map[string]bool{}
	name := func(tn sqlparser.TableName) string { return strings.ToLower(tn.Name.String()) }
	_ = sqlparser.Walk(func(n sqlparser.SQLNode) (bool, error) {
		switch x := n.(type) {
		case *sqlparser.With:
			for _, c := range x.CTEs {
				ctes[strings.ToLower(c.ID.String())] = true
			}
		case *sqlparser.AliasedTableExpr:
			if tn, ok := x.Expr.(sqlparser.TableName); ok && !ctes[name(tn)] && name(tn) != "dual" {
				read = append(read, name(tn))
			}
		}
		return true, nil
	}, st)
	switch s := st.(type) {
	case *sqlparser.Insert:
		if tn, ok := s.Table.Expr.(sqlparser.TableName); ok {
			written = append(written, name(tn))
		}
	case *sqlparser.Update, *sqlparser.Delete:
		// Every table of the statement's list may be written (multi-table).
		var exprs sqlparser.TableExprs
		if u, ok := s.(*sqlparser.Update); ok {
			exprs = u.TableExprs
		} else {
			exprs = s.(*sqlparser.Delete).TableExprs
		}
		_ = sqlparser.Walk(func(n sqlparser.SQLNode) (bool, error) {
			if ate, ok := n.(*sqlparser.AliasedTableExpr); ok {
				if tn, ok := ate.Expr.(sqlparser.TableName); ok && !ctes[name(tn)] {
					written = append(written, name(tn))
				}
				return false, nil // a subquery's tables are read only
			}
			return true, nil
		}, exprs)
	case sqlparser.DDLStatement:
		for _, tn := range s.AffectedTables() {
			written = append(written, name(tn))
		}
	}
	return read, written, true
}

// TestVitessOracle compares the analyser with vitess's MySQL parser on the
// corpus: every table vitess finds read must be read or written, and every
// table it finds written must be written, unless the analyser says Schema
// (every table) or Catalog (never cached). It needs no database.
func TestVitessOracle(t *testing.T) {
	p, err := sqlparser.New(sqlparser.Options{})
	if err != nil {
		t.Fatal(err)
	}
	parsed := 0
	for _, stmt := range append(corpus(t), hardStatements()...) {
		read, written, ok := vitessTables(p, stmt)
		if !ok {
			continue
		}
		parsed++
		got := sqlscan.Analyze(sqlscan.MySQL, stmt)
		if got.Schema || got.Catalog {
			continue
		}
		for _, name := range read {
			if !slices.Contains(got.Reads, name) && !slices.Contains(got.Writes, name) {
				t.Errorf("%q: vitess reads %q; the analyser reports reads %q, writes %q", stmt, name, got.Reads, got.Writes)
			}
		}
		for _, name := range written {
			if !slices.Contains(got.Writes, name) {
				t.Errorf("%q: vitess writes %q; the analyser reports writes %q", stmt, name, got.Writes)
			}
		}
	}
	t.Logf("vitess parsed %d statements", parsed)
	if parsed < 100 {
		t.Errorf("vitess parsed only %d statements: the corpus drifted", parsed)
	}
}

func hardStatements() []string {
	var out []string
	for _, c := range hardCases {
		out = append(out, c.stmt)
	}
	return out
}
