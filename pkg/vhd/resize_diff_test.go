package vhd

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestResizeVHDXDifferencing grows a differencing VHDX past its parent's
// size, as ExpandScratchSize does with a copy of a base layer's blank.vhdx:
// the parent is not touched, what the child and the parent held reads back,
// the new space reads as zeros and takes writes, and 7-Zip reads the chain.
// Shrinking a differencing disk is refused.
func TestResizeVHDXDifferencing(t *testing.T) {
	dir := t.TempDir()
	base, child := filepath.Join(dir, "base.vhdx"), filepath.Join(dir, "child.vhdx")
	const size = 8 << 20
	if err := CreateVHDX(base, VHDXCreateOptions{Size: size, BlockSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	writeModel(t, base, model, 10)
	if err := CreateVHDX(child, VHDXCreateOptions{Parent: base, BlockSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	writeModel(t, child, model, 10)
	baseSum := fileSHA(t, base)

	d, err := Open(child, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Resize(size / 2); !errors.Is(err, ErrUnsupported) {
		t.Errorf("shrinking a differencing disk: %v, want ErrUnsupported", err)
	}
	d.Close()
	model = resizeAndCheck(t, child, model, 3*size)
	model = resizeAndCheck(t, child, model, 40<<20) // across a chunk of BAT entries

	if fileSHA(t, base) != baseSum {
		t.Error("growing the child changed its parent")
	}
	d, err = Open(child, true)
	if err != nil {
		t.Fatal(err)
	}
	if d.Type() != Differencing || d.Size() != 40<<20 || d.Parent() == nil || d.Parent().Size() != size {
		t.Errorf("after growing: type %v, size %d, parent %v", d.Type(), d.Size(), d.Parent())
	}
	d.Close()
	if _, err := exec.LookPath("7zz"); err == nil {
		out := run(t, "7zz", "l", "-tVHDX", child)
		if bytes.Contains(out, []byte("ERROR")) || !strings.Contains(string(out), "41943040") {
			t.Errorf("7zz l of the grown child:\n%s", out)
		}
		cmd := exec.Command("7zz", "e", "-tVHDX", "-so", "child.vhdx")
		cmd.Dir = dir
		if got, err := cmd.Output(); err != nil {
			t.Logf("7zz cannot extract a child larger than its parent: %v", err)
		} else if !bytes.Equal(got, model) {
			t.Errorf("7zz extracts %d bytes differing at %d", len(got), firstDiff(got, model))
		}
	}
}
