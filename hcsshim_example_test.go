package hostcompute_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// hcsshimVersion is the release of github.com/Microsoft/hcsshim whose API the
// example is checked against (the one the peers of scripts/install-go-peers.sh
// are built from).
const hcsshimVersion = "v0.13.0"

// TestExampleCompilesAgainstHcsshim checks the claim of example_test.go: the
// same file, with only the import path changed to github.com/Microsoft/hcsshim,
// is vetted and compiled for Windows in a module of its own that requires
// hcsshim. It skips when the go command or the module proxy is out of reach.
func TestExampleCompilesAgainstHcsshim(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads and builds hcsshim: skipped in -short mode")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	const ours = `hcsshim "github.com/hostcompute/hostcompute"`
	if !bytes.Contains(src, []byte(ours)) {
		t.Fatalf("example_test.go does not import %s", ours)
	}
	src = bytes.Replace(src, []byte(ours), []byte(`hcsshim "github.com/Microsoft/hcsshim"`), 1)
	if bytes.Contains(src, []byte("hostcompute/hostcompute")) {
		t.Fatal("example_test.go uses this module beyond the one import the check replaces")
	}

	dir := t.TempDir()
	files := map[string]string{
		"go.mod":          "module example.test/hcsshimexample\n\ngo 1.22\n\nrequire github.com/Microsoft/hcsshim " + hcsshimVersion + "\n",
		"doc.go":          "// Package hostcompute is named as the package whose external test example_test.go is.\npackage hostcompute\n",
		"example_test.go": string(src),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	goRun := func(args ...string) (string, error) {
		cmd := exec.Command(goCmd, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// The module and its requirements (go.sum): the only step that needs the
	// proxy, unless the module cache has them.
	if out, err := goRun("mod", "tidy"); err != nil {
		if networkFailure(out) {
			t.Skipf("the module proxy is out of reach, so hcsshim %s cannot be fetched: %s", hcsshimVersion, firstLine(out))
		}
		t.Fatalf("go mod tidy: %v\n%s", err, out)
	}
	if out, err := goRun("vet", "./..."); err != nil {
		t.Fatalf("GOOS=windows go vet of example_test.go against hcsshim %s: %v\n%s", hcsshimVersion, err, out)
	}
	if out, err := goRun("test", "-c", "-o", os.DevNull, "."); err != nil {
		t.Fatalf("GOOS=windows go test -c of example_test.go against hcsshim %s: %v\n%s", hcsshimVersion, err, out)
	}
}

func networkFailure(out string) bool {
	for _, s := range []string{"dial tcp", "no such host", "connection refused", "i/o timeout", "TLS handshake", "proxyconnect", "network is unreachable", "GOPROXY=off", "Get \"https://"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
