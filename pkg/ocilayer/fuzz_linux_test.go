package ocilayer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"testing"
)

// FuzzApply applies arbitrary bytes as a layer. The property is confinement:
// whatever the input, nothing next to root changes, and every failure tied to
// an entry is an *EntryError. Each execution builds a sandbox, so executions are
// slow and minimising an interesting input can take the whole default
// -fuzzminimizetime (60s) with the exec counter standing still; pass
// -fuzzminimizetime=3s for a livelier run.
func FuzzApply(f *testing.F) {
	seeds := [][]ent{
		{dir("a/"), file("a/b", "data"), hardlink("a/c", "a/b"), symlink("a/d", "/")},
		{symlink("a", "/"), file("a/x", "x"), file("a/.wh.x", "")},
		{symlink("a", "../outside"), file("a/secret", "x"), file("a/.wh..wh..opq", "")},
		{symlink("s", "../../outside"), hardlink("l", "s/secret"), file("../outside/secret", "x")},
		{dir("d/"), file("d/f", "f"), file("d/.wh..wh..opq", ""), file(".wh.d", ""), dir("d/")},
		{{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p", Mode: 0o644}}, hardlink("q", "p"), file("p", "now a file")},
	}
	for _, s := range seeds {
		f.Add(layer(f, s...))
	}
	f.Add(baseLayer(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := newSandbox(t)
		_, err := Apply(context.Background(), s.root, bytes.NewReader(b), WithSkipDevices())
		var ee *EntryError
		if err != nil && !errors.As(err, &ee) {
			t.Errorf("Apply: %T %v; want *EntryError", err, err)
		}
		s.check(t)
	})
}
