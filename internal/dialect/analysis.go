package dialect

import (
	"errors"
	"fmt"
	"slices"

	"github.com/gormflight/gormflight/internal/sqlscan"
	"github.com/maypok86/otter/v2"
)

// The SQL analyser lives in internal/sqlscan; these methods pass it the
// dialect, and remember its analyses.

// Tables returns the tables a statement reads and writes (sqlscan.Tables).
// The lists are shared: append to them, never change them in place.
func (d *Dialect) Tables(query string) (read, written []string) {
	r := d.Analyze(query)
	return r.Reads, r.Writes
}

// NormTable returns the generation name of a table reference (sqlscan.NormTable).
func (d *Dialect) NormTable(name string) string { return sqlscan.NormTable(d.SQL, name) }

// TableName returns the generation name of a table name given alone
// (sqlscan.TableName), or an error wrapping ErrInvalidTableName.
func (d *Dialect) TableName(name string) (string, error) { return TableNameIn(d.SQL, name) }

// TableNameIn is tableName for the analyser's dialect sd.
func TableNameIn(sd sqlscan.Dialect, name string) (string, error) {
	t, ok := sqlscan.TableName(sd, name)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrInvalidTableName, name)
	}
	return t, nil
}

// Analyze returns everything the analyser knows of a statement
// (sqlscan.Analyze). Its lists are shared: append to them, never change
// them in place.
func (d *Dialect) Analyze(query string) sqlscan.Result { return d.Analysis(query).Result }

// Analysis is a statement's sqlscan.Result, the tables its entries depend
// on without declared ones (what it reads and sqlscan.AllTables), its
// kind (Classify) and what it does to its session (ChangesSession): all a
// cached read asks of its statement, in one lookup.
type Analysis struct {
	sqlscan.Result
	Depends []string
	Kind    sqlscan.Kind
	Session Effect
}

// Analysis returns query's Analysis, remembered for the next time.
func (d *Dialect) Analysis(query string) Analysis {
	key := analysisKey{d.SQL, query}
	if a, ok := analyses.GetIfPresent(key); ok {
		return a
	}
	r := sqlscan.Analyze(key.dialect, query)
	// Clipped, so that an append copies instead of writing into them.
	r.Reads, r.Writes = slices.Clip(r.Reads), slices.Clip(r.Writes)
	a := Analysis{Result: r, Depends: slices.Clip(MergeTables(r.Reads, []string{sqlscan.AllTables})),
		Kind: d.Classify(query), Session: d.changesSession(query)}
	if len(query) <= maxAnalysedLen {
		analyses.Set(key, a)
	}
	return a
}

// analysisKey is what an analysis Depends on: the statement string and
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
var analyses = otter.Must(&otter.Options[analysisKey, Analysis]{
	MaximumWeight: 4 << 20,
	Weigher: func(key analysisKey, a Analysis) uint32 {
		w := 104 + len(key.query)
		for _, t := range a.Reads {
			w += 32 + 2*len(t) // in Reads and in Depends
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

// Classify returns the kind of a statement by its first keyword (sqlscan.Classify).
func (d *Dialect) Classify(query string) sqlscan.Kind { return sqlscan.Classify(d.SQL, query) }

// Touches returns the tables the statement reads or writes, sorted, for
// telling what a statement that runs uncached is about. It may allocate.
func (a Analysis) Touches() []string { return MergeTables(a.Depends, a.Writes) }

// MergeTables returns the sorted union of a sorted, duplicate-free list and
// declared names.
func MergeTables(sorted, declared []string) []string {
	if len(declared) == 0 {
		return sorted
	}
	out := append([]string(nil), sorted...)
	for _, d := range declared {
		i, found := slices.BinarySearch(out, d)
		if !found {
			out = slices.Insert(out, i, d)
		}
	}
	return out
}

// Declared is table names a user declares (Tables), normalised in every
// dialect, because they are read before the database is known; a name one
// dialect cannot read is that dialect's error.
type Declared struct {
	Tables map[sqlscan.Dialect][]string
	Errs   map[sqlscan.Dialect]error
}

// Add normalises names in every dialect.
func (d *Declared) Add(names ...string) {
	if d.Tables == nil {
		d.Tables = make(map[sqlscan.Dialect][]string, len(Dialects))
	}
	for _, sd := range Dialects {
		for _, n := range names {
			t, err := TableNameIn(sd, n)
			if err != nil {
				if d.Errs == nil {
					d.Errs = make(map[sqlscan.Dialect]error)
				}
				d.Errs[sd] = errors.Join(d.Errs[sd], err)
				continue
			}
			d.Tables[sd] = append(d.Tables[sd], t)
		}
	}
}
