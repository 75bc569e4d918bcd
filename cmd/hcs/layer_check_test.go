package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	layer, _, _ := reference(t, sampleTar(t))
	r := hcs(t, nil, "layer", "check", layer)
	wantCode(t, r, exitOK)

	// Damage it: alternate stream contents vanish.
	os.RemoveAll(filepath.Join(layer, "hcsmeta", "streams"))
	r = hcs(t, nil, "layer", "check", layer)
	wantCode(t, r, exitInvalidInput)
	if !strings.Contains(r.stdout, "content file missing") {
		t.Errorf("check output does not name the problem:\n%s", r.stdout)
	}
	wantCode(t, hcs(t, nil, "layer", "check", t.TempDir()), exitNotFound)
}
