package dmverity

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// needVeritysetup skips the test when cryptsetup's veritysetup, the oracle, is
// not installed (Debian package cryptsetup-bin, scripts/install-deps.sh).
func needVeritysetup(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("veritysetup"); err != nil {
		t.Skip("veritysetup not found (install cryptsetup-bin):", err)
	}
}

// veritysetup runs veritysetup and returns its combined output and exit code.
func veritysetup(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command("veritysetup", args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("veritysetup %s: %v", strings.Join(args, " "), err)
	return "", -1
}

// writeData writes size pseudo-random bytes (seeded, so failures reproduce) to a
// new file and returns its path.
func writeData(t *testing.T, size int64, seed uint64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	if _, err := io.CopyN(f, rng, size); err != nil {
		t.Fatal(err)
	}
	return path
}

func appendFile(t *testing.T, path string, size int64, p Params) *Info {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := Append(f, size, p)
	if err != nil {
		t.Fatalf("Append(%d bytes): %v", size, err)
	}
	if pos, _ := f.Seek(0, io.SeekCurrent); pos != info.End() {
		t.Errorf("file offset after Append = %d, want the end of the tree %d", pos, info.End())
	}
	return info
}

// dumpField returns the value of a "Name:  value" line of veritysetup dump.
func dumpField(t *testing.T, dump, name string) string {
	t.Helper()
	for _, line := range strings.Split(dump, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("veritysetup dump has no %q line:\n%s", name, dump)
	return ""
}

// oracleSizes are the data sizes checked against veritysetup, in 4096-byte blocks.
var oracleSizes = []struct {
	name   string
	blocks int64
	levels []int64
}{
	{"one block", 1, []int64{}},
	{"one hash block's worth", 128, []int64{1}},
	{"one more than a hash block", 129, []int64{2, 1}},
	{"one chunk", 256, []int64{2, 1}},
	{"chunk plus one", 257, []int64{3, 1}},
	{"two full levels", 128 * 128, []int64{128, 1}},
	{"three levels, partial blocks", 128*128 + 1, []int64{129, 2, 1}},
	{"hcsshim measured", 17097, []int64{134, 2, 1}},
}

func TestAppendMatchesVeritysetup(t *testing.T) {
	needVeritysetup(t)
	for i, tc := range oracleSizes {
		t.Run(tc.name, func(t *testing.T) {
			size := tc.blocks * BlockSize
			path := writeData(t, size, uint64(i))
			// veritysetup format on a copy of the data, with our salt and UUID,
			// must produce the same bytes as the superblock and tree we append.
			dataOnly, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			info := appendFile(t, path, size, Params{})
			if fmt.Sprint(info.Levels) != fmt.Sprint(tc.levels) {
				t.Errorf("levels = %v, want %v", info.Levels, tc.levels)
			}
			root := info.RootHashHex()

			out, code := veritysetup(t, "verify", "-v", path, path, root, "--hash-offset="+strconv.FormatInt(size, 10))
			if code != 0 {
				t.Fatalf("veritysetup verify: exit %d\n%s", code, out)
			}
			dump, code := veritysetup(t, "dump", path, "--hash-offset="+strconv.FormatInt(size, 10))
			if code != 0 {
				t.Fatalf("veritysetup dump: exit %d\n%s", code, dump)
			}
			sb := info.Superblock()
			for name, want := range map[string]string{
				"Hash type":       "1",
				"Data blocks":     strconv.FormatInt(tc.blocks, 10),
				"Data block size": "4096",
				"Hash block size": "4096",
				"Hash algorithm":  "sha256",
				"Salt":            strings.Repeat("0", 64),
				"UUID":            sb.UUIDString(),
			} {
				if got := dumpField(t, dump, name); got != want {
					t.Errorf("veritysetup dump %s = %q, want %q", name, got, want)
				}
			}

			dir := t.TempDir()
			refData, refHash := filepath.Join(dir, "data"), filepath.Join(dir, "hash")
			if err := os.WriteFile(refData, dataOnly, 0o600); err != nil {
				t.Fatal(err)
			}
			out, code = veritysetup(t, "format", refData, refHash, "--salt="+strings.Repeat("0", 64), "--uuid="+sb.UUIDString())
			if code != 0 {
				t.Fatalf("veritysetup format: exit %d\n%s", code, out)
			}
			if got := dumpField(t, out, "Root hash"); got != root {
				t.Errorf("veritysetup format root hash %s, ours %s", got, root)
			}
			ref, err := os.ReadFile(refHash)
			if err != nil {
				t.Fatal(err)
			}
			whole, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(whole[:size], dataOnly) {
				t.Fatal("Append changed the data")
			}
			if tail := whole[size:]; !bytes.Equal(tail, ref) {
				t.Errorf("superblock and tree (%d bytes) differ from veritysetup format's (%d bytes)", len(tail), len(ref))
			}

			// Compute writes the same tree without a superblock, and only the root
			// when given no writer.
			tree := filepath.Join(dir, "tree")
			tf, err := os.Create(tree)
			if err != nil {
				t.Fatal(err)
			}
			cinfo, err := Compute(t.Context(), bytes.NewReader(dataOnly), size, Params{}, tf)
			tf.Close()
			if err != nil {
				t.Fatal(err)
			}
			treeBytes, _ := os.ReadFile(tree)
			if !bytes.Equal(treeBytes, whole[size+BlockSize:]) || cinfo.RootHashHex() != root || cinfo.UUID != info.UUID {
				t.Errorf("Compute's tree or root differs from Append's")
			}
			out, code = veritysetup(t, "verify", "--no-superblock", "--hash-offset=0",
				"--data-blocks="+strconv.FormatInt(tc.blocks, 10), "--salt="+strings.Repeat("0", 64),
				"--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096", refData, tree, root)
			if code != 0 {
				t.Errorf("veritysetup verify --no-superblock on Compute's tree: exit %d\n%s", code, out)
			}
			rinfo, err := Compute(t.Context(), bytes.NewReader(dataOnly), size, Params{}, nil)
			if err != nil || rinfo.RootHashHex() != root {
				t.Errorf("Compute without a writer: %v, root %x, want %s", err, rinfo.RootHash, root)
			}

			// ReadInfo finds the same description in the file.
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ReadInfo(f, size)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", info) {
				t.Errorf("ReadInfo = %+v\nAppend gave %+v", got, info)
			}
			if err := Verify(f, info); err != nil {
				t.Errorf("Verify on Append's output: %v", err)
			}
		})
	}
}

// TestCorruptionDetected flips one data byte: veritysetup verify and Verify must
// both fail, and Verify must name the block.
func TestCorruptionDetected(t *testing.T) {
	needVeritysetup(t)
	const blocks = 300
	size := int64(blocks * BlockSize)
	for _, bad := range []int64{0, 127, 128, 257, blocks - 1} {
		t.Run(fmt.Sprint("block ", bad), func(t *testing.T) {
			path := writeData(t, size, 7)
			info := appendFile(t, path, size, Params{})
			flipByte(t, path, bad*BlockSize+100)
			out, code := veritysetup(t, "verify", path, path, info.RootHashHex(), "--hash-offset="+strconv.FormatInt(size, 10))
			if code == 0 {
				t.Errorf("veritysetup verify accepted corrupt data:\n%s", out)
			} else if want := fmt.Sprintf("position %d", bad*BlockSize); !strings.Contains(out, want) {
				t.Errorf("veritysetup verify output lacks %q:\n%s", want, out)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = Verify(f, info)
			var ve *VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, ErrMismatch) {
				t.Fatalf("Verify = %v, want a *VerifyError", err)
			}
			if ve.DataBlock != bad || ve.Level != 0 {
				t.Errorf("Verify reported data block %d at level %d, want block %d at level 0", ve.DataBlock, ve.Level, bad)
			}
		})
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyDamagedTree damages the tree itself rather than the data.
func TestVerifyDamagedTree(t *testing.T) {
	const blocks = 128*3 + 5
	size := int64(blocks * BlockSize)
	cases := []struct {
		name      string
		off       func(*Info) int64
		level     int
		dataBlock int64
	}{
		{"top block", func(i *Info) int64 { return i.HashOffset + 3 }, 1, -1},
		{"level 0 digest of block 200", func(i *Info) int64 { return i.HashOffset + BlockSize + 200*DigestSize }, 0, 200},
		{"level 0 padding", func(i *Info) int64 { return i.End() - 1 }, 0, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeData(t, size, 3)
			info := appendFile(t, path, size, Params{})
			flipByte(t, path, tc.off(info))
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var ve *VerifyError
			if err := Verify(f, info); !errors.As(err, &ve) {
				t.Fatalf("Verify = %v, want a *VerifyError", err)
			}
			if ve.Level != tc.level || ve.DataBlock != tc.dataBlock {
				t.Errorf("Verify: level %d data block %d, want level %d data block %d (%v)", ve.Level, ve.DataBlock, tc.level, tc.dataBlock, ve)
			}
		})
	}
	t.Run("wrong root", func(t *testing.T) {
		path := writeData(t, size, 3)
		info := appendFile(t, path, size, Params{})
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		info.RootHash = bytes.Repeat([]byte{1}, DigestSize)
		var ve *VerifyError
		if err := Verify(f, info); !errors.As(err, &ve) || ve.Level != -1 {
			t.Errorf("Verify with a wrong root = %v, want a root mismatch", err)
		}
	})
}

// TestAppendLarge checks a 1 GiB image against veritysetup (skipped with -short).
func TestAppendLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB image: skipped with -short")
	}
	needVeritysetup(t)
	const size = 1 << 30
	path := writeData(t, size, 11)
	info := appendFile(t, path, size, Params{})
	if want := []int64{2048, 16, 1}; fmt.Sprint(info.Levels) != fmt.Sprint(want) {
		t.Errorf("levels %v, want %v", info.Levels, want)
	}
	if out, code := veritysetup(t, "verify", path, path, info.RootHashHex(), "--hash-offset="+strconv.FormatInt(size, 10)); code != 0 {
		t.Fatalf("veritysetup verify: exit %d\n%s", code, out)
	}
	flipByte(t, path, 777*BlockSize*97)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ve *VerifyError
	if err := Verify(f, info); !errors.As(err, &ve) || ve.DataBlock != 777*97 {
		t.Errorf("Verify after corrupting block %d: %v", 777*97, err)
	}
}
