package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hostcompute/hostcompute/internal/sampletar"
)

// Goals of the CIM rows (issue: CimFS on Linux).
const (
	cimBuildSpeedGoal = 1.0 // build throughput / mkfs.erofs's, at least
	cimSizeGoal       = 1.1 // image size / mkfs.erofs's, at most
	cimColdReadGoal   = 1.0 // cold read speed / squashfuse's, at least
	cimHotReadGoal    = 0.5 // hot read speed / kernel erofs's, at least (within 2x)
)

// cimInput is a tree the CIM rows build images from: made once per invocation
// as a fixture, then shared by the input's rows.
type cimInput struct {
	label string
	// extract writes the Linux tree into dir and describes its source.
	extract func(ctx context.Context, env *Env, dir string) (string, error)

	tree   *cimTree
	images *cimImages
}

// cimTree is an extracted Linux tree and the same content as an OCI Windows
// layer tar (under Files/), which is what hcs cim create reads.
type cimTree struct {
	dir     string // the tree
	winTar  string // the Windows layer tar of the tree
	source  string
	files   int
	dirs    int
	links   int // symlinks
	hard    int // extra names of hard-linked files
	data    int64
	dropped int      // entries a Windows layer cannot hold, removed from the tree
	paths   []string // regular files, for warming the page cache
}

func (t *cimTree) String() string {
	s := fmt.Sprintf("%s: %d files, %d directories, %d symlinks, %d hard links, %s of data; the same content as a Windows layer tar for hcs", t.source, t.files, t.dirs, t.links, t.hard, sizeIEC(t.data))
	if t.dropped > 0 {
		s += fmt.Sprintf(" (%d entries Windows cannot name removed from both)", t.dropped)
	}
	return s
}

// cimImages are the images of one tree, built untimed for the read rows.
type cimImages struct {
	erofs, squashfs, cim string
}

// cimTreeRows run on Linux trees turned into Windows layers (a Debian root file
// system and a large generated tree): building a CIM of the root file system
// beside mkfs.erofs and mksquashfs (cim.go's rows do the same for a generated
// Windows layer), and for both trees reading every file through the CIM's FUSE
// mount beside squashfuse (cold cache) and a kernel erofs mount (hot cache).
// Every side works on the same content: entries a Windows layer cannot hold
// are removed from the tree first.
func cimTreeRows(env *Env) []*Row {
	rootfs := env.rootfsWindows()
	large := sampletar.Options{Seed: env.Seed, Files: 4000, Bytes: 5 << 28, LargeFiles: 8}
	if env.Quick {
		large.Files, large.Bytes = 400, 128<<20
	}
	big := &cimInput{label: fmt.Sprintf("%s tree", sizeIEC(large.Bytes)), extract: func(ctx context.Context, env *Env, dir string) (string, error) {
		in, err := env.sampleTar(ctx, large)
		if err != nil {
			return "", err
		}
		if err := untar(ctx, in.Path, dir); err != nil {
			return "", err
		}
		return fmt.Sprintf("the files of %s extracted", filepath.Base(in.Path)), nil
	}}
	return []*Row{
		cimTreeBuildRow(rootfs, false), cimTreeBuildRow(rootfs, true),
		cimReadRow(rootfs, false), cimReadRow(rootfs, true),
		cimReadRow(big, false), cimReadRow(big, true),
	}
}

// rootfsWindows returns the Linux root file system input as a tree and a Windows
// layer tar, one value shared by the CIM rows and the layer import row so that the
// fixture is made once per invocation.
func (env *Env) rootfsWindows() *cimInput {
	if env.rootfsWin != nil {
		return env.rootfsWin
	}
	rootfs := &cimInput{label: "Debian rootfs", extract: func(ctx context.Context, env *Env, dir string) (string, error) {
		in, err := env.linuxRootfs(ctx)
		if err != nil {
			return "", err
		}
		if err := untar(ctx, in.Path, dir); err != nil {
			return "", err
		}
		return in.Source, nil
	}}
	if env.Quick {
		rootfs.label = "busybox rootfs"
	}
	env.rootfsWin = rootfs
	return rootfs
}

// untar extracts a tar with GNU tar, as root keeping owners.
func untar(ctx context.Context, tarPath, dir string) error {
	cmd := exec.CommandContext(ctx, "tar", "-xf", tarPath, "-C", dir, "--numeric-owner", tarQuiet)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("tar -xf %s: %w: %s", tarPath, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// prepareTree makes the input's tree and Windows tar, once per invocation.
func (in *cimInput) prepareTree(ctx context.Context, env *Env) (*cimTree, error) {
	if in.tree != nil {
		return in.tree, nil
	}
	if err := env.needGNUTar(ctx); err != nil {
		return nil, err
	}
	t := &cimTree{}
	name := "cim-tree-" + strings.ReplaceAll(strings.ToLower(in.label), " ", "-")
	dir, err := env.fixture(name, func(dir string) error {
		t.dir = filepath.Join(dir, "tree")
		t.winTar = filepath.Join(dir, "layer.tar")
		if err := os.MkdirAll(t.dir, 0o755); err != nil {
			return err
		}
		src, err := in.extract(ctx, env, t.dir)
		if err != nil {
			return err
		}
		t.source = src
		f, err := os.Create(t.winTar)
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(f, 1<<20)
		err = windowsLayerTar(t, bw)
		if err == nil {
			err = bw.Flush()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	t.dir, t.winTar = filepath.Join(dir, "tree"), filepath.Join(dir, "layer.tar")
	in.tree = t
	return t, nil
}

// windowsNameOK reports whether Windows can name a file name.
func windowsNameOK(name string) bool {
	if name == "" || strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") {
		return false
	}
	for _, r := range name {
		if r < 0x20 || strings.ContainsRune(`<>:"\|?*`, r) {
			return false
		}
	}
	base := strings.ToUpper(name)
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	switch base {
	case "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
		"LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9":
		return false
	}
	return true
}

// windowsLayerTar writes the tree t.dir as an OCI Windows layer tar under
// Files/. Entries a Windows layer cannot hold (names Windows refuses, names
// equal but for case, devices, fifos, sockets) are removed from the tree, so
// that every side works on the same content.
func windowsLayerTar(t *cimTree, w io.Writer) error {
	tw := tar.NewWriter(w)
	seen := map[string]bool{}
	type fileKey struct{ dev, ino uint64 }
	firstName := map[fileKey]string{}
	buf := make([]byte, 1<<20)
	hdr := func(name string, typ byte, st *syscall.Stat_t, attr uint32) *tar.Header {
		mt := time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
		return &tar.Header{
			Name: name, Typeflag: typ, Format: tar.FormatPAX,
			ModTime: mt, AccessTime: time.Unix(st.Atim.Sec, st.Atim.Nsec), ChangeTime: time.Unix(st.Ctim.Sec, st.Ctim.Nsec),
			PAXRecords: map[string]string{
				"MSWINDOWS.fileattr":      strconv.FormatUint(uint64(attr), 10),
				"LIBARCHIVE.creationtime": strconv.FormatInt(mt.Unix(), 10),
			},
		}
	}
	var rootSt syscall.Stat_t
	if err := syscall.Lstat(t.dir, &rootSt); err != nil {
		return err
	}
	h := hdr("Files/", tar.TypeDir, &rootSt, 0x10)
	h.Mode = 0o40000
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	err := filepath.WalkDir(t.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == t.dir {
			return nil
		}
		rel, _ := filepath.Rel(t.dir, p)
		lower := strings.ToLower(rel)
		drop := !windowsNameOK(d.Name()) || seen[lower]
		var st syscall.Stat_t
		if !drop {
			if err := syscall.Lstat(p, &st); err != nil {
				return err
			}
			switch st.Mode & syscall.S_IFMT {
			case syscall.S_IFDIR, syscall.S_IFREG, syscall.S_IFLNK:
			default:
				drop = true
			}
		}
		if drop {
			t.dropped++
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		seen[lower] = true
		name := "Files/" + filepath.ToSlash(rel)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			t.dirs++
			h := hdr(name+"/", tar.TypeDir, &st, 0x10)
			h.Mode = 0o40000
			return tw.WriteHeader(h)
		case syscall.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			attr, mode := uint32(0x20|0x400), int64(0o120000)
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				attr, mode = 0x10|0x400, 0o160000
			}
			if strings.HasPrefix(target, "/") {
				target = "C:" + target
			}
			t.links++
			h := hdr(name, tar.TypeSymlink, &st, attr)
			h.Mode, h.Linkname = mode, strings.ReplaceAll(target, "/", `\`)
			return tw.WriteHeader(h)
		}
		key := fileKey{uint64(st.Dev), st.Ino}
		if first, ok := firstName[key]; ok && st.Nlink > 1 {
			t.hard++
			h := hdr(name, tar.TypeLink, &st, 0x20)
			h.Linkname = first
			return tw.WriteHeader(h)
		}
		firstName[key] = name
		t.files++
		t.data += st.Size
		t.paths = append(t.paths, p)
		h := hdr(name, tar.TypeReg, &st, 0x20)
		h.Mode, h.Size = 0o100000, st.Size
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if n, err := io.CopyBuffer(tw, f, buf); err != nil || n != st.Size {
			return fmt.Errorf("copying %s: %d of %d bytes: %v", p, n, st.Size, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// dirSize is the total size of the files directly in dir.
func dirSize(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			return 0, err
		}
		n += fi.Size()
	}
	return n, nil
}

func fileSize(p string) (int64, error) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// erofsArgs and squashfsArgs build uncompressed images of tree at img.
// The options are cim.go's.
func erofsArgs(img, tree string) []string { return []string{"--quiet", img, tree} }

func squashfsArgs(img, tree string) []string {
	return []string{tree, img, "-noI", "-noD", "-noF", "-noX", "-quiet", "-no-progress", "-processors", "2"}
}

// cimTreeBuildRow times building an image of the input's tree: mkfs.erofs (or
// mksquashfs, with squashfs set) then sync -f, against hcs cim create (which
// syncs its files) from the Windows tar of the same tree.
func cimTreeBuildRow(in *cimInput, squashfs bool) *Row {
	var peerSizes, oursSizes []int64
	peerName, peerBin, peerPkg := "mkfs.erofs (uncompressed)", "mkfs.erofs", "erofs-utils"
	if squashfs {
		peerName, peerBin, peerPkg = "mksquashfs -noI -noD -noF -noX", "mksquashfs", "squashfs-tools"
	}
	var tree *cimTree
	r := &Row{
		Name: fmt.Sprintf("cim build vs %s (%s)", peerBin, in.label),
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if err := env.need(ctx, peerBin, peerPkg); err != nil {
				return Setup{}, err
			}
			t, err := in.prepareTree(ctx, env)
			if err != nil {
				return Setup{}, err
			}
			tree = t
			warm := append([]string{t.winTar}, t.paths...)
			return Setup{Input: t.String(), Bytes: t.data, Warm: warm}, nil
		},
		Peer: Side{Name: peerName + " + sync -f", Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
			img := filepath.Join(dir, "image")
			args := erofsArgs(img, tree.dir)
			if squashfs {
				args = squashfsArgs(img, tree.dir)
			}
			return &Run{
				Cmds: []*exec.Cmd{env.command(ctx, peerBin, args...), env.command(ctx, "sync", "-f", img)},
				Check: func() error {
					n, err := fileSize(img)
					peerSizes = append(peerSizes, n)
					return err
				},
			}, nil
		}},
		Ours: Side{Name: "hcs cim create", Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
			layer := filepath.Join(dir, "layer")
			return &Run{
				Cmds: []*exec.Cmd{env.command(ctx, env.HCS, "--quiet", "cim", "create", "-f", tree.winTar, layer)},
				Check: func() error {
					n, err := dirSize(filepath.Join(dir, "cim-layers"))
					oursSizes = append(oursSizes, n)
					return err
				},
			}, nil
		}},
	}
	r.Verdict = func(res *Result) []string {
		ratio := float64(median(walls(res.Peer))) / float64(median(walls(res.Ours)))
		ps, cs := slicesMax(peerSizes), slicesMax(oursSizes)
		notes := []string{fmt.Sprintf("image sizes: %s %s, hcs CIM %s (%.2fx)", peerBin, sizeList(peerSizes), sizeList(oursSizes), float64(cs)/float64(ps))}
		if !squashfs {
			notes = append(notes,
				fmt.Sprintf("goal build throughput >= %.1fx mkfs.erofs: %s (%.2fx)", cimBuildSpeedGoal, metIf(ratio >= cimBuildSpeedGoal), ratio),
				fmt.Sprintf("goal image <= %.1fx mkfs.erofs's: %s (%.2fx)", cimSizeGoal, metIf(float64(cs) <= cimSizeGoal*float64(ps)), float64(cs)/float64(ps)))
		}
		return notes
	}
	return r
}

// dropCaches writes back and drops the page cache, dentries and inodes, so
// that a cold read finds nothing cached.
func dropCaches() error {
	syncAll()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}

// buildImages makes the erofs, squashfs and CIM images of the input's tree
// once per invocation, for the read rows.
func (in *cimInput) buildImages(ctx context.Context, env *Env) (*cimImages, error) {
	if in.images != nil {
		return in.images, nil
	}
	t, err := in.prepareTree(ctx, env)
	if err != nil {
		return nil, err
	}
	name := "cim-images-" + strings.ReplaceAll(strings.ToLower(in.label), " ", "-")
	im := &cimImages{}
	dir, err := env.fixture(name, func(dir string) error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, c := range [][]string{
			append([]string{"mkfs.erofs"}, erofsArgs(filepath.Join(dir, "erofs.img"), t.dir)...),
			append([]string{"mksquashfs"}, squashfsArgs(filepath.Join(dir, "squashfs.img"), t.dir)...),
			{env.HCS, "--quiet", "cim", "create", "-f", t.winTar, filepath.Join(dir, "layer")},
			{env.HCS, "--quiet", "cim", "verify", filepath.Join(dir, "layer")},
		} {
			if out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %w: %s", strings.Join(c, " "), err, strings.TrimSpace(string(out)))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	im.erofs, im.squashfs = filepath.Join(dir, "erofs.img"), filepath.Join(dir, "squashfs.img")
	im.cim = filepath.Join(dir, "cim-layers", "layer.cim")
	in.images = im
	return im, nil
}

// readResult is what readtree printed.
type readResult struct{ files, bytes int64 }

func parseReadtree(b []byte) (readResult, error) {
	var r readResult
	_, err := fmt.Sscanf(string(b), "%d %d", &r.files, &r.bytes)
	return r, err
}

// run runs a command untimed (mounting, warming, unmounting).
func runUntimed(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// cimReadRow times reading every file of the input's tree through a mounted
// image: with cold set, squashfuse against the CIM's FUSE mount after dropping
// the caches; otherwise a kernel erofs mount against the CIM's FUSE mount,
// both read once before the timed read.
func cimReadRow(in *cimInput, cold bool) *Row {
	var images *cimImages
	var readtree string
	var peerRead, oursRead []readResult
	var compared string
	peerName := "kernel erofs (loop), hot"
	if cold {
		peerName = "squashfuse, cold"
	}
	ourName := "hcs cim mount (FUSE), hot"
	if cold {
		ourName = "hcs cim mount (FUSE), cold"
	}
	side := func(ours bool) func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
		return func(ctx context.Context, env *Env, n int, dir string) (*Run, error) {
			mnt := filepath.Join(dir, "mnt")
			if err := os.Mkdir(mnt, 0o755); err != nil {
				return nil, err
			}
			var mount, unmount []string
			switch {
			case ours:
				mount = []string{env.HCS, "cim", "mount", "--target", mnt, images.cim}
				unmount = []string{env.HCS, "cim", "unmount", "--target", mnt}
			case cold:
				mount = []string{"squashfuse", images.squashfs, mnt}
				unmount = []string{"umount", mnt}
			default:
				mount = []string{"mount", "-t", "erofs", "-o", "ro,loop", images.erofs, mnt}
				unmount = []string{"umount", mnt}
			}
			if err := runUntimed(ctx, mount[0], mount[1:]...); err != nil {
				return nil, err
			}
			cleanup := func() error { return runUntimed(context.Background(), unmount[0], unmount[1:]...) }
			var err error
			if cold {
				err = dropCaches()
			} else {
				err = runUntimed(ctx, readtree, mnt)
			}
			if err != nil {
				cleanup()
				return nil, err
			}
			var out bytes.Buffer
			cmd := env.command(ctx, readtree, mnt)
			cmd.Stdout = &out
			return &Run{
				Cmds: []*exec.Cmd{cmd},
				Check: func() error {
					r, err := parseReadtree(out.Bytes())
					if ours {
						oursRead = append(oursRead, r)
					} else {
						peerRead = append(peerRead, r)
					}
					if err == nil && ours && n == 0 && cold {
						// Once per row, untimed: the mount against the tree.
						compared, err = compareTreeMount(in.tree.dir, filepath.Join(mnt, "Files"))
					}
					return err
				},
				Cleanup: cleanup,
			}, nil
		}
	}
	label := "hot"
	if cold {
		label = "cold"
	}
	r := &Row{
		Name: fmt.Sprintf("cim read every file, %s cache, FUSE vs %s (%s)", label, strings.TrimSuffix(strings.TrimSuffix(peerName, ", cold"), ", hot"), in.label),
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if os.Geteuid() != 0 {
				return Setup{}, errors.New("mounting images needs root")
			}
			for _, n := range [][2]string{{"mkfs.erofs", "erofs-utils"}, {"mksquashfs", "squashfs-tools"}, {"squashfuse", "squashfuse"}} {
				if err := env.need(ctx, n[0], n[1]); err != nil {
					return Setup{}, err
				}
			}
			var err error
			if readtree, err = buildBenchTool(ctx, env, "readtree"); err != nil {
				return Setup{}, err
			}
			if images, err = in.buildImages(ctx, env); err != nil {
				return Setup{}, err
			}
			return Setup{Input: in.tree.String(), Bytes: in.tree.data}, nil
		},
		Peer: Side{Name: peerName, Prepare: side(false)},
		Ours: Side{Name: ourName, Prepare: side(true)},
	}
	r.Verdict = func(res *Result) []string {
		var notes []string
		if len(peerRead) > 0 && len(oursRead) > 0 {
			p, o := peerRead[0], oursRead[0]
			if p != o {
				notes = append(notes, fmt.Sprintf("MISMATCH: the peer read %d files (%s), ours %d (%s)", p.files, sizeIEC(p.bytes), o.files, sizeIEC(o.bytes)))
			} else {
				notes = append(notes, fmt.Sprintf("both read %d files, %s", o.files, sizeIEC(o.bytes)))
			}
		}
		if compared != "" {
			notes = append(notes, compared)
		}
		ratio := float64(median(walls(res.Peer))) / float64(median(walls(res.Ours)))
		if cold {
			notes = append(notes, fmt.Sprintf("goal cold read >= %.1fx squashfuse: %s (%.2fx)", cimColdReadGoal, metIf(ratio >= cimColdReadGoal), ratio))
		} else {
			notes = append(notes, fmt.Sprintf("goal hot read within 2x of kernel erofs: %s (%.2fx)", metIf(ratio >= cimHotReadGoal), ratio))
		}
		return notes
	}
	return r
}

// compareTreeMount compares the tree with the FUSE mount of its CIM (its Files
// directory), as diff -r would: the same names in every directory, the same
// bytes in every file, and symlinks that lead to the same place (absolute
// targets are relative inside the mount). It returns a note.
func compareTreeMount(tree, mnt string) (string, error) {
	var entries, diffs int
	var first string
	differ := func(rel, what string) {
		if diffs == 0 {
			first = rel + ": " + what
		}
		diffs++
	}
	bufA, bufB := make([]byte, 1<<20), make([]byte, 1<<20)
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tree, p)
		m := filepath.Join(mnt, rel)
		entries++
		mi, err := os.Lstat(m)
		if err != nil {
			differ(rel, err.Error())
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case d.IsDir():
			a, _ := os.ReadDir(p)
			b, err := os.ReadDir(m)
			if err != nil || len(a) != len(b) {
				differ(rel, fmt.Sprintf("%d names in the tree, %d in the mount (%v)", len(a), len(b), err))
				return nil
			}
			for i := range a {
				if a[i].Name() != b[i].Name() {
					differ(rel, "names differ: "+a[i].Name()+", "+b[i].Name())
					break
				}
			}
		case d.Type()&fs.ModeSymlink != 0:
			want, _ := os.Readlink(p)
			// The Windows layer carries the target with '\' separators (and
			// a drive for absolute ones), which the mount shows in Linux form.
			want = strings.ReplaceAll(want, `\`, "/")
			if len(want) >= 3 && want[1] == ':' && want[2] == '/' {
				want = want[2:]
			}
			got, err := os.Readlink(m)
			if err != nil {
				differ(rel, err.Error())
				return nil
			}
			if strings.HasPrefix(want, "/") {
				// Resolved inside the mount, it must land where the absolute
				// target is in the tree.
				if filepath.Clean(filepath.Join(filepath.Dir(rel), got)) != filepath.Clean(strings.TrimPrefix(want, "/")) {
					differ(rel, fmt.Sprintf("symlink %q for %q", got, want))
				}
			} else if got != want {
				differ(rel, fmt.Sprintf("symlink %q, want %q", got, want))
			}
		default:
			if !mi.Mode().IsRegular() {
				differ(rel, "not a regular file in the mount")
				return nil
			}
			same, err := sameContent(p, m, bufA, bufB)
			if err != nil {
				return err
			}
			if !same {
				differ(rel, "content differs")
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if diffs > 0 {
		return fmt.Sprintf("MISMATCH: the FUSE mount differs from the tree in %d of %d entries (first: %s)", diffs, entries, first), nil
	}
	return fmt.Sprintf("the FUSE mount matches the tree (%d entries: names, contents, symlinks)", entries), nil
}

func sameContent(a, b string, bufA, bufB []byte) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, nil
	}
	defer fb.Close()
	for {
		na, ea := io.ReadFull(fa, bufA)
		nb, eb := io.ReadFull(fb, bufB)
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		if ea != nil || eb != nil {
			return (ea == io.EOF || ea == io.ErrUnexpectedEOF) && (eb == io.EOF || eb == io.ErrUnexpectedEOF), nil
		}
	}
}
