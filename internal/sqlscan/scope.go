package sqlscan

// This file keeps the names of the CTEs in scope, which hide tables of the
// same unqualified name: a reference to one reads no table.

// cteDef is a CTE name defined by a WITH clause at frame depth depth. It
// hides tables of the same (unqualified) name while active.
type cteDef struct {
	name   string
	depth  int
	active bool
}

// cteMapThreshold is the number of active CTEs above which lookups use a map.
const cteMapThreshold = 16

func (w *walker) isCTE(name string) bool {
	if w.cteActive == 0 {
		return false
	}
	if w.cteMap != nil {
		return w.cteMap[name] > 0
	}
	for i := range w.ctes {
		if w.ctes[i].active && w.ctes[i].name == name {
			return true
		}
	}
	return false
}

func (w *walker) activateCTE(idx int) {
	c := &w.ctes[idx]
	if c.active || c.name == "" {
		return
	}
	c.active = true
	w.cteActive++
	switch {
	case w.cteMap != nil:
		w.cteMap[c.name]++
	case w.cteActive > cteMapThreshold:
		w.cteMap = make(map[string]int, 2*w.cteActive)
		for i := range w.ctes {
			if w.ctes[i].active {
				w.cteMap[w.ctes[i].name]++
			}
		}
	}
}

// dropCTEs ends the scope of the CTEs defined at depth >= depth.
func (w *walker) dropCTEs(depth int) {
	for len(w.ctes) > 0 {
		c := &w.ctes[len(w.ctes)-1]
		if c.depth < depth {
			return
		}
		if c.active {
			w.cteActive--
			if w.cteMap != nil {
				if w.cteMap[c.name]--; w.cteMap[c.name] <= 0 {
					delete(w.cteMap, c.name)
				}
			}
		}
		*c = cteDef{}
		w.ctes = w.ctes[:len(w.ctes)-1]
	}
}

// cteDef recognises "name [(cols)] AS [NOT] [MATERIALIZED] (" at j and
// records the CTE; it returns the index of the body's "(".
func (w *walker) cteDef(j int, recursive bool) (int, bool) {
	if !w.isNameTok(j) {
		return j, false
	}
	k := j + 1
	if w.isKind(k, tkLParen) {
		var ok bool
		if k, ok = w.skipNameList(k); !ok {
			return j, false
		}
	}
	if !w.isKw(k, kwAs) {
		return j, false
	}
	k++
	if w.isKw(k, kwNot) {
		k++
	}
	if w.isKw(k, kwMaterialized) {
		k++
	}
	if !w.isKind(k, tkLParen) {
		return j, false
	}
	w.ctes = append(w.ctes, cteDef{name: identValue(w.d, w.s, w.toks, j), depth: len(w.fs) - 1})
	idx := len(w.ctes) - 1
	if recursive {
		w.activateCTE(idx)
	}
	w.pendCTE, w.pendCTEIdx = k, idx
	return k, true
}
