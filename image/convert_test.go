package image

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hostcompute/hostcompute/pkg/ext4"
	cimlayer "github.com/hostcompute/hostcompute/pkg/ociwclayer/cim"
)

func TestConvertCIM(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	layers := windowsLayers(t)
	ref := reg.Host + "/conv/win:1"
	pushImage(t, ref, buildImage(t, winPlatform, layers, types.OCIManifestSchema1))
	s, _ := newStore(t)
	if _, err := s.Pull(ctx, ref, WithPlatform(winPlatform)); err != nil {
		t.Fatal(err)
	}
	dir1, dir2 := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	r1, err := s.Convert(ctx, ref, ToCIM, dir1, false)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Convert(ctx, ref, ToCIM, dir2, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range r1.Layers {
		if l.SHA256 != r2.Layers[i].SHA256 || l.SHA256 == "" {
			t.Errorf("layer %d: CIMs differ between two conversions: %s, %s", i, l.SHA256, r2.Layers[i].SHA256)
		}
		var buf bytes.Buffer
		if err := cimlayer.ExportCimLayerToTar(ctx, &buf, l.Layer, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), layers[i]) {
			t.Errorf("layer %d: the CIM exports another tar than the image's layer", i)
		}
	}
	if _, err := s.Convert(ctx, ref, ToExt4, dir1, false); err == nil {
		t.Error("a Windows image converted to ext4")
	}
}

func TestConvertExt4Verity(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	ref := reg.Host + "/conv/lin:1"
	pushImage(t, ref, buildImage(t, linuxPlatform, linuxLayers(t), types.OCIManifestSchema1))
	s, _ := newStore(t)
	if _, err := s.Pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	dir1, dir2 := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	r1, err := s.Convert(ctx, ref, ToExt4, dir1, true)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Convert(ctx, ref, ToExt4, dir2, true)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range r1.Layers {
		if l.SHA256 != r2.Layers[i].SHA256 || l.RootHash == "" || l.RootHash != r2.Layers[i].RootHash {
			t.Errorf("layer %d: not deterministic or no root hash: %+v %+v", i, l, r2.Layers[i])
		}
		f, err := os.Open(l.File)
		if err != nil {
			t.Fatal(err)
		}
		fsSize, err := ext4.FileSystemSize(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if p, err := exec.LookPath("e2fsck"); err == nil {
			if out, err := exec.Command(p, "-fn", l.File).CombinedOutput(); err != nil {
				t.Errorf("e2fsck %s: %v\n%s", l.File, err, out)
			}
		}
		if p, err := exec.LookPath("veritysetup"); err == nil {
			out, err := exec.Command(p, "verify", l.File, l.File, l.RootHash, "--hash-offset="+strconv.FormatInt(fsSize, 10)).CombinedOutput()
			if err != nil {
				t.Errorf("veritysetup verify layer %d: %v\n%s", i, err, out)
			}
		}
	}
}
