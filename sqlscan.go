package gormflight

import (
	"fmt"
	"slices"

	"github.com/gormflight/gormflight/internal/sqlscan"
	"github.com/maypok86/otter/v2"
)

// The SQL analyser lives in internal/sqlscan; these methods keep the
// package's short names and pass it the plugin's dialect.

// tables returns the tables a statement reads and writes (sqlscan.Tables).
// The lists are shared: append to them, never change them in place.
func (d *dialect) tables(query string) (read, written []string) {
	r := d.analyze(query)
	return r.Reads, r.Writes
}

// normTable returns the generation name of a table reference (sqlscan.NormTable).
func (d *dialect) normTable(name string) string { return sqlscan.NormTable(d.sql, name) }

// tableName returns the generation name of a table name given alone
// (sqlscan.TableName), or an error wrapping ErrInvalidTableName.
func (d *dialect) tableName(name string) (string, error) { return tableNameIn(d.sql, name) }

// tableNameIn is tableName for the analyser's dialect sd.
func tableNameIn(sd sqlscan.Dialect, name string) (string, error) {
	t, ok := sqlscan.TableName(sd, name)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrInvalidTableName, name)
	}
	return t, nil
}

// analyze returns everything the analyser knows of a statement
// (sqlscan.Analyze). Its lists are shared: append to them, never change
// them in place.
func (d *dialect) analyze(query string) sqlscan.Result { return d.analysis(query).Result }

// analysis is a statement's sqlscan.Result and the tables its entries
// depend on without declared ones: what it reads and sqlscan.AllTables.
type analysis struct {
	sqlscan.Result
	depends []string
}

// analysis returns query's analysis, remembered for the next time.
func (d *dialect) analysis(query string) analysis {
	key := analysisKey{d.sql, query}
	if a, ok := analyses.GetIfPresent(key); ok {
		return a
	}
	r := sqlscan.Analyze(key.dialect, query)
	// Clipped, so that an append copies instead of writing into them.
	r.Reads, r.Writes = slices.Clip(r.Reads), slices.Clip(r.Writes)
	a := analysis{Result: r, depends: slices.Clip(mergeTables(r.Reads, []string{sqlscan.AllTables}))}
	if len(query) <= maxAnalysedLen {
		analyses.Set(key, a)
	}
	return a
}

// analysisKey is what an analysis depends on: the statement string and
// its dialect (plugins of two dialects must not share analyses).
type analysisKey struct {
	dialect sqlscan.Dialect
	query   string
}

// analyses remembers the analysis of recent statements, whose strings an
// application repeats: a cached query needs its analysis twice (the pool's
// request, and the write callbacks that run after every statement). It is
// bounded by weight: statement strings up to maxAnalysedLen bytes and their
// tables, 4 MiB in all. Every Plugin of the process shares it.
var analyses = otter.Must(&otter.Options[analysisKey, analysis]{
	MaximumWeight: 4 << 20,
	Weigher: func(key analysisKey, a analysis) uint32 {
		w := 96 + len(key.query)
		for _, t := range a.Reads {
			w += 32 + 2*len(t) // in Reads and in depends
		}
		for _, t := range a.Writes {
			w += 16 + len(t)
		}
		return uint32(w)
	},
})

// maxAnalysedLen: longer statements (generated IN lists, bulk inserts)
// are analysed every time rather than remembered.
const maxAnalysedLen = 4 << 10

// classify returns the kind of a statement by its first keyword (sqlscan.Classify).
func (d *dialect) classify(query string) sqlscan.Kind { return sqlscan.Classify(d.sql, query) }
