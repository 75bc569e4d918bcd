package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRm(t *testing.T) {
	layer, _, _ := reference(t, sampleTar(t))
	dir := filepath.Dir(layer)
	wantCode(t, hcs(t, nil, "layer", "rm", layer), exitOK)
	wantDirNames(t, dir)

	// A folder that is not a layer needs --force; a missing path too.
	plain := filepath.Join(dir, "plain")
	os.Mkdir(plain, 0o755)
	writeFile(t, plain, "data", []byte("x"))
	file := writeFile(t, dir, "file", []byte("x"))
	missing := filepath.Join(dir, "missing")
	for _, p := range []string{plain, file, missing} {
		wantCode(t, hcs(t, nil, "layer", "rm", p), exitNotFound)
	}
	wantDirNames(t, dir, "file", "plain")
	wantCode(t, hcs(t, nil, "layer", "rm", "--force", plain, file, missing), exitOK)
	wantDirNames(t, dir)
}

func TestRmContinues(t *testing.T) {
	a, _, _ := reference(t, sampleTar(t))
	b, _, _ := reference(t, sampleTar(t))
	missing := filepath.Join(t.TempDir(), "missing")
	r := hcs(t, nil, "layer", "rm", a, missing, b)
	wantCode(t, r, exitNotFound)
	for _, p := range []string{a, b} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after rm: %v", p, err)
		}
	}
}
