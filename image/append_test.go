package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

func TestAppendWindows(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	base := reg.Host + "/build/base:1"
	pushImage(t, base, buildImage(t, winPlatform, windowsLayers(t)[:1], types.DockerManifestSchema2))

	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "app"), 0o755)
	os.WriteFile(filepath.Join(dir, "app", "hello.txt"), []byte("hello from Linux\n"), 0o644)
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, p := range []string{"app/hello.txt", "app"} {
		os.Chtimes(filepath.Join(dir, p), mtime, mtime)
	}

	build := func() (*Store, *Summary) {
		s, _ := newStore(t)
		if _, err := s.Pull(ctx, base, WithPlatform(winPlatform)); err != nil {
			t.Fatal(err)
		}
		sum, err := s.Append(ctx, AppendSpec{Base: base, Layer: dir, Name: "built:1"})
		if err != nil {
			t.Fatal(err)
		}
		return s, sum
	}
	s, sum := build()
	_, again := build()
	if sum.Digest != again.Digest {
		t.Errorf("the same inputs gave manifests %s and %s", sum.Digest, again.Digest)
	}
	if len(sum.Layers) != 2 || !sum.Layers[1].Unpacked {
		t.Fatalf("built image %+v", sum)
	}
	if p := sum.Platform; p == nil || p.OS != "windows" || p.OSVersion != winPlatform.OSVersion {
		t.Errorf("platform %+v, want the base's", p)
	}

	// The new layer: Files/app/hello.txt with the attributes and an inherited
	// security descriptor Windows gives a new file.
	var buf bytes.Buffer
	if err := s.ExportLayer(ctx, "built:1", 1, &buf); err != nil {
		t.Fatal(err)
	}
	var found *winlayer.Entry
	if err := ociwclayer.ScanTar(ctx, bytes.NewReader(buf.Bytes()), func(e *winlayer.Entry) error {
		if e.Name == "Files/app/hello.txt" {
			c := *e
			found = &c
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if found == nil {
		t.Fatalf("no Files/app/hello.txt in the new layer")
	}
	if found.Info.FileAttributes&winfile.AttrArchive == 0 {
		t.Errorf("attributes %#x, want ARCHIVE", found.Info.FileAttributes)
	}
	t.Logf("new file: attributes %#x, security descriptor %d bytes", found.Info.FileAttributes, len(found.SecurityDescriptor))

	// Push, and an independent pull gives the same digest.
	dst := reg.Host + "/build/built:1"
	if _, err := s.Push(ctx, "built:1", dst); err != nil {
		t.Fatal(err)
	}
	s2, _ := newStore(t)
	got, err := s2.Pull(ctx, dst, WithPlatform(winPlatform))
	if err != nil || got.Digest != sum.Digest {
		t.Fatalf("pulled the built image back as %v (%v), want %s", got, err, sum.Digest)
	}

	// A Windows layer tar is taken as it is.
	tarPath := filepath.Join(t.TempDir(), "layer.tar")
	os.WriteFile(tarPath, windowsLayers(t)[1], 0o644)
	sum3, err := s.Append(ctx, AppendSpec{Base: base, Layer: tarPath, Name: "built:2"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := s.ExportLayer(ctx, "built:2", 1, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), windowsLayers(t)[1]) {
		t.Errorf("a Windows layer tar was changed by append (%s)", sum3.Layers[1].Digest)
	}
}

// TestCommitWindows: a container's writable layer over a Windows image becomes the
// new layer of an image.
func TestCommitWindows(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	base := reg.Host + "/build/commit-base:1"
	pushImage(t, base, buildImage(t, winPlatform, windowsLayers(t)[:1], types.OCIManifestSchema1))
	s, ls := newStore(t)
	sum, err := s.Pull(ctx, base, WithPlatform(winPlatform))
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := ls.Prepare(ctx, "container-1", sum.Layers[0].ChainID)
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	mountAll(t, mounts, target)
	os.MkdirAll(filepath.Join(target, "app"), 0o755)
	os.WriteFile(filepath.Join(target, "app", "new.txt"), []byte("written in a container\n"), 0o644)
	if err := os.Remove(filepath.Join(target, "Windows/System32/d0000/f00001.dll")); err != nil {
		t.Fatal(err)
	}
	unmount(t, target)

	got, err := s.Commit(ctx, base, "container-1", "committed:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Layers) != 2 || !got.Layers[1].Unpacked {
		t.Fatalf("committed image %+v", got)
	}
	var buf bytes.Buffer
	if err := s.ExportLayer(ctx, "committed:1", 1, &buf); err != nil {
		t.Fatal(err)
	}
	var added, removed bool
	ociwclayer.ScanTar(ctx, bytes.NewReader(buf.Bytes()), func(e *winlayer.Entry) error {
		switch {
		case e.Name == "Files/app/new.txt":
			added = true
		case e.Removed && e.Name == "Files/Windows/System32/d0000/f00001.dll":
			removed = true
		}
		return nil
	})
	if !added || !removed {
		t.Errorf("committed layer: new file %v, removal %v; want both", added, removed)
	}
	if err := ls.Remove(ctx, "container-1"); err != nil {
		t.Fatal(err)
	}
}

// TestAppendScratch builds a whole Windows image from layer tars, without a base.
func TestAppendScratch(t *testing.T) {
	ctx := context.Background()
	layers := windowsLayers(t)
	dir := t.TempDir()
	var paths []string
	for i, l := range layers {
		p := filepath.Join(dir, "layer"+string(rune('0'+i))+".tar")
		os.WriteFile(p, l, 0o644)
		paths = append(paths, p)
	}
	build := func() (*Store, *Summary) {
		s, _ := newStore(t)
		if _, err := s.Append(ctx, AppendSpec{Base: Scratch, Platform: winPlatform, Layer: paths[0], Name: "win/base:1"}); err != nil {
			t.Fatal(err)
		}
		sum, err := s.Append(ctx, AppendSpec{Base: "win/base:1", Layer: paths[1], Name: "win/app:1"})
		if err != nil {
			t.Fatal(err)
		}
		return s, sum
	}
	s, sum := build()
	if _, again := build(); again.Digest != sum.Digest {
		t.Errorf("two builds: %s and %s", sum.Digest, again.Digest)
	}
	for i := range layers {
		var buf bytes.Buffer
		if err := s.ExportLayer(ctx, "win/app:1", i, &buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), layers[i]) {
			t.Errorf("layer %d differs from its tar", i)
		}
	}
	if _, err := s.Append(ctx, AppendSpec{Base: Scratch, Platform: v1.Platform{OS: "plan9", Architecture: "amd64"}, Layer: paths[0], Name: "x"}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("a plan9 image built on scratch: %v", err)
	}
}

// TestAppendLinux builds a Linux image on scratch, one layer at a time: each
// layer's diffID is its tar's digest (taken as it is), the digest is stable, the layers are unpacked with
// OCI semantics, and a directory as a Linux layer is refused.
func TestAppendLinux(t *testing.T) {
	ctx := context.Background()
	layers := linuxLayers(t)
	dir := t.TempDir()
	var paths []string
	for i, l := range layers {
		p := filepath.Join(dir, "layer"+string(rune('0'+i))+".tar")
		os.WriteFile(p, l, 0o644)
		paths = append(paths, p)
	}
	build := func() (*Store, *layerStore, *Summary) {
		s, ls := newStore(t)
		var sum *Summary
		base := Scratch
		for i, p := range paths {
			name := "lin/app:" + string(rune('0'+i))
			var err error
			if sum, err = s.Append(ctx, AppendSpec{Base: base, Platform: linuxPlatform, Layer: p, Name: name}); err != nil {
				t.Fatal(err)
			}
			base = name
		}
		return s, ls, sum
	}
	s, ls, sum := build()
	if _, _, again := build(); again.Digest != sum.Digest {
		t.Errorf("two builds: %s and %s", sum.Digest, again.Digest)
	}
	if sum.Platform == nil || sum.Platform.OS != "linux" || len(sum.Layers) != len(layers) {
		t.Fatalf("image: %+v", sum)
	}
	for i, l := range layers {
		if want := fmt.Sprintf("sha256:%x", sha256.Sum256(l)); sum.Layers[i].DiffID != want || !sum.Layers[i].Unpacked {
			t.Errorf("layer %d: diffID %s (unpacked %v), its tar's %s", i, sum.Layers[i].DiffID, sum.Layers[i].Unpacked, want)
		}
	}
	root := ls.viewRootfs(t, sum.Layers[len(sum.Layers)-1].ChainID)
	if b, err := os.ReadFile(filepath.Join(root, "etc/os-release")); err != nil || string(b) != "ID=test2\n" {
		t.Errorf("etc/os-release: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/link")); !os.IsNotExist(err) {
		t.Errorf("whited-out etc/link: %v", err)
	}
	// Its layer directories, top-most first: each holds its own layer's files.
	dirs, err := s.LayerDirs(ctx, sum.Name)
	if err != nil || len(dirs) != len(layers) {
		t.Fatalf("LayerDirs: %v, %v", dirs, err)
	}
	for i, f := range []string{"var/cache/b", "etc/new", "bin/sh"} {
		if _, err := os.Stat(filepath.Join(dirs[i], f)); err != nil {
			t.Errorf("layer directory %d (%s): %v", i, dirs[i], err)
		}
	}
	if _, err := s.Append(ctx, AppendSpec{Base: sum.Name, Layer: dir, Name: "lin/dir:1"}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("a directory as a Linux layer: %v", err)
	}
}
