package ocilayer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// sparse10 builds a tar with one PAX sparse 1.0 member (GNU tar --sparse
// --sparse-version=1.0): the map, then the data of each region. archive/tar's writer
// refuses GNU.sparse records, so look-alike keys are renamed in the record block.
func sparse10(t *testing.T, name string, realSize int64, regions [][2]int64, fill byte) []byte {
	t.Helper()
	var m strings.Builder
	fmt.Fprintf(&m, "%d\n", len(regions))
	var data int64
	for _, r := range regions {
		fmt.Fprintf(&m, "%d\n%d\n", r[0], r[1])
		data += r[1]
	}
	mapBlock := make([]byte, (m.Len()+511)&^511)
	copy(mapBlock, m.String())
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: "GNUSparseFile.0/" + name, Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX,
		Size: int64(len(mapBlock)) + data, PAXRecords: map[string]string{
			"XNU.sparse.major": "1", "XNU.sparse.minor": "0", "XNU.sparse.name": name,
			"XNU.sparse.realsize": fmt.Sprint(realSize),
		}}
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	tw.Write(mapBlock)
	tw.Write(bytes.Repeat([]byte{fill}, int(data)))
	tw.Close()
	return bytes.ReplaceAll(buf.Bytes(), []byte("XNU.sparse."), []byte("GNU.sparse."))
}

// Issue 10: ocilayer apply refused PAX sparse 1.0 members that tar2ext4 reads; they
// apply with their holes kept as holes.
func TestApplySparse10(t *testing.T) {
	const size = 64 << 20
	b := sparse10(t, "big", size, [][2]int64{{4096, 4096}, {size - 8192, 8192}}, 'x')
	root := t.TempDir()
	if _, err := Apply(context.Background(), root, bytes.NewReader(b), WithoutOwnership()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	p := filepath.Join(root, "big")
	got, err := os.ReadFile(p)
	if err != nil || len(got) != size {
		t.Fatalf("big: %d bytes, %v; want %d", len(got), err, size)
	}
	want := make([]byte, size)
	copy(want[4096:8192], bytes.Repeat([]byte{'x'}, 4096))
	copy(want[size-8192:], bytes.Repeat([]byte{'x'}, 8192))
	if !bytes.Equal(got, want) {
		t.Error("content differs from the sparse map")
	}
	var st unix.Stat_t
	unix.Stat(p, &st)
	if st.Blocks*512 > 4<<20 {
		t.Errorf("a 64 MiB file with 12 KiB of data uses %d bytes: holes were written", st.Blocks*512)
	}
	// The declared size is bounded.
	_, err = Apply(context.Background(), t.TempDir(), bytes.NewReader(sparse10(t, "huge", 1<<40, [][2]int64{{0, 1}}, 'x')), WithoutOwnership())
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("Apply of a 1 TiB sparse file: %v; want ErrTooLarge", err)
	}
	_, err = Apply(context.Background(), t.TempDir(), bytes.NewReader(b), WithoutOwnership(), WithMaxFileSize(1<<20))
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("Apply over WithMaxFileSize: %v; want ErrTooLarge", err)
	}
}

// Issue 10: after a failure, apply left the entries before the bad one in the
// target. ApplyNew is all or nothing.
func TestApplyNewAllOrNothing(t *testing.T) {
	top := t.TempDir()
	target := filepath.Join(top, "root")
	bad := layer(t, file("a", "a"), dir("d/"), file("d/b", "b"), hardlink("l", "../x"))
	_, err := ApplyNew(context.Background(), target, bytes.NewReader(bad), WithoutOwnership())
	var ee *EntryError
	if !errors.Is(err, ErrInsecurePath) || !errors.As(err, &ee) || ee.Entry != "l" || ee.Offset <= 0 {
		t.Fatalf("ApplyNew: %v; want an *EntryError naming l at its offset", err)
	}
	if ents, _ := os.ReadDir(top); len(ents) != 0 {
		t.Fatalf("failed ApplyNew left %v", ents)
	}
	// A staging directory of a dead process is removed by the next call.
	os.Mkdir(filepath.Join(top, stagingPrefix+"999999999-x"), 0o755)
	good := layer(t, file("a", "a"), dir("d/"), file("d/b", "b"), hardlink("l", "a"))
	if _, err := ApplyNew(context.Background(), target, bytes.NewReader(good), WithoutOwnership()); err != nil {
		t.Fatalf("ApplyNew: %v", err)
	}
	if ents, _ := os.ReadDir(top); len(ents) != 1 || ents[0].Name() != "root" {
		t.Errorf("after ApplyNew the folder holds %v; want only root", ents)
	}
	wantSameFile(t, filepath.Join(target, "a"), filepath.Join(target, "l"))
	// The target now exists: a second ApplyNew refuses it and changes nothing.
	if _, err := ApplyNew(context.Background(), target, bytes.NewReader(good), WithoutOwnership()); !errors.Is(err, ErrExist) {
		t.Errorf("ApplyNew onto an existing tree: %v; want ErrExist", err)
	}
	// Into a new tree, a hard link must name an entry of the layer.
	_, err = ApplyNew(context.Background(), filepath.Join(top, "other"), bytes.NewReader(layer(t, hardlink("l", "etc/passwd"))), WithoutOwnership())
	if !errors.Is(err, ErrInvalidEntry) {
		t.Errorf("ApplyNew of a link to a missing target: %v; want ErrInvalidEntry", err)
	}
}

// Issue 10: diff turned a hard link to a symlink into two symlinks, and dropped an
// opaque marker on the layer root.
func TestDiffLinkedSymlinkAndOpaqueRoot(t *testing.T) {
	requireRoot(t)
	upper := t.TempDir()
	if err := os.Symlink("target", filepath.Join(upper, "s1")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Linkat(unix.AT_FDCWD, filepath.Join(upper, "s1"), unix.AT_FDCWD, filepath.Join(upper, "s2"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(upper, "f1"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Link(filepath.Join(upper, "f1"), filepath.Join(upper, "f2"))
	if err := unix.Setxattr(upper, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Diff(context.Background(), &out, upper); err != nil {
		t.Fatal(err)
	}
	items := readTar(t, out.Bytes())
	want := []tarItem{
		{Name: whiteoutOpaque, Type: tar.TypeReg},
		{Name: "f1", Type: tar.TypeFifo, Mode: 0o644},
		{Name: "f2", Type: tar.TypeLink, Linkname: "f1", Mode: 0o644},
		{Name: "s1", Type: tar.TypeSymlink, Linkname: "target", Mode: 0o777},
		{Name: "s2", Type: tar.TypeLink, Linkname: "s1", Mode: 0o777},
	}
	if len(items) != len(want) {
		t.Fatalf("Diff wrote %+v; want %+v", items, want)
	}
	for i := range want {
		if items[i].Name != want[i].Name || items[i].Type != want[i].Type || items[i].Linkname != want[i].Linkname {
			t.Errorf("entry %d = %+v; want %+v", i, items[i], want[i])
		}
	}
	// Applied again, the two names are one symlink.
	root := t.TempDir()
	if _, err := Apply(context.Background(), root, bytes.NewReader(out.Bytes())); err != nil {
		t.Fatal(err)
	}
	wantSameFile(t, filepath.Join(root, "s1"), filepath.Join(root, "s2"))
}

// A file of the upper directory whose name would read as a whiteout cannot be
// stored in a layer: Diff says so instead of writing a removal.
func TestDiffWhiteoutNamedFile(t *testing.T) {
	upper := t.TempDir()
	os.WriteFile(filepath.Join(upper, ".wh.precious"), []byte("data"), 0o644)
	err := Diff(context.Background(), &bytes.Buffer{}, upper)
	var ee *EntryError
	if !errors.Is(err, ErrUnsupported) || !errors.As(err, &ee) || ee.Entry != ".wh.precious" {
		t.Errorf("Diff: %v; want ErrUnsupported naming .wh.precious", err)
	}
}
