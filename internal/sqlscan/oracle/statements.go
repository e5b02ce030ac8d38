package oracle

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// notDDL are the statement types whose names look like DDL but are not,
// and the DDL statements whose names do not.
var notDDL = map[string]bool{"AlterTableCmd": true, "CreateOpClassItem": true}

var ddlStmts = map[string]bool{
	"DefineStmt": true, "RenameStmt": true, "RuleStmt": true, "GrantStmt": true,
	"GrantRoleStmt": true, "CommentStmt": true, "SecLabelStmt": true,
	"ReassignOwnedStmt": true, "ImportForeignSchemaStmt": true, "IndexStmt": true,
	"ViewStmt": true, "CompositeTypeStmt": true, "IntoClause": true,
}

// catalogFuncs are functions, besides pg_*, that read catalogs or session
// state (the analyser's list).
var catalogFuncs = map[string]bool{
	"obj_description": true, "col_description": true, "shobj_description": true,
	"format_type": true, "current_setting": true, "current_schema": true,
	"current_schemas": true, "current_database": true, "current_query": true,
	"row_security_active": true, "system_user": true,
}

var regTypes = map[string]bool{
	"regclass": true, "regtype": true, "regproc": true, "regprocedure": true,
	"regoper": true, "regoperator": true, "regnamespace": true, "regrole": true,
	"regconfig": true, "regdictionary": true, "regcollation": true,
}

// relKinds are the object types of relations.
var relKinds = map[pg_query.ObjectType]bool{
	pg_query.ObjectType_OBJECT_TABLE: true, pg_query.ObjectType_OBJECT_VIEW: true,
	pg_query.ObjectType_OBJECT_MATVIEW: true, pg_query.ObjectType_OBJECT_FOREIGN_TABLE: true,
	pg_query.ObjectType_OBJECT_SEQUENCE: true, pg_query.ObjectType_OBJECT_INDEX: true,
}

// onTableKinds are object types named "name ON table".
var onTableKinds = map[pg_query.ObjectType]bool{
	pg_query.ObjectType_OBJECT_RULE: true, pg_query.ObjectType_OBJECT_POLICY: true,
	pg_query.ObjectType_OBJECT_TRIGGER: true, pg_query.ObjectType_OBJECT_TABCONSTRAINT: true,
	pg_query.ObjectType_OBJECT_COLUMN: true,
}

// schemaDrops are the object types whose DROP must set Schema.
var schemaDrops = map[pg_query.ObjectType]bool{
	pg_query.ObjectType_OBJECT_SCHEMA: true, pg_query.ObjectType_OBJECT_FUNCTION: true,
	pg_query.ObjectType_OBJECT_TYPE: true, pg_query.ObjectType_OBJECT_EXTENSION: true,
	pg_query.ObjectType_OBJECT_DOMAIN: true, pg_query.ObjectType_OBJECT_PROCEDURE: true,
}

// statement records what a node of type name requires besides its
// RangeVars.
func (o *walk) statement(name string, m any, ctx string, scope []string) {
	if (strings.HasPrefix(name, "Create") || strings.HasPrefix(name, "Alter") ||
		strings.HasPrefix(name, "Drop") || ddlStmts[name]) && !notDDL[name] {
		o.f.DDL = true
	}
	o.namedWrites(m, scope)
	o.catalogRead(m)
}

// namedWrites records the relations a statement names with plain strings
// (DROP, COMMENT, SECURITY LABEL, RENAME) and the direction of COPY, and
// sets Schema for statements whose relations cannot be named.
func (o *walk) namedWrites(m any, scope []string) {
	f := o.f
	switch s := m.(type) {
	case *pg_query.CopyStmt:
		if s.Relation != nil {
			if s.IsFrom {
				f.Writes[s.Relation.Relname] = true
			} else {
				o.rangeVar(s.Relation, "read", scope)
			}
		}
	case *pg_query.DropStmt:
		f.Schema = f.Schema || s.Behavior == pg_query.DropBehavior_DROP_CASCADE || schemaDrops[s.RemoveType]
		for _, obj := range s.Objects {
			o.named(s.RemoveType, obj)
		}
	case *pg_query.RenameStmt:
		if relKinds[s.RenameType] {
			f.Writes[s.Newname] = true
		}
		f.Schema = f.Schema || s.RenameType == pg_query.ObjectType_OBJECT_SCHEMA
	case *pg_query.CommentStmt:
		o.named(s.Objtype, s.Object)
	case *pg_query.SecLabelStmt:
		o.named(s.Objtype, s.Object)
	case *pg_query.GrantStmt:
		f.Schema = f.Schema || s.Targtype == pg_query.GrantTargetType_ACL_TARGET_ALL_IN_SCHEMA
	case *pg_query.ImportForeignSchemaStmt:
		f.Schema = f.Schema || s.ListType != pg_query.ImportForeignSchemaType_FDW_IMPORT_SCHEMA_LIMIT_TO
	case *pg_query.CreateFunctionStmt, *pg_query.AlterFunctionStmt, *pg_query.CreateExtensionStmt,
		*pg_query.AlterExtensionStmt, *pg_query.DropOwnedStmt, *pg_query.ReassignOwnedStmt,
		*pg_query.GrantRoleStmt, *pg_query.AlterEnumStmt, *pg_query.AlterRoleStmt:
		f.Schema = true
	}
}

// catalogRead sets Catalog for a function call, SQL value function, type
// or SHOW that reads the catalogs or session state.
func (o *walk) catalogRead(m any) {
	f := o.f
	switch s := m.(type) {
	case *pg_query.FuncCall:
		// SQL-syntax functions (EXTRACT(... FROM ...), ...) come out as
		// pg_catalog.extract and the like, but read no catalog.
		if n := strs(s.Funcname); len(n) > 0 && s.Funcformat != pg_query.CoercionForm_COERCE_SQL_SYNTAX {
			first := n[0]
			if noCatalog(n[len(n)-1]) {
				break // sleeps and advisory locks read no catalog
			}
			if strings.HasPrefix(first, "pg_") || len(n) == 1 && (catalogFuncs[first] ||
				strings.HasPrefix(first, "to_reg") ||
				strings.HasPrefix(first, "has_") && strings.HasSuffix(first, "_privilege")) {
				f.Catalog = true
			}
		}
	case *pg_query.SQLValueFunction:
		switch s.Op {
		case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_ROLE, pg_query.SQLValueFunctionOp_SVFOP_CURRENT_USER,
			pg_query.SQLValueFunctionOp_SVFOP_USER, pg_query.SQLValueFunctionOp_SVFOP_SESSION_USER,
			pg_query.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG, pg_query.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:
			f.Catalog = true
		}
	case *pg_query.TypeName:
		if n := strs(s.Names); len(n) > 0 && regTypes[n[len(n)-1]] {
			f.Catalog = true
		}
	case *pg_query.VariableShowStmt:
		f.Catalog = true
	}
}

// named records the relation named by the object of a DROP, COMMENT or
// SECURITY LABEL: the last name for a relation, the next-to-last for a
// column, rule, policy, trigger or table constraint.
func (o *walk) named(kind pg_query.ObjectType, obj *pg_query.Node) {
	var names []string
	if l := obj.GetList(); l != nil {
		names = strs(l.Items)
	} else if s := obj.GetString_(); s != nil {
		names = []string{s.Sval}
	}
	switch {
	case len(names) == 0:
	case relKinds[kind]:
		o.f.Writes[names[len(names)-1]] = true
	case onTableKinds[kind] && len(names) >= 2:
		o.f.Writes[names[len(names)-2]] = true
	}
}

// strs returns the String values of a name list.
func strs(nodes []*pg_query.Node) []string {
	var out []string
	for _, n := range nodes {
		if s := n.GetString_(); s != nil {
			out = append(out, s.Sval)
		}
	}
	return out
}

// noCatalog reports whether a pg_* function reads no catalog: pg_sleep and
// its variants, and the advisory lock functions.
func noCatalog(fn string) bool {
	return strings.HasPrefix(fn, "pg_sleep") || strings.HasPrefix(fn, "pg_advisory_") ||
		strings.HasPrefix(fn, "pg_try_advisory_")
}
