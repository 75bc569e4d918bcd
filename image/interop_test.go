package image

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The crane version scripts/install-go-peers.sh installs.
const craneVersion = "v0.20.7"

// tool finds an independent client: crane in the repository's peer cache, the
// others on PATH; the test skips when one is missing.
func tool(t *testing.T, name string) string {
	t.Helper()
	if name == "crane" {
		_, file, _, _ := runtime.Caller(0)
		p := filepath.Join(filepath.Dir(file), "..", "bin", "peers", "crane", craneVersion, "crane")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		t.Skipf("crane %s not installed (scripts/install-go-peers.sh installs it)", craneVersion)
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (scripts/install-deps.sh installs it)", name)
	}
	return p
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// checkRootfs checks a root file system unpacked from linuxLayers.
func checkRootfs(t *testing.T, rootfs string) {
	t.Helper()
	for name, want := range map[string]string{
		"etc/os-release": "ID=test2\n",
		"var/cache/b":    "bbb",
		"bin/sh":         "#!/bin/true\n",
		"etc/new":        strings.Repeat("n", 100000),
	} {
		if b, err := os.ReadFile(filepath.Join(rootfs, name)); err != nil || string(b) != want {
			t.Errorf("%s: %d bytes (%v), want %d", name, len(b), err, len(want))
		}
	}
	for _, gone := range []string{"etc/link", "var/cache/a"} {
		if _, err := os.Lstat(filepath.Join(rootfs, gone)); err == nil {
			t.Errorf("%s is there; a later layer removed it", gone)
		}
	}
}

// TestInteropClientsReadOurPush: what we push, crane, skopeo and umoci read with
// the same digests and content.
func TestInteropClientsReadOurPush(t *testing.T) {
	crane, skopeo, umoci := tool(t, "crane"), tool(t, "skopeo"), tool(t, "umoci")
	ctx := context.Background()
	reg := startRegistry(t)
	for _, c := range []struct {
		name     string
		platform v1.Platform
		layers   [][]byte
		mt       types.MediaType
	}{
		{"linux", linuxPlatform, linuxLayers(t), types.OCIManifestSchema1},
		{"windows", winPlatform, windowsLayers(t), types.DockerManifestSchema2},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := reg.Host + "/interop/src-" + c.name + ":1"
			pushImage(t, src, buildImage(t, c.platform, c.layers, c.mt))
			s, _ := newStore(t)
			sum, err := s.Pull(ctx, src, WithPlatform(c.platform))
			if err != nil {
				t.Fatal(err)
			}
			dst := reg.Host + "/interop/ours-" + c.name + ":1"
			if _, err := s.Push(ctx, src, dst); err != nil {
				t.Fatal(err)
			}
			h, _ := v1.NewHash(sum.Digest)
			manifest, _ := s.content.readBlob(h)

			if got := strings.TrimSpace(string(run(t, crane, "digest", "--insecure", dst))); got != sum.Digest {
				t.Errorf("crane digest %s, want %s", got, sum.Digest)
			}
			if got := run(t, crane, "manifest", "--insecure", dst); !bytes.Equal(got, manifest) {
				t.Errorf("crane manifest differs from the stored manifest")
			}
			if got := run(t, skopeo, "inspect", "--raw", "--tls-verify=false", "docker://"+dst); !bytes.Equal(got, manifest) {
				t.Errorf("skopeo inspect --raw differs from the stored manifest")
			}
			// skopeo copies into a layout; every blob must equal ours.
			dir := filepath.Join(t.TempDir(), "oci")
			run(t, skopeo, "copy", "--src-tls-verify=false", "docker://"+dst, "oci:"+dir+":t")
			for _, l := range sum.Layers {
				lh, _ := v1.NewHash(l.Digest)
				theirs, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", lh.Hex))
				ours, _ := s.content.readBlob(lh)
				if err != nil || !bytes.Equal(theirs, ours) {
					t.Errorf("layer %s as skopeo copied it differs (%v)", l.Digest, err)
				}
			}
			if c.name == "linux" {
				bundle := filepath.Join(t.TempDir(), "bundle")
				run(t, umoci, "unpack", "--image", dir+":t", bundle)
				checkRootfs(t, filepath.Join(bundle, "rootfs"))
			}
		})
	}
}

// TestInteropSkopeoLayoutAndOurSave: what skopeo copy writes into an OCI layout we
// pull; what we save as an OCI layout skopeo and umoci read.
func TestInteropSkopeoLayoutAndOurSave(t *testing.T) {
	skopeo, umoci := tool(t, "skopeo"), tool(t, "umoci")
	ctx := context.Background()
	reg := startRegistry(t)
	src := reg.Host + "/interop/layout:1"
	want := pushImage(t, src, buildImage(t, linuxPlatform, linuxLayers(t), types.OCIManifestSchema1))

	dir := filepath.Join(t.TempDir(), "skopeo")
	run(t, skopeo, "copy", "--src-tls-verify=false", "docker://"+src, "oci:"+dir+":v1")
	s, _ := newStore(t)
	sum, err := s.Pull(ctx, "oci:"+dir+":v1")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Digest != want.String() || sum.Name != "v1" {
		t.Fatalf("pulled %s as %q from skopeo's layout, want %s as v1", sum.Digest, sum.Name, want)
	}

	out := filepath.Join(t.TempDir(), "ours")
	if _, err := s.Save(ctx, "v1", "oci:"+out+":saved"); err != nil {
		t.Fatal(err)
	}
	manifest, _ := s.content.readBlob(want)
	if got := run(t, skopeo, "inspect", "--raw", "oci:"+out+":saved"); !bytes.Equal(got, manifest) {
		t.Errorf("skopeo reads another manifest from our layout")
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	run(t, umoci, "unpack", "--image", out+":saved", bundle)
	checkRootfs(t, filepath.Join(bundle, "rootfs"))
}
