package main

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/internal/compress"
)

// layerTar is a small Linux layer with whiteouts, links, devices and attributes.
func layerTar(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(1700000000, 5)
	add := func(h tar.Header, data []byte) {
		h.ModTime = mt
		h.Format = tar.FormatPAX
		h.Size = int64(len(data))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	add(tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755}, nil)
	add(tar.Header{Typeflag: tar.TypeReg, Name: "etc/os-release", Mode: 0o644, PAXRecords: map[string]string{"SCHILY.xattr.user.x": "y"}}, []byte("ID=test\n"))
	add(tar.Header{Typeflag: tar.TypeReg, Name: "usr/bin/tool", Mode: 0o755}, big)
	add(tar.Header{Typeflag: tar.TypeSymlink, Name: "usr/bin/alias", Linkname: "tool"}, nil)
	add(tar.Header{Typeflag: tar.TypeLink, Name: "usr/bin/hard", Linkname: "usr/bin/tool"}, nil)
	add(tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, nil)
	add(tar.Header{Typeflag: tar.TypeReg, Name: "var/.wh.cache", Mode: 0o644}, nil)
	add(tar.Header{Typeflag: tar.TypeReg, Name: "opt/.wh..wh..opq", Mode: 0o644}, nil)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func peer(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("../../bin/peers", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not installed: run scripts/install-go-peers.sh (make test does)", p)
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// mask zeroes the fields hcsshim fills at random: the footer's checksum and unique
// ID, and the dm-verity superblock's UUID.
func mask(b []byte, ext4Size int64, verity, footer bool) []byte {
	b = bytes.Clone(b)
	if footer {
		f := b[len(b)-512:]
		clear(f[64:68]) // checksum
		clear(f[68:84]) // unique ID
	}
	if verity {
		clear(b[ext4Size+16 : ext4Size+32])
	}
	return b
}

func TestTar2Ext4DropIn(t *testing.T) {
	t2e := peer(t, "tar2ext4")
	dir := t.TempDir()
	in := writeFile(t, dir, "layer.tar", layerTar(t))
	for _, flags := range [][]string{nil, {"-vhd"}, {"-inline"}, {"-overlay"}, {"--overlay", "-vhd", "-inline"}, {"-convert-slash"}} {
		t.Run(strings.Join(flags, ""), func(t *testing.T) {
			theirs := filepath.Join(t.TempDir(), "theirs")
			ours := filepath.Join(t.TempDir(), "ours")
			run(t, t2e, append([]string{"-i", in, "-o", theirs}, flags...)...)
			wantCode(t, hcs(t, nil, append([]string{"tar2ext4", "-compat", "-q", "-i", in, "-o", ours}, flags...)...), exitOK)
			a, _ := os.ReadFile(ours)
			b, _ := os.ReadFile(theirs)
			vhd := strings.Contains(strings.Join(flags, " "), "vhd")
			if !bytes.Equal(mask(a, 0, false, vhd), mask(b, 0, false, vhd)) {
				t.Fatalf("output differs from hcsshim's (%d and %d bytes)", len(a), len(b))
			}
		})
	}
}

// TestTar2Ext4Verity compares -dm-verity with hcsshim's library (AppendDMVerity) and
// the root hash with ConvertAndComputeRootDigest, and checks it with veritysetup.
func TestTar2Ext4Verity(t *testing.T) {
	lib := peer(t, "hcsshim-tar2ext4-verity")
	dir := t.TempDir()
	in := writeFile(t, dir, "layer.tar", layerTar(t))
	theirs := filepath.Join(dir, "theirs.vhd")
	ours := filepath.Join(dir, "ours.vhd")
	run(t, lib, "-i", in, "-o", theirs, "-vhd", "-dm-verity", "-overlay")
	r := hcs(t, nil, "tar2ext4", "-compat", "-output", "json", "-i", in, "-o", ours, "-vhd", "-dm-verity", "-overlay")
	wantCode(t, r, exitOK)
	var res tar2ext4Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	a, _ := os.ReadFile(ours)
	b, _ := os.ReadFile(theirs)
	if !bytes.Equal(mask(a, res.Ext4Size, true, true), mask(b, res.Ext4Size, true, true)) {
		t.Fatalf("output differs from hcsshim's (%d and %d bytes)", len(a), len(b))
	}
	if int64(len(a)) != res.Size {
		t.Errorf("file is %d bytes, result says %d", len(a), res.Size)
	}

	// The policy root hash: ConvertWhiteout and a 128 GiB maximum disk size.
	want := strings.TrimSpace(run(t, lib, "-i", in, "-root-digest"))
	hashFile := filepath.Join(dir, "root")
	img := filepath.Join(dir, "policy.img")
	r = hcs(t, nil, "tar2ext4", "-compat", "-overlay", "-max-disk-size", "128G", "-dm-verity", "-root-hash", hashFile, "-i", in, "-o", img)
	wantCode(t, r, exitOK)
	got, _ := os.ReadFile(hashFile)
	if strings.TrimSpace(string(got)) != want {
		t.Fatalf("root hash %q, hcsshim's %q", got, want)
	}
	if !strings.Contains(r.stdout, want) {
		t.Errorf("text result lacks the root hash: %q", r.stdout)
	}
	// Native mode has the same root hash procedure; veritysetup checks it.
	native := filepath.Join(dir, "native.vhd")
	r = hcs(t, nil, "tar2ext4", "-output", "json", "-i", in, "-o", native, "-vhd", "-dm-verity")
	wantCode(t, r, exitOK)
	res = tar2ext4Result{}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if vs, err := exec.LookPath("veritysetup"); err == nil {
		run(t, vs, "verify", native, native, res.Verity.RootHash, "--hash-offset="+strconv.FormatInt(res.Ext4Size, 10))
	}
	if _, err := hex.DecodeString(res.Verity.RootHash); err != nil || len(res.Verity.RootHash) != 64 {
		t.Errorf("root hash %q", res.Verity.RootHash)
	}
}

func TestTar2Ext4Native(t *testing.T) {
	dir := t.TempDir()
	tb := layerTar(t)
	for name, input := range map[string][]byte{
		"plain.tar": tb,
		"gz.tar":    compressBytes(t, tb, compress.Gzip),
		"zst.tar":   compressBytes(t, tb, compress.Zstd),
	} {
		p := writeFile(t, dir, name, input)
		out := filepath.Join(dir, name+".vhd")
		wantCode(t, hcs(t, nil, "tar2ext4", "-q", "-i", p, "-o", out, "-vhd", "-overlay"), exitOK)
		if e2, err := exec.LookPath("e2fsck"); err == nil {
			run(t, e2, "-fn", out)
		}
		if qi, err := exec.LookPath("qemu-img"); err == nil {
			info := run(t, qi, "info", "--output=json", "--image-opts", "driver=vpc,force_size_calc=current_size,file.filename="+out)
			st, _ := os.Stat(out)
			if !strings.Contains(info, `"virtual-size": `+strconv.FormatInt(st.Size()-512, 10)) {
				t.Errorf("qemu-img sees another size than %d: %s", st.Size()-512, info)
			}
		}
	}
	a, _ := os.ReadFile(filepath.Join(dir, "plain.tar.vhd"))
	for _, n := range []string{"gz.tar.vhd", "zst.tar.vhd"} {
		if b, _ := os.ReadFile(filepath.Join(dir, n)); !bytes.Equal(a, b) {
			t.Errorf("%s differs from the image of the plain tar", n)
		}
	}
	// Standard input, twice: the same bytes.
	out2 := filepath.Join(dir, "stdin.vhd")
	wantCode(t, hcs(t, bytes.NewReader(tb), "tar2ext4", "-q", "-o", out2, "-vhd", "-overlay"), exitOK)
	if b, _ := os.ReadFile(out2); !bytes.Equal(a, b) {
		t.Error("building from standard input gives other bytes")
	}
}

func TestTar2Ext4Errors(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.tar", append(layerTar(t)[:2000], make([]byte, 100)...))
	out := filepath.Join(dir, "out.img")
	wantCode(t, hcs(t, nil, "tar2ext4", "-i", bad, "-o", out), exitInvalidInput)
	wantDirNames(t, dir, "bad.tar")

	// An existing output stays as it was when conversion fails.
	writeFile(t, dir, "out.img", []byte("previous"))
	wantCode(t, hcs(t, nil, "tar2ext4", "-i", bad, "-o", out), exitInvalidInput)
	if b, _ := os.ReadFile(out); string(b) != "previous" {
		t.Errorf("failed conversion changed the output: %q", b)
	}
	wantDirNames(t, dir, "bad.tar", "out.img")

	wantCode(t, hcs(t, nil, "tar2ext4", "-i", bad), exitUsage)
	wantCode(t, hcs(t, nil, "tar2ext4", "-o", out, "extra"), exitUsage)
	wantCode(t, hcs(t, nil, "tar2ext4", "-o", out, "-bogus"), exitUsage)
	wantCode(t, hcs(t, nil, "tar2ext4", "-o", out, "-root-hash", "x"), exitUsage)
	wantCode(t, hcs(t, nil, "tar2ext4", "-o", out, "-only-vhd", "-dm-verity", "-root-hash", "x"), exitUsage)
	wantCode(t, hcs(t, nil, "tar2ext4", "-i", filepath.Join(dir, "missing"), "-o", out), exitNotFound)
	if r := hcs(t, nil, "tar2ext4", "--help"); r.code != exitOK || !strings.Contains(r.stdout, "-convert-slash") {
		t.Errorf("--help: %d %q", r.code, r.stdout)
	}
}

func TestTar2Ext4OnlyVHD(t *testing.T) {
	t2e := peer(t, "tar2ext4")
	dir := t.TempDir()
	in := writeFile(t, dir, "data", bytes.Repeat([]byte("0123456789abcdef"), 4096))
	theirs := filepath.Join(dir, "theirs")
	ours := filepath.Join(dir, "ours")
	run(t, t2e, "-only-vhd", "-i", in, "-o", theirs)
	wantCode(t, hcs(t, nil, "tar2ext4", "-q", "-only-vhd", "-i", in, "-o", ours), exitOK)
	a, _ := os.ReadFile(ours)
	b, _ := os.ReadFile(theirs)
	if !bytes.Equal(mask(a, 0, false, true), mask(b, 0, false, true)) {
		t.Fatal("-only-vhd output differs from hcsshim's")
	}
}
