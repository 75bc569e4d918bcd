package main

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hostcompute/hostcompute/internal/registrytest"
)

// imageLayers is how many layers the root file system is split into.
const imageLayers = 4

// craneVersion is the crane scripts/install-go-peers.sh installs.
const craneVersion = "v0.20.7"

// imageRows compare pulling and unpacking a multi-layer Linux image from a
// registry on loopback: hcs image pull (into the store: blobs verified and kept,
// layers unpacked by chainID) against skopeo copy + umoci unpack, and against crane
// pull + GNU tar extracting the layers in order. Every side ends with sync -f.
func imageRows(env *Env) []*Row {
	fx := &imageFixture{}
	skopeo := &Row{
		Name:      "image pull + unpack vs skopeo copy + umoci unpack",
		ManyFiles: true,
		Setup:     fx.setup,
		Teardown:  fx.teardown,
		Peer: Side{
			Name: "skopeo copy docker:// oci: + umoci unpack + sync -f",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				layout := filepath.Join(dir, "oci")
				bundle := filepath.Join(dir, "bundle")
				return &Run{Cmds: []*exec.Cmd{
					env.command(ctx, "skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://"+fx.ref, "oci:"+layout+":bench"),
					env.command(ctx, "umoci", "unpack", "--image", layout+":bench", bundle),
					env.command(ctx, "sync", "-f", dir),
				}}, nil
			},
		},
		Ours: fx.ours(),
		Verdict: func(res *Result) []string {
			return []string{goalNote(res, 1.5)}
		},
	}
	crane := &Row{
		Name:      "image pull + unpack vs crane pull + GNU tar",
		ManyFiles: true,
		Setup:     fx.setup,
		Teardown:  fx.teardown,
		Peer: Side{
			Name: "crane pull --format oci + tar -xzf of each layer + sync -f",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				layout := filepath.Join(dir, "oci")
				rootfs := filepath.Join(dir, "rootfs")
				if err := os.Mkdir(rootfs, 0o755); err != nil {
					return nil, err
				}
				cmds := []*exec.Cmd{env.command(ctx, fx.crane, "pull", "--insecure", "--format", "oci", fx.ref, layout)}
				for _, d := range fx.layers {
					cmds = append(cmds, env.command(ctx, "tar", "-xpzf", filepath.Join(layout, "blobs", "sha256", d.Hex),
						"--numeric-owner", "-C", rootfs))
				}
				return &Run{Cmds: append(cmds, env.command(ctx, "sync", "-f", dir))}, nil
			},
		},
		Ours: fx.ours(),
		Verdict: func(res *Result) []string {
			return []string{goalNote(res, 1.0), "GNU tar does not apply OCI whiteouts; the image has none"}
		},
	}
	return []*Row{skopeo, crane}
}

func goalNote(res *Result, goal float64) string {
	pm, om := median(walls(res.Peer)), median(walls(res.Ours))
	if om == 0 {
		return fmt.Sprintf("goal ≥ %.1f× the peer: not measured", goal)
	}
	ratio := float64(pm) / float64(om)
	return fmt.Sprintf("goal ≥ %.1f× the peer: %s (%.2f×)", goal, metIf(ratio >= goal), ratio)
}

// imageFixture is the image both rows pull: the Linux root file system split into
// imageLayers gzip layers, pushed to a registry started for the row.
type imageFixture struct {
	reg    *registrytest.Registry
	ref    string
	crane  string
	layers []v1.Hash
	in     *rootfsInput
	bytes  int64
}

func (fx *imageFixture) ours() Side {
	return Side{
		Name: "hcs image pull + sync -f",
		Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
			root := filepath.Join(dir, "store")
			return &Run{Cmds: []*exec.Cmd{
				env.command(ctx, env.HCS, "image", "--root", root, "pull", "--quiet", fx.ref),
				env.command(ctx, "sync", "-f", dir),
			}}, nil
		},
	}
}

func (fx *imageFixture) setup(ctx context.Context, env *Env, dir string) (Setup, error) {
	for _, p := range []struct{ bin, pkg string }{{"skopeo", "skopeo"}, {"umoci", "umoci"}, {registrytest.Binary, "docker-registry"}} {
		if err := env.need(ctx, p.bin, p.pkg); err != nil {
			return Setup{}, err
		}
	}
	if err := env.needGNUTar(ctx); err != nil {
		return Setup{}, err
	}
	fx.crane = filepath.Join(env.Root, "bin", "peers", "crane", craneVersion, "crane")
	if _, err := os.Stat(fx.crane); err != nil {
		cmd := exec.CommandContext(ctx, filepath.Join(env.Root, "scripts", "install-go-peers.sh"))
		if out, err := cmd.CombinedOutput(); err != nil {
			return Setup{}, fmt.Errorf("installing crane: %w\n%s", err, out)
		}
	}
	in, err := env.linuxRootfs(ctx)
	if err != nil {
		return Setup{}, err
	}
	fx.in = in
	regDir := filepath.Join(dir, "registry")
	if err := os.Mkdir(regDir, 0o755); err != nil {
		return Setup{}, err
	}
	if fx.reg, err = registrytest.Start(regDir); err != nil {
		return Setup{}, err
	}
	parts, err := splitRootfs(in.Path, filepath.Join(dir, "layers"))
	if err != nil {
		return Setup{}, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	fx.layers, fx.bytes = nil, 0
	for _, p := range parts {
		l, err := tarball.LayerFromFile(p, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return Setup{}, err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return Setup{}, err
		}
		d, _ := l.Digest()
		size, _ := l.Size()
		fx.layers = append(fx.layers, d)
		fx.bytes += size
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Setup{}, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return Setup{}, err
	}
	fx.ref = fx.reg.Host + "/bench/rootfs:1"
	r, err := name.ParseReference(fx.ref)
	if err != nil {
		return Setup{}, err
	}
	if err := remote.Write(r, img); err != nil {
		return Setup{}, fmt.Errorf("pushing the bench image: %w", err)
	}
	return Setup{Input: fmt.Sprintf("%s split into %d gzip layers (%s compressed), served by docker-registry on %s",
		filepath.Base(in.Path), len(parts), sizeIEC(fx.bytes), fx.reg.Host), Bytes: in.Size,
		Notes: []string{"every run pulls into a new, empty directory; MB/s is of the uncompressed root file system"}}, nil
}

func (fx *imageFixture) teardown(env *Env) error {
	if fx.reg == nil {
		return nil
	}
	err := fx.reg.Stop()
	fx.reg = nil
	return err
}

// splitRootfs writes the entries of the root file system tar into imageLayers
// layer tars: the first holds everything outside usr/ and usr itself, the others
// the subtrees of usr/ dealt out in turn, so that every entry's directory comes
// from its own layer or the first.
func splitRootfs(in, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Open(in)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var paths []string
	var writers []*tar.Writer
	var files []*os.File
	for i := 0; i < imageLayers; i++ {
		p := filepath.Join(dir, fmt.Sprintf("layer%d.tar", i))
		lf, err := os.Create(p)
		if err != nil {
			return nil, err
		}
		defer lf.Close()
		paths, files = append(paths, p), append(files, lf)
		writers = append(writers, tar.NewWriter(lf))
	}
	assigned := map[string]int{}
	next := 1
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")
		i := 0
		if rest, ok := strings.CutPrefix(name, "usr/"); ok && rest != "" {
			top, _, _ := strings.Cut(rest, "/")
			n, ok := assigned[top]
			if !ok {
				n = next
				next = next%(imageLayers-1) + 1
				assigned[top] = n
			}
			i = n
		}
		if h.Typeflag == tar.TypeLink {
			// A hard link's target must be in the same layer.
			ln := strings.TrimPrefix(strings.TrimPrefix(h.Linkname, "./"), "/")
			if rest, ok := strings.CutPrefix(ln, "usr/"); ok {
				top, _, _ := strings.Cut(rest, "/")
				if n, ok := assigned[top]; ok && n != i {
					i = n
				}
			} else {
				i = 0
			}
		}
		if err := writers[i].WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.Copy(writers[i], tr); err != nil {
			return nil, err
		}
	}
	for i, w := range writers {
		if err := w.Close(); err != nil {
			return nil, err
		}
		if err := files[i].Close(); err != nil {
			return nil, err
		}
	}
	return paths, nil
}
