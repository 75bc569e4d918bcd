package ext4_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/ext4"
)

// peerTar2ext4 returns hcsshim's tar2ext4 (v0.13.0), installed into bin/peers by
// scripts/install-go-peers.sh (make deps), or skips.
func peerTar2ext4(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("HCS_PEER_TAR2EXT4"); p != "" {
		return p
	}
	p, err := filepath.Abs("../../bin/peers/tar2ext4")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("hcsshim tar2ext4 not installed at %s: run scripts/install-go-peers.sh (make test does)", p)
	}
	return p
}

// compatEntries are entries hcsshim's tar2ext4 accepts: richEntries without the
// replacements it refuses.
func compatEntries() []entry {
	var out []entry
	for _, e := range richEntries() {
		if strings.HasPrefix(e.hdr.Name, "dup/") {
			continue
		}
		out = append(out, e)
	}
	return append(out,
		// Replacements compactext4 does accept.
		dir("etc/", 0o700),
		file("dup/empty", 0o644, nil),
		file("dup/empty", 0o600, nil),
		symlink("dup/link", "a"),
		symlink("dup/link", "b"),
		file("implied2/x/y", 0o644, []byte("y")),
		dir("implied2/", 0o750),
	)
}

func whiteoutEntries() []entry {
	d := dir("a/", 0o755)
	d.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.a": "1", "SCHILY.xattr.user.big": strings.Repeat("b", 500)}
	return []entry{
		d,
		file("a/.wh..wh..opq", 0o644, nil),
		file("a/kept", 0o644, []byte("kept")),
		file(".wh.gone", 0o644, nil),
		file("b/c/.wh.d", 0o644, nil),
		file("b/c/.wh..wh..opq", 0o644, nil),
		file("x/.wh..wh..opq", 0o644, nil),
	}
}

func inlineDupEntries() []entry {
	return []entry{
		file("f", 0o644, []byte("first copy")),
		file("f", 0o600, []byte("second, longer copy of the small file, past sixty bytes of i_block...")),
		file("g", 0o644, randBytes(1, 100)),
		file("g", 0o644, randBytes(2, 30)),
	}
}

// compareWithPeer builds the tar with compat mode and with hcsshim's tar2ext4 and
// requires identical bytes.
func compareWithPeer(t *testing.T, peer string, tarPath string, flags []string, opts []ext4.Option) {
	t.Helper()
	dir := t.TempDir()
	theirs := filepath.Join(dir, "theirs.img")
	cmd := exec.Command(peer, append([]string{"-i", tarPath, "-o", theirs}, flags...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hcsshim tar2ext4 %v: %v\n%s", flags, err, out)
	}
	in, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	ours := filepath.Join(dir, "ours.img")
	f, err := os.Create(ours)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := ext4.Build(context.Background(), f, in, append(opts, ext4.WithHcsshimCompat())...); err != nil {
		t.Fatalf("Build: %v", err)
	}
	a, _ := os.ReadFile(ours)
	b, _ := os.ReadFile(theirs)
	if !bytes.Equal(a, b) {
		n := min(len(a), len(b))
		i := 0
		for i < n && a[i] == b[i] {
			i++
		}
		t.Fatalf("images differ: ours %d bytes, hcsshim's %d, first difference at byte %d (block %d)", len(a), len(b), i, i/4096)
	}
	// compactext4's only e2fsck complaint is the inode bitmap padding.
	out, code := e2fsck(t, ours)
	if code != 0 && (code != 4 || !strings.Contains(out, "Padding at end of inode bitmap is not set")) {
		t.Fatalf("e2fsck exit %d:\n%s", code, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "Fix? no") && !strings.Contains(line, "Padding at end of inode bitmap") {
			t.Errorf("unexpected e2fsck complaint: %s", line)
		}
	}
}

func TestCompatByteIdentical(t *testing.T) {
	peer := peerTar2ext4(t)
	tars := map[string][]byte{
		"rich":      makeTar(t, compatEntries()),
		"whiteouts": makeTar(t, whiteoutEntries()),
		"inlinedup": makeTar(t, inlineDupEntries()),
		// hcsshim turns a PAX global header into a file named after it.
		"global": makeTar(t, []entry{
			{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "abc"}}},
			file("a", 0o644, []byte("a")),
		}),
	}
	variants := []struct {
		name  string
		flags []string
		opts  []ext4.Option
	}{
		{"plain", nil, nil},
		{"inline", []string{"-inline"}, []ext4.Option{ext4.WithInlineData()}},
		{"overlay", []string{"-overlay"}, []ext4.Option{ext4.WithConvertWhiteouts()}},
		{"overlay-inline", []string{"-overlay", "-inline"}, []ext4.Option{ext4.WithConvertWhiteouts(), ext4.WithInlineData()}},
	}
	for tn, tb := range tars {
		p := writeTar(t, tb)
		for _, v := range variants {
			if tn == "inlinedup" && !strings.Contains(v.name, "inline") {
				continue // hcsshim refuses a second copy of a file with data
			}
			t.Run(tn+"/"+v.name, func(t *testing.T) { compareWithPeer(t, peer, p, v.flags, v.opts) })
		}
	}
}

// TestCompatRealTree compares on a tar of a real directory tree (GNU tar's output).
func TestCompatRealTree(t *testing.T) {
	peer := peerTar2ext4(t)
	if testing.Short() {
		t.Skip("builds images of a real tree; skipped with -short")
	}
	gnutar, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("GNU tar not installed")
	}
	p := filepath.Join(t.TempDir(), "tree.tar")
	cmd := exec.Command(gnutar, "--format=posix", "--xattrs", "-C", "/usr", "-cf", p, "share/doc", "bin")
	if out, err := cmd.CombinedOutput(); err != nil && !bytes.Contains(out, []byte("file changed")) {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	compareWithPeer(t, peer, p, nil, nil)
	compareWithPeer(t, peer, p, []string{"-inline"}, []ext4.Option{ext4.WithInlineData()})
}

// TestCompatRefusals checks that compatibility mode fails where hcsshim's does.
func TestCompatRefusals(t *testing.T) {
	peer := peerTar2ext4(t)
	for name, entries := range map[string][]entry{
		"dup-data":    {file("f", 0o644, randBytes(1, 5000)), file("f", 0o644, randBytes(2, 5000))},
		"file-on-dir": {dir("d/", 0o755), file("d", 0o644, nil)},
		"dir-on-file": {file("d", 0o644, nil), dir("d/", 0o755)},
		"missing":     {hardlink("l", "none")},
	} {
		t.Run(name, func(t *testing.T) {
			p := writeTar(t, makeTar(t, entries))
			out := filepath.Join(t.TempDir(), "img")
			if err := exec.Command(peer, "-i", p, "-o", out).Run(); err == nil {
				t.Fatalf("hcsshim accepts %s", name)
			}
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			in, _ := os.Open(p)
			defer in.Close()
			if _, err := ext4.Build(context.Background(), f, in, ext4.WithHcsshimCompat()); err == nil {
				t.Fatalf("compat mode accepts %s", name)
			}
		})
	}
}

// patternReader yields n bytes of a non-zero pattern.
type patternReader struct{ n int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.n)]
	for i := range b {
		b[i] = byte(i%251) + 1
	}
	p.n -= int64(len(b))
	return len(b), nil
}

// TestLargeFileExtentTree covers a contiguous file of more than four maximal extents
// (an extent tree of depth 1), in both modes, against hcsshim and e2fsck.
func TestLargeFileExtentTree(t *testing.T) {
	if testing.Short() {
		t.Skip("writes images of 600 MiB; skipped with -short")
	}
	const size = 5*128<<20 + 12345 // five extents of 32768 blocks and a bit
	p := filepath.Join(t.TempDir(), "large.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "large", Mode: 0o644, Size: size}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(tw, &patternReader{size}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Run("native", func(t *testing.T) {
		in, _ := os.Open(p)
		defer in.Close()
		img := filepath.Join(t.TempDir(), "img")
		out, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		if _, err := ext4.Build(context.Background(), out, in); err != nil {
			t.Fatal(err)
		}
		requireClean(t, img)
	})
	t.Run("compat", func(t *testing.T) { compareWithPeer(t, peerTar2ext4(t), p, nil, nil) })
}
