package depcheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// seedPackages are the packages README's "The seed API on Linux" tables
// describe.
var seedPackages = []string{".", "wclayer", "wclayer/cim", "computestorage", "layers"}

// TestREADMEListsTheAPI: every exported function of the seed-compatible
// packages has a row (or a mention) in README.md's seed API section, so the
// status table cannot silently leave one out.
func TestREADMEListsTheAPI(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Skip("no README.md:", err)
	}
	readme := string(b)
	start := strings.Index(readme, "## The seed API on Linux")
	end := strings.Index(readme, "## Limits")
	if start < 0 || end < start {
		t.Fatal(`README.md has no "## The seed API on Linux" section before "## Limits"`)
	}
	section := readme[start:end]
	for _, pkg := range seedPackages {
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, filepath.Join(root, pkg), func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var missing []string
		for _, p := range pkgs {
			for _, f := range p.Files {
				for _, d := range f.Decls {
					fd, ok := d.(*ast.FuncDecl)
					if !ok || fd.Recv != nil || !fd.Name.IsExported() {
						continue
					}
					if !strings.Contains(section, fd.Name.Name) {
						missing = append(missing, fd.Name.Name)
					}
				}
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("README.md's seed API section does not mention these functions of %s: %s", pkg, strings.Join(missing, ", "))
		}
	}
}
