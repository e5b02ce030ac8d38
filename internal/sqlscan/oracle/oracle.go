// Package oracle checks the SQL analyser of gormflight (internal/sqlscan)
// against PostgreSQL's own parser, through pg_query_go. It is a module of
// its own so that the library does not depend on cgo or on pg_query_go.
//
// The oracle walks the raw parse tree. Every RangeVar is classified by the
// field that holds it: a DML or DDL target is written, a foreign-key or LIKE
// reference and the targets of maintenance commands (LOCK, VACUUM, ...) are
// ignored, a reference to a CTE in scope is not a relation, and anything
// else is read. DROP, COMMENT, SECURITY LABEL and RENAME name relations with
// plain strings, which are handled by statement type.
package oracle

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Facts are what the oracle requires the analyser to report.
type Facts struct {
	Reads, Writes map[string]bool
	Catalog       bool // the statement reads catalogs or session state
	DDL           bool
	Schema        bool // the statement changes relations it cannot name
}

// Analyze parses sql with PostgreSQL's parser. ok is false if the parser
// rejects it.
func Analyze(sql string) (f Facts, ok bool) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return f, false
	}
	f = Facts{Reads: map[string]bool{}, Writes: map[string]bool{}}
	o := &walk{f: &f}
	for _, st := range tree.Stmts {
		o.node(st.Stmt, "", nil)
	}
	return f, true
}

// writeCtx are the fields whose RangeVars are written.
var writeCtx = map[string]bool{
	"InsertStmt.relation": true, "UpdateStmt.relation": true, "DeleteStmt.relation": true,
	"MergeStmt.relation": true, "TruncateStmt.relations": true, "CreateStmt.relation": true,
	"CreateStmt.inh_relations": true, "IntoClause.rel": true, "ViewStmt.view": true,
	"AlterTableStmt.relation": true, "PartitionCmd.name": true, "AlterTableCmd.def": true,
	"RenameStmt.relation": true, "AlterObjectSchemaStmt.relation": true,
	"CreatePolicyStmt.table": true, "AlterPolicyStmt.table": true, "RuleStmt.relation": true,
	"CreateTrigStmt.relation": true, "CreateSeqStmt.sequence": true, "AlterSeqStmt.sequence": true,
	"RefreshMatViewStmt.relation": true, "IndexStmt.relation": true, "GrantStmt.objects": true,
	"ImportForeignSchemaStmt.table_list": true, "AlterObjectDependsStmt.relation": true,
}

// ignoreCtx are the fields whose RangeVars are neither read nor written:
// their rows do not make the statement's result.
var ignoreCtx = map[string]bool{
	"Constraint.pktable": true, "TableLikeClause.relation": true, "LockStmt.relations": true,
	"VacuumRelation.relation": true, "ClusterStmt.relation": true, "ReindexStmt.relation": true,
	"CreateStatsStmt.relations": true, "CreateTrigStmt.constrrel": true,
	"PublicationTable.relation": true, "AlterOwnerStmt.relation": true,
	"LockingClause.locked_rels": true, // FOR UPDATE OF names FROM items
}

type walk struct{ f *Facts }

// node visits a message; ctx is "ParentType.field" of the field holding it
// (a Node wrapper is transparent) and scope the CTE names visible.
func (o *walk) node(m interface{ ProtoReflect() protoreflect.Message }, ctx string, scope []string) {
	if m == nil {
		return
	}
	o.msg(m.ProtoReflect(), ctx, scope)
}

func (o *walk) msg(m protoreflect.Message, ctx string, scope []string) {
	if !m.IsValid() {
		return
	}
	name := string(m.Descriptor().Name())
	if name != "Node" {
		o.statement(name, m.Interface(), ctx, scope)
	}
	if rv, ok := m.Interface().(*pg_query.RangeVar); ok {
		o.rangeVar(rv, ctx, scope)
		return
	}
	if wc := withClause(m.Interface()); wc != nil {
		scope = o.ctes(wc, scope)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() == "with_clause" {
			return true // visited by ctes
		}
		sub := name + "." + string(fd.Name())
		if name == "Node" {
			sub = ctx
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				o.msg(v.List().Get(i).Message(), sub, scope)
			}
		case fd.Message() != nil && !fd.IsMap():
			o.msg(v.Message(), sub, scope)
		}
		return true
	})
}

func withClause(m any) *pg_query.WithClause {
	switch s := m.(type) {
	case *pg_query.SelectStmt:
		return s.WithClause
	case *pg_query.InsertStmt:
		return s.WithClause
	case *pg_query.UpdateStmt:
		return s.WithClause
	case *pg_query.DeleteStmt:
		return s.WithClause
	case *pg_query.MergeStmt:
		return s.WithClause
	}
	return nil
}

// ctes visits the CTE bodies of wc, each with the names visible to it, and
// returns the scope of the statement that owns wc.
func (o *walk) ctes(wc *pg_query.WithClause, scope []string) []string {
	var names []string
	for _, n := range wc.Ctes {
		names = append(names, n.GetCommonTableExpr().GetCtename())
	}
	for i, n := range wc.Ctes {
		inner := append(append([]string(nil), scope...), names[:i]...)
		if wc.Recursive {
			inner = append(inner, names...)
		}
		o.node(n.GetCommonTableExpr().GetCtequery(), "CommonTableExpr.ctequery", inner)
	}
	return append(append([]string(nil), scope...), names...)
}

func (o *walk) rangeVar(rv *pg_query.RangeVar, ctx string, scope []string) {
	if ctx == "CopyStmt.relation" {
		return // handled by statement
	}
	if rv.Schemaname == "" && rv.Catalogname == "" && contains(scope, rv.Relname) && !writeCtx[ctx] {
		return // a CTE
	}
	switch {
	case ignoreCtx[ctx]:
	case writeCtx[ctx]:
		o.f.Writes[rv.Relname] = true
	default:
		o.f.Reads[rv.Relname] = true
		if strings.HasPrefix(rv.Relname, "pg_") || strings.HasPrefix(rv.Schemaname, "pg_") ||
			rv.Schemaname == "information_schema" {
			o.f.Catalog = true
		}
	}
}

func contains(v []string, s string) bool {
	for _, x := range v {
		if x == s {
			return true
		}
	}
	return false
}
