package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 10: layer import --parent /missing succeeded and recorded the missing
// parent. It fails with exit 5, names the parent and creates nothing.
func TestImportMissingParent(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	layer := filepath.Join(dir, "layers", "child")
	r := hcs(t, bytes.NewReader(sampleTar(t)), "layer", "import", "--parent", missing, layer)
	wantCode(t, r, exitNotFound)
	if !strings.Contains(r.stderr, missing) {
		t.Errorf("stderr %q does not name the parent %s", r.stderr, missing)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the failed import left %v", ents)
	}
	// The same for a CIM layer.
	r = hcs(t, bytes.NewReader(sampleTar(t)), "cim", "create", "--parent", filepath.Join(dir, "layers", "missing"), layer)
	wantCode(t, r, exitNotFound)
	if !strings.Contains(r.stderr, filepath.Join(dir, "layers", "missing")) {
		t.Errorf("stderr %q does not name the parent", r.stderr)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the failed cim create left %v", ents)
	}
}

// Issue 10: after a failure, ocilayer apply left the entries before the bad one in
// a new target. Into a new ROOTDIR it is all or nothing.
func TestOCIApplyNewRootAllOrNothing(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "a", Mode: 0o644, Size: 1})
	tw.Write([]byte("a"))
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: "l", Linkname: "../escape"})
	tw.Close()
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	r := hcs(t, bytes.NewReader(buf.Bytes()), "ocilayer", "apply", "--no-ownership", root)
	wantCode(t, r, exitInvalidInput)
	if !strings.Contains(r.stderr, `"l"`) || !strings.Contains(r.stderr, "offset 1024") {
		t.Errorf("stderr %q does not name the entry l and its offset 1024", r.stderr)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the failed apply left %v", ents)
	}
}
