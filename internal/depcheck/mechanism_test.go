package depcheck

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mechanisms are the host mechanism packages: only the engine (and the
// mechanisms themselves) may import them.
var mechanisms = []string{
	"internal/mount", "internal/loop", "internal/attach", "internal/fusefs", "internal/mountinfo",
	"internal/diskfs", "internal/cimview", "internal/wcowunion", "internal/state", "internal/layermount",
}

// seeds are the seed-compatible APIs and the CLI: thin, over the engine.
var seeds = []string{"", "wclayer", "wclayer/cim", "computestorage", "layers", "cmd/hcs"}

// TestSeedsUseTheEngine fails if a seed API or the CLI imports a mechanism
// package (in non-test code): they forward to the engine (package host, the
// store) instead.
func TestSeedsUseTheEngine(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found:", err)
	}
	for _, pkg := range seeds {
		path := strings.TrimSuffix(module+"/"+pkg, "/")
		out, err := exec.Command("go", "list", "-json=ImportPath,Imports", path).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", path, err)
		}
		var p struct{ Imports []string }
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatal(err)
		}
		for _, imp := range p.Imports {
			for _, m := range mechanisms {
				if imp == module+"/"+m {
					t.Errorf("%s imports the mechanism %s: go through package host", path, m)
				}
			}
		}
	}
}

// mountCalls are the system calls that mount, unmount or configure loop
// devices, as golang.org/x/sys/unix and syscall name them.
var mountCalls = map[string]bool{
	"Mount": true, "Unmount": true, "Fsopen": true, "Fsmount": true, "FsconfigSetString": true,
	"FsconfigSetFlag": true, "FsconfigSetFd": true, "FsconfigCreate": true, "MoveMount": true,
	"OpenTree": true, "MountSetattr": true, "Fspick": true,
	"IoctlLoopGetStatus64": true, "IoctlLoopSetStatus64": true, "IoctlLoopConfigure": true,
}

// executor are the packages allowed to make those calls: the one executor
// and its loop-device driver.
var executor = map[string]bool{"internal/mount": true, "internal/loop": true}

// TestOneExecutor fails if non-test code outside the executor calls mount(2),
// umount(2), the new mount API or loop ioctls (any unix.LOOP_* request), and
// if anything but the executor and the attachment mechanism imports the
// loop driver.
func TestOneExecutor(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		pkg := filepath.ToSlash(rel)
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			if strings.Trim(imp.Path.Value, `"`) == module+"/internal/loop" && !executor[pkg] && pkg != "internal/attach" {
				t.Errorf("%s imports internal/loop: loop devices are the executor's (internal/mount)", p)
			}
		}
		// Benchmarks run bare mount(2) as the peer the executor is measured
		// against (bench/README.md).
		if executor[pkg] || pkg == "bench" || strings.HasPrefix(pkg, "bench/") {
			return nil
		}
		f, err = parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		names := map[string]bool{} // local names of unix and syscall
		for _, imp := range f.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			if path != "golang.org/x/sys/unix" && path != "syscall" {
				continue
			}
			n := filepath.Base(path)
			if imp.Name != nil {
				n = imp.Name.Name
			}
			names[n] = true
		}
		if len(names) == 0 {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			x, ok := sel.X.(*ast.Ident)
			if !ok || !names[x.Name] {
				return true
			}
			if mountCalls[sel.Sel.Name] || strings.HasPrefix(sel.Sel.Name, "LOOP_") {
				t.Errorf("%s: %s.%s outside the executor: build a mount plan and apply it (internal/mount, package host)", fset.Position(sel.Pos()), x.Name, sel.Sel.Name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// TestOneStateRoot fails if a source file (tests included) still names one
// of the environment variables that steered the host state before it had
// one root: $HOSTCOMPUTE_STATE_DIR replaces them all.
func TestOneStateRoot(t *testing.T) {
	var old []string
	for _, v := range []string{"ATTACH_STATE_DIR", "FUSE_STATE_DIR", "LAYER_STATE_DIR", "MOUNT_DIR", "CIM_MOUNT_DIR"} {
		old = append(old, "HOSTCOMPUTE_"+v)
	}
	root := moduleRoot(t)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && (strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, ".md") && !strings.HasSuffix(p, ".sh") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, v := range old {
			if strings.Contains(string(b), v) {
				t.Errorf("%s names $%s: use $HOSTCOMPUTE_STATE_DIR (internal/state), the one state root", p, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
