package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/vhd"
)

// vhdInfoJSON runs vhd info -o json on path.
func vhdInfoJSON(t *testing.T, path string) vhdInfo {
	t.Helper()
	r := hcs(t, nil, "-o", "json", "vhd", "info", path)
	wantCode(t, r, exitOK)
	var info vhdInfo
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		t.Fatalf("info output %q: %v", r.stdout, err)
	}
	return info
}

func TestVHDCreateInfo(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		args   []string
		format string
		typ    string
		block  int64
	}{
		{"fixed.vhd", []string{"--type", "fixed", "--size", "3M"}, "vhd", "fixed", 0},
		{"dynamic.vhd", []string{"--size", "64M"}, "vhd", "dynamic", 2 << 20},
		{"small-blocks.vhd", []string{"--size", "64MiB", "--block-size", "512K"}, "vhd", "dynamic", 512 << 10},
		{"dynamic.vhdx", []string{"--format", "vhdx", "--size", "64M"}, "vhdx", "dynamic", 32 << 20},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, tt.name)
		wantCode(t, hcs(t, nil, append(append([]string{"vhd", "create"}, tt.args...), path)...), exitOK)
		info := vhdInfoJSON(t, path)
		size := int64(64 << 20)
		if tt.typ == "fixed" {
			size = 3 << 20
		}
		if info.Format != tt.format || info.Type != tt.typ || info.VirtualSize != size || info.BlockSize != tt.block || info.UniqueID == "" || info.Creator == "" || info.File != path {
			t.Errorf("%s: info %+v", tt.name, info)
		}
		if info.Parent != "" || info.ParentUniqueID != "" {
			t.Errorf("%s: parent in %+v", tt.name, info)
		}
		if info.Allocated <= 0 || info.Allocated > 8<<20 {
			t.Errorf("%s: %d bytes allocated", tt.name, info.Allocated)
		}
		if tt.format == "vhd" && info.Creator != "win 10.0" {
			t.Errorf("%s: creator %q", tt.name, info.Creator)
		}
		wantCode(t, hcs(t, nil, "vhd", "check", path), exitOK)
	}
	r := hcs(t, nil, "vhd", "info", filepath.Join(dir, "dynamic.vhd"))
	wantCode(t, r, exitOK)
	for _, want := range []string{"format:        vhd", "type:          dynamic", "virtual size:  67108864 (64 MiB)", "block size:    2097152 (2 MiB)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("info text lacks %q:\n%s", want, r.stdout)
		}
	}

	if _, err := exec.LookPath("qemu-img"); err == nil {
		out, err := exec.Command("qemu-img", "info", "--output=json", "-f", "vpc", filepath.Join(dir, "dynamic.vhd")).Output()
		if err != nil {
			t.Fatalf("qemu-img info: %v", err)
		}
		var q struct {
			VirtualSize int64 `json:"virtual-size"`
		}
		if err := json.Unmarshal(out, &q); err != nil {
			t.Fatal(err)
		}
		if q.VirtualSize != 64<<20 {
			t.Errorf("qemu-img sees %d bytes, want %d", q.VirtualSize, 64<<20)
		}
	}
}

func TestVHDDifferencing(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.vhd")
	child := filepath.Join(dir, "child.vhd")
	wantCode(t, hcs(t, nil, "vhd", "create", "--size", "8M", base), exitOK)
	wantCode(t, hcs(t, nil, "vhd", "create", "--type", "differencing", "--parent", base, child), exitOK)
	parent := vhdInfoJSON(t, base)
	info := vhdInfoJSON(t, child)
	if info.Type != "differencing" || info.VirtualSize != 8<<20 || info.Parent != base || info.ParentUniqueID != parent.UniqueID || info.UniqueID == parent.UniqueID {
		t.Errorf("child info %+v, parent %+v", info, parent)
	}
	wantCode(t, hcs(t, nil, "vhd", "check", child), exitOK)

	// A parent replaced by another disk makes the chain corrupt: exit code 3.
	if err := os.Rename(base, base+".orig"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, hcs(t, nil, "vhd", "create", "--size", "8M", base), exitOK)
	wantCode(t, hcs(t, nil, "vhd", "check", child), exitInvalidInput)
	wantCode(t, hcs(t, nil, "vhd", "info", child), exitInvalidInput)
	if err := os.Rename(base+".orig", base); err != nil {
		t.Fatal(err)
	}

	// Without its parent the child cannot be read: exit code 5.
	if err := os.Rename(base, base+".away"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, hcs(t, nil, "vhd", "check", child), exitNotFound)
}

func TestVHDConvertRoundTrip(t *testing.T) {
	dir := t.TempDir()
	// 5 MiB + 512: data, a zero region of whole chunks, data, and a short tail.
	raw := make([]byte, 5<<20+512)
	for i := range 1 << 20 {
		raw[i] = byte(i*7 + 1)
	}
	copy(raw[4<<20+100:], bytes.Repeat([]byte("hostcompute"), 1000))
	raw[len(raw)-1] = 0xAA
	src := writeFile(t, dir, "disk.img", raw)

	for _, target := range []string{"vhd-dynamic", "vhd-fixed", "vhdx-dynamic"} {
		disk := filepath.Join(dir, target)
		back := filepath.Join(dir, target+".img")
		r := hcs(t, nil, "-o", "json", "vhd", "convert", "--to", target, src, disk)
		wantCode(t, r, exitOK)
		var res struct {
			VirtualSize, BytesWritten int64
			SourceFormat              string
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatal(err)
		}
		if res.SourceFormat != "raw" || res.VirtualSize != int64(len(raw)) || res.BytesWritten >= int64(len(raw)) {
			t.Errorf("%s: convert result %s", target, r.stdout)
		}
		wantCode(t, hcs(t, nil, "vhd", "check", disk), exitOK)
		// Without --to a disk becomes raw.
		wantCode(t, hcs(t, nil, "vhd", "convert", disk, back), exitOK)
		got, err := os.ReadFile(back)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, raw) {
			t.Errorf("%s: round trip differs (%d bytes, want %d)", target, len(got), len(raw))
		}
	}
	if info := vhdInfoJSON(t, filepath.Join(dir, "vhd-dynamic")); info.Type != "dynamic" || info.Allocated > 4<<20+64<<10 {
		t.Errorf("dynamic disk: %+v", info)
	}
	if info := vhdInfoJSON(t, filepath.Join(dir, "vhdx-dynamic")); info.Allocated > 4<<20+4<<20 {
		t.Errorf("dynamic VHDX of 2 MiB of data and 4 MiB of metadata: %+v", info)
	}
	wantDirNames(t, dir, "disk.img", "vhd-dynamic", "vhd-dynamic.img", "vhd-fixed", "vhd-fixed.img", "vhdx-dynamic", "vhdx-dynamic.img")

	// An existing destination is refused, unchanged.
	wantCode(t, hcs(t, nil, "vhd", "convert", src, filepath.Join(dir, "vhd-fixed")), exitExists)
	// A target format that cannot be made is a usage error and leaves nothing.
	wantCode(t, hcs(t, nil, "vhd", "convert", "--to", "vhdx-fixed", src, filepath.Join(dir, "x")), exitUsage)
	wantDirNames(t, dir, "disk.img", "vhd-dynamic", "vhd-dynamic.img", "vhd-fixed", "vhd-fixed.img", "vhdx-dynamic", "vhdx-dynamic.img")
}

func TestVHDCheckCorrupt(t *testing.T) {
	dir := t.TempDir()
	for _, typ := range []string{"fixed", "dynamic"} {
		path := filepath.Join(dir, typ+".vhd")
		wantCode(t, hcs(t, nil, "vhd", "create", "--type", typ, "--size", "2M", path), exitOK)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-vhd.FooterSize+40] ^= 0xFF // current size, so the checksum fails
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		wantCode(t, hcs(t, nil, "vhd", "check", path), exitInvalidInput)
		wantCode(t, hcs(t, nil, "vhd", "info", path), exitInvalidInput)
	}
	wantCode(t, hcs(t, nil, "vhd", "check", filepath.Join(dir, "missing.vhd")), exitNotFound)
	wantCode(t, hcs(t, nil, "vhd", "check", writeFile(t, dir, "raw.img", make([]byte, 4096))), exitInvalidInput)
}

func TestVHDErrors(t *testing.T) {
	dir := t.TempDir()
	existing := writeFile(t, dir, "exists.vhd", []byte("x"))
	wantCode(t, hcs(t, nil, "vhd", "create", "--size", "1M", existing), exitExists)
	for _, args := range [][]string{
		{"vhd", "create", filepath.Join(dir, "a.vhd")},                                 // no size
		{"vhd", "create", "--size", "1X", filepath.Join(dir, "a.vhd")},                 // bad size
		{"vhd", "create", "--type", "sparse", "--size", "1M", filepath.Join(dir, "a")}, // bad type
		{"vhd", "create", "--type", "differencing", filepath.Join(dir, "a.vhd")},       // no parent
		{"vhd", "create", "--format", "vhdx", "--logical-sector-size", "1024", "--size", "1M", filepath.Join(dir, "a")},
		{"vhd", "create", "--logical-sector-size", "4096", "--size", "1M", filepath.Join(dir, "a")}, // 4K VHD
		{"vhd", "create", "--size", "1M", "--block-size", "3K", filepath.Join(dir, "a")},            // not a power of two
		{"vhd", "create", "--size", "1000", filepath.Join(dir, "a")},                                // not a multiple of 512
		{"vhd", "convert", "--to", "qcow2", existing, filepath.Join(dir, "b")},
		{"vhd", "convert", existing},
		{"vhd", "info"},
		{"vhd", "check", "--bogus", existing},
	} {
		wantCode(t, hcs(t, nil, args...), exitUsage)
	}
	wantDirNames(t, dir, "exists.vhd")
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "4K": 4 << 10, "64M": 64 << 20, "2g": 2 << 30, "1T": 1 << 40, "8MiB": 8 << 20, "16KB": 16 << 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1", "1.5G", "1P", "99999999999T"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}

func TestVHDConvertDifferencing(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.vhd")
	child := filepath.Join(dir, "child.vhd")
	want := make([]byte, 4<<20)
	copy(want[100:], bytes.Repeat([]byte("base"), 300000))
	d, err := vhd.Create(base, vhd.CreateOptions{Type: vhd.Dynamic, Size: int64(len(want))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	wantCode(t, hcs(t, nil, "vhd", "create", "--type", "differencing", "--parent", base, child), exitOK)
	if d, err = vhd.Open(child, false); err != nil {
		t.Fatal(err)
	}
	patch := bytes.Repeat([]byte("child"), 1000)
	copy(want[3<<20+7*512:], patch)
	if _, err := d.WriteAt(patch, 3<<20+7*512); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.img")
	wantCode(t, hcs(t, nil, "vhd", "convert", "--to", "raw", child, out), exitOK)
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, want) {
		t.Errorf("raw image of the differencing disk differs (%v)", err)
	}
}

func TestVHDConvertInterrupted(t *testing.T) {
	dir := t.TempDir()
	src := writeFile(t, dir, "disk.img", bytes.Repeat([]byte{1}, 2<<20))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := hcsContext(t, ctx, nil, "vhd", "convert", src, filepath.Join(dir, "disk.vhd"))
	wantCode(t, r, exitInterrupted)
	wantDirNames(t, dir, "disk.img")
}

func TestVHDConvertProgress(t *testing.T) {
	dir := t.TempDir()
	src := writeFile(t, dir, "disk.img", bytes.Repeat([]byte{1}, 2<<20))
	var stdout, stderr bytes.Buffer
	a := newApp(strings.NewReader(""), &stdout, &stderr)
	a.forceProgress = true
	if code := a.execute(context.Background(), []string{"vhd", "convert", src, filepath.Join(dir, "disk.vhd")}); code != exitOK {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	if !strings.HasSuffix(stderr.String(), "\r\x1b[K") {
		t.Errorf("stderr %q does not end by erasing the progress line", stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "converted ") {
		t.Errorf("stdout %q", stdout.String())
	}
}
