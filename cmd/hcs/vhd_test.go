package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

	for _, target := range []string{"vhd-dynamic", "vhd-fixed", "vhdx-dynamic", "vhdx-fixed"} {
		disk := filepath.Join(dir, target)
		back := filepath.Join(dir, target+".img")
		r := hcs(t, nil, "-o", "json", "vhd", "convert", "--format", "raw", "--to", target, src, disk)
		wantCode(t, r, exitOK)
		var res struct {
			VirtualSize, BytesWritten int64
			SourceFormat              string
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatal(err)
		}
		if res.SourceFormat != "raw" || res.VirtualSize != int64(len(raw)) || res.BytesWritten >= int64(len(raw))-1<<20 {
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
	if info := vhdInfoJSON(t, filepath.Join(dir, "vhdx-fixed")); info.Type != "fixed" || info.Format != "vhdx" || info.Log != "empty" {
		t.Errorf("fixed VHDX: %+v", info)
	}
	names := []string{"disk.img", "vhd-dynamic", "vhd-dynamic.img", "vhd-fixed", "vhd-fixed.img", "vhdx-dynamic", "vhdx-dynamic.img", "vhdx-fixed", "vhdx-fixed.img"}
	wantDirNames(t, dir, names...)

	// An existing destination is refused, unchanged.
	wantCode(t, hcs(t, nil, "vhd", "convert", "--format", "raw", src, filepath.Join(dir, "vhd-fixed")), exitExists)
	// Options that cannot make a disk are usage errors and leave nothing.
	wantCode(t, hcs(t, nil, "vhd", "convert", "--format", "raw", "--to", "vhdx-differencing", src, filepath.Join(dir, "x")), exitUsage)
	wantCode(t, hcs(t, nil, "vhd", "convert", "--format", "raw", "--to", "vhdx-dynamic", "--block-size", "3M", src, filepath.Join(dir, "x")), exitUsage)
	wantCode(t, hcs(t, nil, "vhd", "convert", "--format", "raw", "--to", "vhdx-differencing", "--parent", filepath.Join(dir, "vhd-dynamic"), src, filepath.Join(dir, "x")), exitUsage)
	wantDirNames(t, dir, names...)

	// 4096-byte sectors: the raw image is padded to a multiple of 4096.
	x4k := filepath.Join(dir, "4k.vhdx")
	wantCode(t, hcs(t, nil, "vhd", "convert", "--format", "raw", "--to", "vhdx-dynamic", "--logical-sector-size", "4096", src, x4k), exitOK)
	if info := vhdInfoJSON(t, x4k); info.SectorSize != 4096 || info.VirtualSize != 5<<20+4096 {
		t.Errorf("4K VHDX: %+v", info)
	}
	wantCode(t, hcs(t, nil, "vhd", "convert", x4k, filepath.Join(dir, "4k.img")), exitOK)
	if got, err := os.ReadFile(filepath.Join(dir, "4k.img")); err != nil || !bytes.Equal(got, append(bytes.Clone(raw), make([]byte, 4096-512)...)) {
		t.Errorf("4K VHDX round trip differs (%v)", err)
	}
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
	r := hcsContext(t, ctx, nil, "vhd", "convert", "--format", "raw", src, filepath.Join(dir, "disk.vhd"))
	wantCode(t, r, exitInterrupted)
	wantDirNames(t, dir, "disk.img")
}

func TestVHDConvertProgress(t *testing.T) {
	dir := t.TempDir()
	src := writeFile(t, dir, "disk.img", bytes.Repeat([]byte{1}, 2<<20))
	var stdout, stderr bytes.Buffer
	a := newApp(strings.NewReader(""), &stdout, &stderr)
	a.forceProgress = true
	if code := a.execute(context.Background(), []string{"vhd", "convert", "--format", "raw", src, filepath.Join(dir, "disk.vhd")}); code != exitOK {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	if !strings.HasSuffix(stderr.String(), "\r\x1b[K") {
		t.Errorf("stderr %q does not end by erasing the progress line", stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "converted ") {
		t.Errorf("stdout %q", stdout.String())
	}
}

// TestVHDXDifferencingCLI: create a base VHDX from a raw image, a differencing
// child holding only what a changed image adds, and read the chain back.
func TestVHDXDifferencingCLI(t *testing.T) {
	dir := t.TempDir()
	img := make([]byte, 8<<20)
	for i := range 3 << 20 {
		img[i] = byte(i*13 + 5)
	}
	src := writeFile(t, dir, "base.img", img)
	base := filepath.Join(dir, "base.vhdx")
	wantCode(t, hcs(t, nil, "vhd", "convert", "--format", "raw", "--to", "vhdx-dynamic", "--block-size", "1M", src, base), exitOK)
	changed := bytes.Clone(img)
	copy(changed[5<<20+1000:], bytes.Repeat([]byte("new"), 1000))
	clear(changed[1<<20 : 2<<20])
	src2 := writeFile(t, dir, "changed.img", changed)
	child := filepath.Join(dir, "child.vhdx")
	r := hcs(t, nil, "-o", "json", "vhd", "convert", "--format", "raw", "--to", "vhdx-differencing", "--parent", base, src2, child)
	wantCode(t, r, exitOK)
	var res struct{ BytesWritten int64 }
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.BytesWritten != 2<<20 {
		t.Errorf("differencing convert wrote %d bytes, want the 2 MiB that differ (%v)", res.BytesWritten, err)
	}
	info := vhdInfoJSON(t, child)
	if info.Type != "differencing" || info.Parent != base || info.ParentUniqueID == "" || info.VirtualSize != 8<<20 {
		t.Errorf("child info %+v", info)
	}
	wantCode(t, hcs(t, nil, "vhd", "check", child), exitOK)
	out := filepath.Join(dir, "out.img")
	wantCode(t, hcs(t, nil, "vhd", "convert", child, out), exitOK)
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, changed) {
		t.Errorf("child reads differently (%v)", err)
	}
	// A third level made with create: resize grows a differencing VHDX past
	// its parent and refuses to shrink it.
	top := filepath.Join(dir, "top.vhdx")
	wantCode(t, hcs(t, nil, "vhd", "create", "--format", "vhdx", "--type", "differencing", "--parent", child, top), exitOK)
	if info := vhdInfoJSON(t, top); info.Parent != child || info.BlockSize != 2<<20 {
		t.Errorf("top info %+v", info)
	}
	wantCode(t, hcs(t, nil, "vhd", "resize", top, "16M"), exitOK)
	if info := vhdInfoJSON(t, top); info.VirtualSize != 16<<20 || info.Type != "differencing" {
		t.Errorf("top after growing: %+v", info)
	}
	wantCode(t, hcs(t, nil, "vhd", "check", top), exitOK)
	wantCode(t, hcs(t, nil, "vhd", "resize", top, "4M"), exitFailure)
}

func TestVHDResizeCLI(t *testing.T) {
	dir := t.TempDir()
	for _, format := range []string{"vhd", "vhdx"} {
		p := filepath.Join(dir, "d."+format)
		wantCode(t, hcs(t, nil, "vhd", "create", "--format", format, "--type", "dynamic", "--size", "4M", p), exitOK)
		r := hcs(t, nil, "-o", "json", "vhd", "resize", p, "64M")
		wantCode(t, r, exitOK)
		var res struct{ OldSize, VirtualSize int64 }
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.OldSize != 4<<20 || res.VirtualSize != 64<<20 {
			t.Errorf("%s: resize result %s (%v)", format, r.stdout, err)
		}
		if info := vhdInfoJSON(t, p); info.VirtualSize != 64<<20 {
			t.Errorf("%s: size after resize %d", format, info.VirtualSize)
		}
		wantCode(t, hcs(t, nil, "vhd", "check", p), exitOK)
		// Shrinking over nothing but zeros is allowed; a size that is not a
		// multiple of the sector size is a usage error.
		wantCode(t, hcs(t, nil, "vhd", "resize", p, "2M"), exitOK)
		wantCode(t, hcs(t, nil, "vhd", "resize", p, "1000"), exitUsage)
		wantCode(t, hcs(t, nil, "vhd", "resize", filepath.Join(dir, "missing"), "1M"), exitNotFound)
	}
	// Shrinking over data is refused and changes nothing.
	p := filepath.Join(dir, "data.vhd")
	wantCode(t, hcs(t, nil, "vhd", "create", "--type", "fixed", "--size", "4M", p), exitOK)
	d, err := vhd.Open(p, false)
	if err != nil {
		t.Fatal(err)
	}
	d.WriteAt([]byte("data"), 3<<20)
	d.Close()
	before, _ := os.ReadFile(p)
	r := hcs(t, nil, "vhd", "resize", p, "1M")
	wantCode(t, r, exitFailure)
	if !strings.Contains(r.stderr, "shrinking would discard data") {
		t.Errorf("stderr %q", r.stderr)
	}
	if after, _ := os.ReadFile(p); !bytes.Equal(before, after) {
		t.Error("refused shrink changed the file")
	}
}

func TestVHDXCreateCLI(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		typ    string
		sector string
	}{{"fixed", "512"}, {"fixed", "4096"}, {"dynamic", "4096"}} {
		p := filepath.Join(dir, tc.typ+tc.sector+".vhdx")
		r := hcs(t, nil, "-o", "json", "vhd", "create", "--format", "vhdx", "--type", tc.typ, "--logical-sector-size", tc.sector, "--block-size", "1M", "--size", "8M", p)
		wantCode(t, r, exitOK)
		info := vhdInfoJSON(t, p)
		if info.Type != tc.typ || info.Format != "vhdx" || fmt.Sprint(info.SectorSize) != tc.sector || info.BlockSize != 1<<20 || info.VirtualSize != 8<<20 {
			t.Errorf("%s: %+v", p, info)
		}
		if tc.typ == "fixed" && info.Allocated < 8<<20 {
			t.Errorf("%s: fixed VHDX with %d bytes allocated", p, info.Allocated)
		}
		wantCode(t, hcs(t, nil, "vhd", "check", p), exitOK)
	}
}

// TestVHDXCheckCopies: a damaged second header or region table is a problem
// (7-Zip refuses such files) even though the disk still reads.
func TestVHDXCheckCopies(t *testing.T) {
	dir := t.TempDir()
	for _, off := range []int64{128<<10 + 100, 256<<10 + 100} {
		p := filepath.Join(dir, fmt.Sprint(off, ".vhdx"))
		wantCode(t, hcs(t, nil, "vhd", "create", "--format", "vhdx", "--size", "8M", p), exitOK)
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte{0x55}, off)
		f.Close()
		r := hcs(t, nil, "vhd", "check", p)
		wantCode(t, r, exitInvalidInput)
		if !strings.Contains(r.stdout, "VHDX") {
			t.Errorf("check output %q", r.stdout)
		}
	}
}

// TestVHDDifferencingConvert: a differencing VHD made by convert holds only the
// MiBs that differ from its parent and reads back as the changed image.
func TestVHDDifferencingConvert(t *testing.T) {
	dir := t.TempDir()
	img := make([]byte, 6<<20)
	for i := range 4 << 20 {
		img[i] = byte(i*7 + 3)
	}
	base := filepath.Join(dir, "base.vhd")
	wantCode(t, hcs(t, nil, "vhd", "convert", "--format", "raw", "--to", "vhd-dynamic", writeFile(t, dir, "base.img", img), base), exitOK)
	changed := bytes.Clone(img)
	copy(changed[2<<20+5:], "changed")
	child := filepath.Join(dir, "child.vhd")
	r := hcs(t, nil, "-o", "json", "vhd", "convert", "--format", "raw", "--to", "vhd-differencing", "--parent", base, writeFile(t, dir, "changed.img", changed), child)
	wantCode(t, r, exitOK)
	var res struct{ BytesWritten int64 }
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.BytesWritten != 1<<20 {
		t.Errorf("wrote %d bytes, want the 1 MiB that differs (%v)", res.BytesWritten, err)
	}
	if info := vhdInfoJSON(t, child); info.Type != "differencing" || info.Parent != base {
		t.Errorf("child info %+v", info)
	}
	out := filepath.Join(dir, "out.img")
	wantCode(t, hcs(t, nil, "vhd", "convert", child, out), exitOK)
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, changed) {
		t.Errorf("child reads differently (%v)", err)
	}
}
