package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// vhdIOs is the number of random 4 KiB writes, and then of reads, of the random I/O
// row.
var vhdIOs = flag.Int("vhd-ios", 20000, "random 4 KiB writes, then as many reads, of the VHDX random I/O row")

// vhdRawVersion names the generator of the raw images; change it when rawImage
// changes, so that cached images are made again.
const vhdRawVersion = "v1"

// vhdRows are the rows for virtual disks: converting a raw image to a dynamic VHDX,
// and random 4 KiB I/O inside a dynamic VHDX.
func vhdRows(env *Env) []*Row {
	size := int64(4 << 30)
	ios := *vhdIOs
	if env.Quick {
		size = 512 << 20
		ios = min(ios, 2000)
	}
	conv := vhdConvertRow(size)
	conv.Name = fmt.Sprintf("vhd convert %s raw → dynamic VHDX", sizeIEC(size))
	rio := vhdRandomIORow(size, ios)
	rio.Name = "vhd random 4 KiB I/O on dynamic VHDX"
	return []*Row{conv, rio}
}

// vhdConvertRow compares qemu-img convert with hcs vhd convert, both writing a dynamic
// VHDX from the same raw image. qemu-img convert writes its output in cache mode
// "unsafe" by default (flushes are ignored; see qemu-img --help), while hcs flushes
// the VHDX when it closes it, so the peer is followed by sync -f on its output: both
// end with the data on stable storage.
func vhdConvertRow(size int64) *Row {
	var (
		raw                    string
		peerAlloc, oursAlloc   int64
		peerSame, oursSame     string
		peerChecked, oursCheck bool
	)
	// check records the blocks allocated to out and, once per side, compares its
	// virtual disk with the raw image.
	check := func(ctx context.Context, out string, alloc *int64, same *string, done *bool) func() error {
		return func() error {
			if st, err := os.Stat(out); err == nil {
				if s, ok := st.Sys().(*syscall.Stat_t); ok {
					*alloc = max(*alloc, s.Blocks*512)
				}
			}
			if *done {
				return nil
			}
			*done = true
			cmd := exec.CommandContext(ctx, "qemu-img", "compare", "-f", "raw", "-F", "vhdx", raw, out)
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("qemu-img compare %s %s: %w\n%s", raw, out, err, b)
			}
			*same = "identical"
			return nil
		}
	}
	return &Row{
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if err := env.need(ctx, "qemu-img", "qemu-utils"); err != nil {
				return Setup{}, err
			}
			var err error
			if raw, err = env.rawImage(ctx, size); err != nil {
				return Setup{}, err
			}
			var alloc int64
			if st, err := os.Stat(raw); err == nil {
				if s, ok := st.Sys().(*syscall.Stat_t); ok {
					alloc = s.Blocks * 512
				}
			}
			return Setup{
				Input: fmt.Sprintf("%s: raw image of %s (%s allocated), per 3 MiB one MiB of zeros (a hole) and two of pseudo-random data",
					filepath.Base(raw), sizeIEC(size), sizeIEC(alloc)),
				Bytes: size,
				Warm:  []string{raw},
				Notes: []string{"MB/s of the virtual size; peer followed by sync -f (qemu-img convert writes in cache mode unsafe), hcs flushes on close"},
			}, nil
		},
		Peer: Side{
			Name: "qemu-img convert -O vhdx + sync -f",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				out := filepath.Join(dir, "out.vhdx")
				return &Run{
					Cmds: []*exec.Cmd{
						env.command(ctx, "qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic", raw, out),
						env.command(ctx, "sync", "-f", out),
					},
					Check: check(ctx, out, &peerAlloc, &peerSame, &peerChecked),
				}, nil
			},
		},
		Ours: Side{
			Name: "hcs vhd convert --to vhdx-dynamic",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				out := filepath.Join(dir, "out.vhdx")
				return &Run{
					Cmds:  []*exec.Cmd{env.command(ctx, env.HCS, "vhd", "convert", "--format", "raw", "--to", "vhdx-dynamic", raw, out)},
					Check: check(ctx, out, &oursAlloc, &oursSame, &oursCheck),
				}, nil
			},
		},
		Verdict: func(res *Result) []string {
			return []string{
				fmt.Sprintf("output on disk (allocated): ours %s, peer %s", sizeIEC(oursAlloc), sizeIEC(peerAlloc)),
				fmt.Sprintf("qemu-img compare with the raw image (first run of each side): ours %s, peer %s", oursSame, peerSame),
			}
		},
	}
}

// vhdRandomIORow compares qemu-io with bench/cmd/vhdio running the same script of
// random 4 KiB writes and reads on a new, empty dynamic VHDX of size bytes. Each
// side's image is made by its own tool, untimed, before the run: qemu-img create for
// the peer, pkg/vhd's CreateVHDX for ours. qemu-img bench only steps through the disk
// at a fixed stride, so the peer is qemu-io reading the script from its standard
// input; vhdio reads the same file. Both check the pattern of every read.
//
// qemu-io opens images in cache mode writethrough unless told otherwise: it flushes
// (fdatasync) after every write, 21,538 flushes for 20,000 writes here. pkg/vhd
// flushes when it allocates a block and when the disk is closed (131 fsync calls for
// the 128 blocks of 4 GiB), so the peer runs with -t writeback: page cache, no
// O_DIRECT, flushes when qemu allocates a block and when qemu-io closes the image.
// qemu updates the BAT through the VHDX log, about 1,800 fdatasync calls for the 128
// blocks; pkg/vhd writes BAT entries in place. Counts from strace -c.
func vhdRandomIORow(size int64, ios int) *Row {
	var (
		script, reads, vhdio string
		checked              bool
		crossCheck           string
	)
	return &Row{
		Setup: func(ctx context.Context, env *Env, dir string) (Setup, error) {
			if err := env.need(ctx, "qemu-io", "qemu-utils"); err != nil {
				return Setup{}, err
			}
			vhdio = filepath.Join(env.Work, "bin", "vhdio")
			if _, err := os.Stat(vhdio); err != nil {
				goTool := "go"
				if f := flag.Lookup("go"); f != nil {
					goTool = f.Value.String()
				}
				env.logf("building ./bench/cmd/vhdio")
				cmd := exec.CommandContext(ctx, goTool, "build", "-o", vhdio, "./bench/cmd/vhdio")
				cmd.Dir = env.Root
				if out, err := cmd.CombinedOutput(); err != nil {
					return Setup{}, fmt.Errorf("building ./bench/cmd/vhdio: %w\n%s", err, out)
				}
			}
			script = filepath.Join(dir, "io.txt")
			reads = filepath.Join(dir, "reads.txt")
			if err := writeIOScript(script, reads, env.Seed, size, ios); err != nil {
				return Setup{}, err
			}
			return Setup{
				Input: fmt.Sprintf("new dynamic VHDX of %s (32 MiB blocks); %d random 4 KiB-aligned writes of 4 KiB (pattern 0xab), then %d reads of the written offsets in another random order (seed %d)",
					sizeIEC(size), ios, ios, env.Seed),
				Bytes: int64(2*ios) * 4096,
				Warm:  []string{script},
				Notes: []string{"MB/s of the bytes written and read; image creation untimed; both read the script from one file and check every read's pattern; " +
					"peer with -t writeback (qemu-io's default writethrough flushes after every write); both flush when they allocate a block and on close, qemu about 14 times per block (BAT through the log), pkg/vhd once"},
			}, nil
		},
		Peer: Side{
			Name: "qemu-io -t writeback < script",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				img := filepath.Join(dir, "disk.vhdx")
				mk := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=dynamic", img, fmt.Sprint(size))
				if out, err := mk.CombinedOutput(); err != nil {
					return nil, fmt.Errorf("%s: %w\n%s", mk, err, out)
				}
				in, err := os.Open(script)
				if err != nil {
					return nil, err
				}
				cmd := env.command(ctx, "qemu-io", "-t", "writeback", "-f", "vhdx", img)
				cmd.Stdin = in
				return &Run{Cmds: []*exec.Cmd{cmd}, Cleanup: in.Close}, nil
			},
		},
		Ours: Side{
			Name: "pkg/vhd (bench/cmd/vhdio)",
			Prepare: func(ctx context.Context, env *Env, run int, dir string) (*Run, error) {
				img := filepath.Join(dir, "disk.vhdx")
				if err := vhd.CreateVHDX(img, vhd.VHDXCreateOptions{Size: size}); err != nil {
					return nil, err
				}
				return &Run{
					Cmds: []*exec.Cmd{env.command(ctx, vhdio, script, img)},
					// Once, untimed: qemu-io reads back what pkg/vhd wrote.
					Check: func() error {
						if checked {
							return nil
						}
						checked = true
						in, err := os.Open(reads)
						if err != nil {
							return err
						}
						defer in.Close()
						cmd := exec.CommandContext(ctx, "qemu-io", "-r", "-f", "vhdx", img)
						cmd.Stdin = in
						out, err := cmd.CombinedOutput()
						if err == nil && bytes.Contains(out, []byte("failed")) {
							err = errors.New("a read failed")
						}
						if err != nil {
							return fmt.Errorf("qemu-io reading back %s: %w\n%s", img, err, lastLines(out, 5))
						}
						crossCheck = fmt.Sprintf("qemu-io read back all %d written blocks of ours' image with the right pattern (first run)", ios)
						return nil
					},
				}, nil
			},
		},
		Verdict: func(res *Result) []string { return []string{crossCheck} },
	}
}

// lastLines returns the last n lines of b.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// writeIOScript writes the qemu-io commands of the random I/O row: ios writes of 4 KiB
// at random 4 KiB-aligned offsets below size, then reads of the same offsets in
// another random order. The reads alone also go to readsPath.
func writeIOScript(path, readsPath string, seed uint64, size int64, ios int) error {
	rng := rand.New(rand.NewPCG(seed, 0x76686469)) // "vhdi"
	offs := make([]int64, ios)
	for i := range offs {
		offs[i] = rng.Int64N(size/4096) * 4096
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, off := range offs {
		fmt.Fprintf(w, "write -P 0xab %d 4k\n", off)
	}
	rng.Shuffle(len(offs), func(i, j int) { offs[i], offs[j] = offs[j], offs[i] })
	var rb strings.Builder
	for _, off := range offs {
		fmt.Fprintf(&rb, "read -P 0xab %d 4k\n", off)
	}
	w.WriteString(rb.String())
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.WriteFile(readsPath, []byte(rb.String()), 0o644)
}

// rawImage returns a raw disk image of size bytes in the cache, generating it unless
// it is already there. Per 3 MiB, one MiB chosen at random is zeros, left as a hole,
// and the other two hold pseudo-random data; all of it follows from env.Seed.
func (env *Env) rawImage(ctx context.Context, size int64) (string, error) {
	path := filepath.Join(env.Cache, fmt.Sprintf("vhdraw-s%d-b%d-%s.img", env.Seed, size, vhdRawVersion))
	if st, err := os.Stat(path); err == nil && st.Size() == size {
		return path, nil
	}
	if err := os.MkdirAll(env.Cache, 0o755); err != nil {
		return "", err
	}
	env.logf("generating %s (%s) into %s", filepath.Base(path), sizeIEC(size), env.Cache)
	start := time.Now()
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	f, err := os.Create(tmp)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	var key [32]byte
	for i := range 8 {
		key[i] = byte(env.Seed >> (8 * i))
	}
	src := rand.NewChaCha8(key)
	pick := rand.New(rand.NewPCG(env.Seed, 0x726177)) // "raw"
	const mib = 1 << 20
	buf := make([]byte, mib)
	zero := -1
	for i := int64(0); i*mib < size; i++ {
		if err := ctx.Err(); err != nil {
			f.Close()
			return "", err
		}
		if i%3 == 0 {
			zero = pick.IntN(3)
		}
		if int(i%3) == zero {
			continue
		}
		n := min(mib, size-i*mib)
		src.Read(buf[:n])
		if _, err := f.WriteAt(buf[:n], i*mib); err != nil {
			f.Close()
			return "", err
		}
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("generating %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	env.logf("generated %s in %s", filepath.Base(path), seconds(time.Since(start)))
	return path, nil
}
