package dialect

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gormflight/gormflight/internal/engine"
	"github.com/gormflight/gormflight/internal/sqlscan"
)

// Some writes change tables their SQL does not name, and the database knows
// exactly which: a foreign key whose ON UPDATE or ON DELETE action is
// CASCADE, SET NULL or SET DEFAULT changes the referencing table, and
// TRUNCATE ... CASCADE empties every referencing table whatever its actions.
// ReadSchema reads these edges from the catalog (the dialect's SchemaSQL)
// into a Graph, which expands the tables a write names into every table it
// can reach, transitively. Triggers and rules are code no catalog explains:
// their writes are declared by the user (NormAlsoWrites) and join the same
// closure.

// SchemaLoadTimeout bounds one catalog query. Catalog reads take no lock a
// user statement holds, so this only guards a stuck connection.
const SchemaLoadTimeout = 5 * time.Second

// Graph is one immutable reading of the schema. Readers load it
// without locking; a reload replaces it whole.
type Graph struct {
	Modifies map[string][]string // table -> tables a write to it changes: FK actions, AlsoWrites
	Empties  map[string][]string // modifies plus every referencing table: TRUNCATE ... CASCADE
	Triggers []string            // sorted: tables with user triggers
	Loaded   time.Time           // when to count schemaMaxAge from
}

// NormAlsoWrites normalises Config.AlsoWrites with tableName, rejecting
// names that are not table references. A key with no tables stays: it
// declares a trigger that writes no other table.
func NormAlsoWrites(tableName func(string) (string, error), also map[string][]string) (map[string][]string, error) {
	if len(also) == 0 {
		return nil, nil
	}
	out := make(map[string][]string, len(also))
	for k, vs := range also {
		key, err := tableName(k)
		if err != nil {
			return nil, fmt.Errorf("%w: AlsoWrites key: %w", engine.ErrInvalidConfig, err)
		}
		tables := out[key]
		for _, v := range vs {
			t, err := tableName(v)
			if err != nil {
				return nil, fmt.Errorf("%w: AlsoWrites[%q]: %w", engine.ErrInvalidConfig, k, err)
			}
			tables = append(tables, t)
		}
		out[key] = TableSet(tables)
	}
	return out, nil
}

// FKEdge is one foreign key: writes to parent may change child.
type FKEdge struct {
	Parent, Child string
	Modifies      bool // an ON UPDATE/ON DELETE action writes the child
}

// ReadSchema runs the dialect's schemaSQL on pool and builds the graph.
// Its rows are (kind, parent, child, modifies): kind 'f' is a foreign key
// (modifies: an action changes the child), 't' a table with a trigger a
// user created (in parent).
func (d *Dialect) ReadSchema(ctx context.Context, pool Querier, declared map[string][]string) (*Graph, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), SchemaLoadTimeout)
	defer cancel()
	rows, err := pool.QueryContext(ctx, d.SchemaSQL)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var edges []FKEdge
	var triggers []string
	for rows.Next() {
		var kind string
		var e FKEdge
		if err := rows.Scan(&kind, &e.Parent, &e.Child, &e.Modifies); err != nil {
			return nil, err
		}
		e.Parent, e.Child = d.CatalogName(e.Parent), d.CatalogName(e.Child)
		if kind == "t" {
			triggers = append(triggers, e.Parent)
		} else {
			edges = append(edges, e)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return BuildGraph(edges, triggers, declared, time.Now()), nil
}

// BuildGraph turns the edges and declarations into a graph.
func BuildGraph(edges []FKEdge, triggers []string, declared map[string][]string, loaded time.Time) *Graph {
	g := &Graph{
		Modifies: make(map[string][]string),
		Empties:  make(map[string][]string),
		Triggers: TableSet(triggers),
		Loaded:   loaded,
	}
	for _, e := range edges {
		if e.Modifies {
			g.Modifies[e.Parent] = append(g.Modifies[e.Parent], e.Child)
		}
		g.Empties[e.Parent] = append(g.Empties[e.Parent], e.Child)
	}
	for k, vs := range declared {
		g.Modifies[k] = append(g.Modifies[k], vs...)
		g.Empties[k] = append(g.Empties[k], vs...)
	}
	for _, m := range []map[string][]string{g.Modifies, g.Empties} {
		for k, vs := range m {
			if vs = TableSet(vs); len(vs) == 0 {
				delete(m, k)
			} else {
				m[k] = vs
			}
		}
	}
	return g
}

// Union returns a graph with the edges and triggers of both g and old, and
// old's age: a reading taken inside a transaction may show DDL that will
// roll back, and may miss edges the transaction dropped but will restore.
func (g *Graph) Union(old *Graph) *Graph {
	if old == nil {
		return g
	}
	u := &Graph{
		Modifies: make(map[string][]string),
		Empties:  make(map[string][]string),
		Triggers: TableSet(append(slices.Clone(g.Triggers), old.Triggers...)),
		Loaded:   old.Loaded,
	}
	for _, pair := range [][2]map[string][]string{{u.Modifies, g.Modifies}, {u.Modifies, old.Modifies}, {u.Empties, g.Empties}, {u.Empties, old.Empties}} {
		for k, vs := range pair[1] {
			pair[0][k] = TableSet(append(slices.Clone(pair[0][k]), vs...))
		}
	}
	return u
}

// Expand returns tables (sorted, without duplicates) together with every
// table a write to them can change, transitively: through modifying
// foreign keys and AlsoWrites, or through every foreign key when the write
// is a TRUNCATE ... CASCADE. It returns tables itself when nothing is added.
func (g *Graph) Expand(tables []string, truncateCascade bool) []string {
	if g == nil || len(tables) == 0 {
		return tables
	}
	next := g.Modifies
	if truncateCascade {
		next = g.Empties
	}
	if !slices.ContainsFunc(tables, func(t string) bool { return len(next[t]) > 0 }) {
		return tables
	}
	seen := make(map[string]struct{}, len(tables)*2)
	queue := make([]string, 0, len(tables)*2)
	for _, t := range tables {
		seen[t] = struct{}{}
		queue = append(queue, t)
	}
	for i := 0; i < len(queue); i++ { // queue grows: the closure, cycles included
		for _, c := range next[queue[i]] {
			if _, ok := seen[c]; !ok {
				seen[c] = struct{}{}
				queue = append(queue, c)
			}
		}
	}
	return TableSet(queue)
}

// IsDDL reports whether query holds DDL: a statement that may change
// foreign keys or triggers. Extra reloads only cost a catalog query.
func (d *Dialect) IsDDL(query string) bool { return d.Analyze(query).DDL }

// TruncatesCascade reports whether query holds a TRUNCATE statement with
// CASCADE, which empties every table referencing the ones it names.
func (d *Dialect) TruncatesCascade(query string) bool {
	if !ContainsFold(query, "truncate") {
		return false
	}
	first, truncate := true, false
	for _, t := range sqlscan.Lex(d.SQL, query) {
		word := t.Kind == sqlscan.TokWord
		switch {
		case t.Kind == sqlscan.TokSemi:
			first, truncate = true, false
			continue
		case word && first:
			truncate = strings.EqualFold(query[t.Pos:t.End], "truncate")
		case word && truncate && strings.EqualFold(query[t.Pos:t.End], "cascade"):
			return true
		}
		first = false
	}
	return false
}

// TableSet returns v sorted and without duplicates (nil if empty). It
// reuses v's memory: callers pass slices of their own.
func TableSet(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	slices.Sort(v)
	return slices.Clip(slices.Compact(v))
}

// CommitsImplicitly reports whether query holds a statement that ends the
// open transaction before the statements after it run: COMMIT, ROLLBACK
// (not ROLLBACK TO a savepoint), and PostgreSQL's and SQLite's END and
// ABORT in every dialect; in one that commits implicitly (ImplicitCommit:
// MySQL), its DDL other than on temporary tables and its statements that
// manage transactions, locks, users and tables too.
func (d *Dialect) CommitsImplicitly(query string) bool {
	st := lexed{query: query, toks: sqlscan.Lex(d.SQL, query)}
	first := true
	for i := range st.toks {
		if st.toks[i].Kind == sqlscan.TokSemi {
			first = true
			continue
		}
		if first {
			switch w := st.word(i); {
			case w == "commit", w == "rollback" && !rollsBackTo(st, i+1),
				(w == "end" || w == "abort") && d.SQL != sqlscan.MySQL:
				return true
			case d.ImplicitCommit && w == "set" && st.word(i+1) == "password":
				return true
			case d.ImplicitCommit && implicitCommitWords[w] &&
				!(st.word(i+1) == "temporary" || st.word(i+1) == "or" && st.word(i+3) == "temporary"):
				return true
			}
		}
		first = false
	}
	return false
}

// rollsBackTo reports whether the ROLLBACK whose next token is at i rolls
// back to a savepoint: ROLLBACK [WORK | TRANSACTION] TO ...
func rollsBackTo(st lexed, i int) bool {
	if w := st.word(i); w == "work" || w == "transaction" {
		i++
	}
	return st.word(i) == "to"
}

// implicitCommitWords begin MySQL's statements that commit the open
// transaction (except CREATE and DROP TEMPORARY TABLE). UNLOCK TABLES does
// only after LOCK TABLES, which committed already; LOAD DATA only on NDB.
// A statement taken for one that does not commit costs extra bumps only
// (the transaction's writes are bumped again when it ends).
var implicitCommitWords = map[string]bool{
	"alter": true, "create": true, "drop": true, "rename": true, "truncate": true,
	"grant": true, "revoke": true, "begin": true, "start": true, "lock": true,
	"analyze": true, "optimize": true, "repair": true, "check": true, "flush": true,
	"reset": true, "cache": true, "install": true, "uninstall": true,
}
