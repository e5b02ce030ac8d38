// Package corpus gives the oracle modules of internal/sqlscan the
// statements they check: every string literal of the analyser's own tests.
package corpus

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
)

// TestStrings returns every non-blank string literal of the _test.go files
// in dir, in file order.
func TestStrings(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		return nil, err
	}
	var out []string
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			return nil, err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && strings.TrimSpace(s) != "" {
					out = append(out, s)
				}
			}
			return true
		})
	}
	return out, nil
}
