package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hostcompute/hostcompute/pkg/dmverity"
)

// tar2ext4Version is the hcsshim release whose tar2ext4 is the peer of the ext4 rows.
const tar2ext4Version = "v0.13.0"

// tar2ext4Goal is issue 14's goal for tar2ext4's speed against hcsshim's (both
// flushing their output), on both tree sizes.
const tar2ext4Goal = 2.0

// tar2ext4VerityFlag is the dm-verity flag of hcs tar2ext4, which the hcsshim peer
// (scripts/peers/hcsshim-tar2ext4-verity) takes too, so both get identical flags.
const tar2ext4VerityFlag = "-dmverity"

// ext4Rows are the rows for Linux layer images: tar2ext4 without and with a VHD
// footer and dm-verity, on a Debian root filesystem tar, and the dm-verity tree of
// a large image alone.
func ext4Rows(env *Env) []*Row {
	input := "Debian rootfs tar"
	verityData := int64(1 << 30)
	if env.Quick {
		input, verityData = "busybox rootfs tar", 64<<20
	}
	plain := tar2ext4Row(nil, false)
	plain.Name = "tar2ext4 " + input
	vhd := tar2ext4Row([]string{"-vhd"}, false)
	vhd.Name = "tar2ext4 -vhd " + input
	verity := tar2ext4Row([]string{"-vhd", tar2ext4VerityFlag}, true)
	verity.Name = fmt.Sprintf("tar2ext4 -vhd %s %s", tar2ext4VerityFlag, input)
	tree := dmverityRow(verityData)
	tree.Name = fmt.Sprintf("dm-verity tree of a %s image", sizeIEC(verityData))
	return []*Row{plain, vhd, verity, tree}
}

// sideOutputs collects what the untimed checks of one side's runs found.
type sideOutputs struct {
	mu      sync.Mutex
	sizes   []int64
	digests []string
	notes   []string // from the first run's checks
	checked bool
}

func (s *sideOutputs) add(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	d, err := fileDigest(path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sizes = append(s.sizes, st.Size())
	s.digests = append(s.digests, d)
	return nil
}

// identical says whether every run wrote the same bytes.
func (s *sideOutputs) identical() string {
	for _, d := range s.digests[1:] {
		if d != s.digests[0] {
			return fmt.Sprintf("differ between runs (%d runs)", len(s.digests))
		}
	}
	return fmt.Sprintf("identical in all %d runs", len(s.digests))
}

// tar2ext4Row compares hcsshim's tar2ext4 with hcs tar2ext4, both given the same
// flags and the same tar, each followed by sync -f on its image so that both end
// with the image on stable storage. hcsshim's command line has no dm-verity flag, so
// with verity the peer is scripts/peers/hcsshim-tar2ext4-verity, the same Convert call
// with tar2ext4.AppendDMVerity added.
func tar2ext4Row(flags []string, verity bool) *Row {
	var (
		in         *rootfsInput
		peerBin    string
		peer, ours sideOutputs
		setupDir   string
	)
	ext := ".img"
	if len(flags) > 0 && flags[0] == "-vhd" {
		ext = ".vhd"
	}
	peerName := "hcsshim tar2ext4 " + tar2ext4Version
	if verity {
		peerName = "hcsshim tar2ext4.Convert(AppendDMVerity) " + tar2ext4Version
	}
	side := func(bin func(*Env) string, outs *sideOutputs, isPeer bool) func(context.Context, *Env, int, string) (*Run, error) {
		return func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
			out := filepath.Join(dir, "layer"+ext)
			args := append([]string{}, flags...)
			args = append(args, "-i", in.Path, "-o", out)
			if !isPeer {
				args = append([]string{"tar2ext4"}, args...)
			}
			return &Run{
				Cmds: []*exec.Cmd{env.command(ctx, bin(env), args...), env.command(ctx, "sync", "-f", out)},
				Check: func() error {
					if err := outs.add(out); err != nil {
						return err
					}
					if outs.checked {
						return nil
					}
					outs.checked = true
					outs.notes = checkImage(ctx, out, verity)
					if isPeer && verity {
						outs.notes = append(outs.notes, reproduceVerity(out, setupDir))
					}
					return nil
				},
			}, nil
		}
	}
	return &Row{
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			setupDir = dir
			for _, t := range [][2]string{{"e2fsck", "e2fsprogs"}, {"veritysetup", "cryptsetup-bin"}} {
				if err := env.need(ctx, t[0], t[1]); err != nil {
					return Setup{}, err
				}
			}
			// hcs tar2ext4 must exist, with the flags this row gives it.
			if out, err := exec.CommandContext(ctx, env.HCS, "tar2ext4", "--help").CombinedOutput(); err != nil {
				return Setup{}, fmt.Errorf("%s tar2ext4 --help: %w: this hcs has no tar2ext4 command\n%s", env.HCS, err, lastLines(out, 3))
			}
			var err error
			if in, err = env.linuxRootfs(ctx); err != nil {
				return Setup{}, err
			}
			if verity {
				peerBin, err = env.tar2ext4Peer(ctx, "hcsshim-tar2ext4-verity")
			} else {
				peerBin, err = env.tar2ext4Peer(ctx, "tar2ext4")
			}
			if err != nil {
				return Setup{}, err
			}
			return Setup{
				Input: in.String(),
				Bytes: in.Size,
				Warm:  []string{in.Path},
				Notes: []string{"both sides get the flags `" + strings.Join(append(flags[:len(flags):len(flags)], "-i IN -o OUT"), " ") + "` and are followed by sync -f OUT"},
			}, nil
		},
		Peer: Side{Name: peerName, Prepare: side(func(*Env) string { return peerBin }, &peer, true)},
		Ours: Side{Name: "hcs tar2ext4", Prepare: side(func(env *Env) string { return env.HCS }, &ours, false)},
		Verdict: func(res *Result) []string {
			notes := []string{
				fmt.Sprintf("image size: peer %s, ours %s", sizeList(peer.sizes), sizeList(ours.sizes)),
				"image bytes: peer " + peer.identical() + ", ours " + ours.identical(),
			}
			for _, n := range peer.notes {
				notes = append(notes, "peer: "+n)
			}
			for _, n := range ours.notes {
				notes = append(notes, "ours: "+n)
			}
			if pm, om := median(walls(res.Peer)), median(walls(res.Ours)); om > 0 {
				ratio := float64(pm) / float64(om)
				notes = append(notes, fmt.Sprintf("goal ≥ %.1f× hcsshim's throughput: %s (%.2f×)", tar2ext4Goal, metIf(ratio >= tar2ext4Goal), ratio))
			}
			if len(peer.sizes) > 0 && len(ours.sizes) > 0 {
				notes = append(notes, fmt.Sprintf("goal image no larger than hcsshim's: %s", metIf(ours.sizes[0] <= peer.sizes[0])))
			}
			return notes
		},
	}
}

func metIf(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func sizeList(sizes []int64) string {
	if len(sizes) == 0 {
		return "none"
	}
	for _, s := range sizes[1:] {
		if s != sizes[0] {
			return fmt.Sprintf("%d to %d bytes", slicesMin(sizes), slicesMax(sizes))
		}
	}
	return fmt.Sprintf("%d bytes (%s)", sizes[0], sizeIEC(sizes[0]))
}

func slicesMin(s []int64) int64 {
	m := s[0]
	for _, v := range s {
		m = min(m, v)
	}
	return m
}

func slicesMax(s []int64) int64 {
	m := s[0]
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

// checkImage runs the oracles on an image once: e2fsck -fn, and with verity
// veritysetup verify with the root hash read back from the tree.
func checkImage(ctx context.Context, path string, verity bool) []string {
	var notes []string
	out, err := exec.CommandContext(ctx, "e2fsck", "-fn", path).CombinedOutput()
	if err != nil {
		// The first question e2fsck answered "no" to names the first problem.
		problem := "no problem named"
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasSuffix(strings.TrimSpace(line), "? no") {
				problem = strings.TrimSpace(line)
				break
			}
		}
		notes = append(notes, fmt.Sprintf("e2fsck -fn: %v: %s", err, problem))
	} else {
		notes = append(notes, "e2fsck -fn clean")
	}
	if !verity {
		return notes
	}
	size, err := ext4Size(path)
	if err != nil {
		return append(notes, err.Error())
	}
	f, err := os.Open(path)
	if err != nil {
		return append(notes, err.Error())
	}
	defer f.Close()
	info, err := dmverity.ReadInfo(f, size)
	if err != nil {
		return append(notes, "dm-verity superblock: "+err.Error())
	}
	cmd := exec.CommandContext(ctx, "veritysetup", "verify", path, path, info.RootHashHex(), fmt.Sprintf("--hash-offset=%d", size))
	if out, err := cmd.CombinedOutput(); err != nil {
		return append(notes, fmt.Sprintf("veritysetup verify: %v (%s)", err, lastLines(out, 1)))
	}
	return append(notes, fmt.Sprintf("veritysetup verify ok, root %s…, %d data blocks, superblock UUID %s",
		info.RootHashHex()[:16], info.DataBlocks, info.Superblock().UUIDString()))
}

// reproduceVerity rebuilds the dm-verity part of hcsshim's image with pkg/dmverity
// from its ext4 part, with hcsshim's parameters and the UUID hcsshim drew at random,
// and compares the bytes.
func reproduceVerity(path, tmpDir string) string {
	res, err := func() (string, error) {
		size, err := ext4Size(path)
		if err != nil {
			return "", err
		}
		src, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer src.Close()
		sb, err := dmverity.ReadSuperblock(src, size)
		if err != nil {
			return "", err
		}
		tmp, err := os.CreateTemp(tmpDir, "reverity-")
		if err != nil {
			return "", err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		if _, err := io.Copy(tmp, io.NewSectionReader(src, 0, size)); err != nil {
			return "", err
		}
		info, err := dmverity.Append(tmp, size, dmverity.Params{Hcsshim: true, UUID: sb.UUID})
		if err != nil {
			return "", err
		}
		n := info.End() - size
		want, got := make([]byte, n), make([]byte, n)
		if _, err := src.ReadAt(want, size); err != nil {
			return "", err
		}
		if _, err := tmp.ReadAt(got, size); err != nil {
			return "", err
		}
		if !bytes.Equal(want, got) {
			return "pkg/dmverity with hcsshim's UUID does NOT reproduce hcsshim's superblock and tree", nil
		}
		return fmt.Sprintf("pkg/dmverity (Params{Hcsshim, UUID}) reproduces hcsshim's superblock and tree byte for byte (%d bytes)", n), nil
	}()
	if err != nil {
		return "reproducing the dm-verity tree: " + err.Error()
	}
	return res
}

// ext4Size reads the size of the ext4 file system at the start of path from its
// superblock (blocks count × block size).
func ext4Size(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		return 0, fmt.Errorf("%s: ext4 superblock: %w", path, err)
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xef53 {
		return 0, fmt.Errorf("%s: no ext4 superblock", path)
	}
	blocks := uint64(binary.LittleEndian.Uint32(sb[0x4:]))
	if binary.LittleEndian.Uint32(sb[0x60:])&0x80 != 0 { // 64bit: blocks count high word
		blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	return int64(blocks) << (10 + binary.LittleEndian.Uint32(sb[0x18:])), nil
}

func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// dmverityRow compares veritysetup format with pkg/dmverity (bench/cmd/dmverity)
// building the hash device of the same data file: a separate file holding the
// superblock and the tree, with hcsshim's salt (32 zero bytes). The data is
// pseudo-random, generated into the cache.
func dmverityRow(size int64) *Row {
	var (
		data, ours string
		checked    [2]bool
		roots      [2]string
		hashFiles  [2]string
		note       string
	)
	zeroSalt := strings.Repeat("0", 64)
	check := func(ctx context.Context, side int, stdout *bytes.Buffer, hash string) func() error {
		return func() error {
			if checked[side] {
				return nil
			}
			checked[side] = true
			for _, line := range strings.Split(stdout.String(), "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "Root hash" {
					roots[side] = strings.TrimSpace(v)
				}
			}
			if roots[side] == "" {
				return fmt.Errorf("no root hash printed:\n%s", stdout)
			}
			cmd := exec.CommandContext(ctx, "veritysetup", "verify", data, hash, roots[side])
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("veritysetup verify: %w\n%s", err, out)
			}
			b, err := os.ReadFile(hash)
			if err != nil {
				return err
			}
			hashFiles[side] = hex.EncodeToString(b[:16]) + hex.EncodeToString(b[32:]) // all but the UUID
			return nil
		}
	}
	return &Row{
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if err := env.need(ctx, "veritysetup", "cryptsetup-bin"); err != nil {
				return Setup{}, err
			}
			var err error
			if data, err = env.verityData(ctx, size); err != nil {
				return Setup{}, err
			}
			if ours, err = env.benchCmd(ctx, "dmverity"); err != nil {
				return Setup{}, err
			}
			return Setup{
				Input: fmt.Sprintf("%s: %s of pseudo-random data", filepath.Base(data), sizeIEC(size)),
				Bytes: size,
				Warm:  []string{data},
				Notes: []string{"both write the superblock and tree to a separate hash file, salt 32 zero bytes (hcsshim's); the page cache is warm, no sync"},
			}, nil
		},
		Peer: Side{
			Name: "veritysetup format",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				hash := filepath.Join(dir, "hash")
				var stdout bytes.Buffer
				cmd := env.command(ctx, "veritysetup", "format", "--salt="+zeroSalt, data, hash)
				cmd.Stdout = &stdout
				return &Run{Cmds: []*exec.Cmd{cmd}, Check: check(ctx, 0, &stdout, hash)}, nil
			},
		},
		Ours: Side{
			Name: "pkg/dmverity (bench/cmd/dmverity)",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				hash := filepath.Join(dir, "hash")
				var stdout bytes.Buffer
				cmd := env.command(ctx, ours, data, hash)
				cmd.Stdout = &stdout
				return &Run{Cmds: []*exec.Cmd{cmd}, Check: check(ctx, 1, &stdout, hash)}, nil
			},
		},
		Verdict: func(res *Result) []string {
			note = "root hashes differ"
			if roots[0] == roots[1] {
				note = "same root hash " + roots[0][:16] + "…"
			}
			if hashFiles[0] == hashFiles[1] {
				note += "; hash files identical except the superblock UUID (veritysetup's is random, ours derived)"
			} else {
				note += "; hash files DIFFER beyond the UUID"
			}
			return []string{note, "both hash files pass veritysetup verify"}
		},
	}
}

// verityData returns a file of size pseudo-random bytes (ChaCha8 from the seed) in
// the cache, generating it on first use.
func (env *Env) verityData(ctx context.Context, size int64) (string, error) {
	path := filepath.Join(env.Cache, fmt.Sprintf("verity-s%d-b%d-v1.img", env.Seed, size))
	if st, err := os.Stat(path); err == nil && st.Size() == size {
		return path, nil
	}
	env.logf("generating %s", filepath.Base(path))
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	defer os.Remove(tmp)
	f, err := os.Create(tmp)
	if err != nil {
		return "", err
	}
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], env.Seed)
	_, err = io.CopyN(&ctxWriter{ctx: ctx, w: f}, rand.NewChaCha8(seed), size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// benchCmd builds ./bench/cmd/NAME into the work directory once and returns it.
func (env *Env) benchCmd(ctx context.Context, name string) (string, error) {
	bin := filepath.Join(env.Work, "bin", name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	env.logf("building ./bench/cmd/%s", name)
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", bin, "./bench/cmd/"+name)
	cmd.Dir = env.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building ./bench/cmd/%s: %w\n%s", name, err, out)
	}
	return bin, nil
}

// goPeer builds the peer program in bench/peers/NAME, a module of its own, into
// the work directory once and returns it. The first build downloads its modules
// through the Go module proxy.
func (env *Env) goPeer(ctx context.Context, name string) (string, error) {
	bin := filepath.Join(env.Work, "bin", "peers", name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	env.logf("building bench/peers/%s (its own module)", name)
	cmd := exec.CommandContext(ctx, goTool(), "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(env.Root, "bench", "peers", name)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building bench/peers/%s: %w\n%s", name, err, out)
	}
	return bin, nil
}

// tar2ext4Peer returns the hcsshim program NAME from <repo>/bin/peers (its tar2ext4
// command, or the library wrapper hcsshim-tar2ext4-verity), running
// scripts/install-go-peers.sh when it is missing.
func (env *Env) tar2ext4Peer(ctx context.Context, name string) (string, error) {
	bin := filepath.Join(env.Root, "bin", "peers", name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	script := filepath.Join(env.Root, "scripts", "install-go-peers.sh")
	env.logf("%s is missing: running %s", bin, script)
	cmd := exec.CommandContext(ctx, script)
	cmd.Dir = env.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("installing hcsshim's peers: %w\n%s", err, out)
	}
	if _, err := os.Stat(bin); err != nil {
		return "", errors.New(name + " still missing after installing the peers: " + err.Error())
	}
	return bin, nil
}

// goTool is the go command given with -go.
func goTool() string {
	if f := flag.Lookup("go"); f != nil {
		return f.Value.String()
	}
	return "go"
}
