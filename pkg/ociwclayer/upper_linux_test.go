package ociwclayer

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// TestExportUpperRoundTrip exports an upper directory (made by hand, as an
// overlayfs union over a base leaves it), imports the diff as a child of the
// base, and exports the child again: the bytes must be the same, and the
// diff must hold the changes and nothing else.
func TestExportUpperRoundTrip(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: whiteouts are device files and opaque markers trusted extended attributes")
	}
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	importTar(t, genTar(t, sampletar.Options{Seed: 11, Files: 60, Bytes: 256 << 10, PerDir: 8}), base, nil)

	// Pick a file to change, one to delete and a directory to replace.
	var files, dirs []string
	r, err := winlayer.NewReader(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case !strings.HasPrefix(e.Name, "Files/") || e.LinkTarget != "" || len(e.Reparse) > 0:
		case e.IsDir():
			dirs = append(dirs, e.Name)
		default:
			files = append(files, e.Name)
		}
	}
	r.Close()
	if len(files) < 3 || len(dirs) < 2 {
		t.Fatalf("sample base too small: %d files, %d directories", len(files), len(dirs))
	}
	upper := filepath.Join(dir, "volume", "Files")
	rel := func(n string) string { return filepath.Join(upper, strings.TrimPrefix(n, "Files/")) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	modified, deleted, replaced := files[0], files[len(files)-1], dirs[len(dirs)-1]
	for _, n := range []string{modified, deleted, replaced + "/x"} {
		must(os.MkdirAll(filepath.Dir(rel(n)), 0o755))
	}
	must(os.WriteFile(rel(modified), []byte("changed through the union"), 0o644))
	must(unix.Mknod(rel(deleted), unix.S_IFCHR, 0))
	must(unix.Setxattr(rel(replaced), "trusted.overlay.opaque", []byte("y"), 0))
	must(os.WriteFile(rel(replaced+"/x"), []byte("new"), 0o644))
	must(os.WriteFile(filepath.Join(upper, "new.txt"), bytes.Repeat([]byte("n"), 3<<20), 0o644))
	must(os.Link(filepath.Join(upper, "new.txt"), filepath.Join(upper, "new-link.txt")))
	must(os.Symlink(strings.TrimPrefix(replaced, "Files/"), filepath.Join(upper, "dir-link")))
	must(os.Symlink("new.txt", filepath.Join(upper, "file-link")))

	var diff bytes.Buffer
	if err := ExportUpperToTar(ctx, &diff, upper, []string{base}); err != nil {
		t.Fatal(err)
	}
	child := filepath.Join(dir, "child")
	importTar(t, diff.Bytes(), child, []string{base})
	again := exportTar(t, child)
	if !bytes.Equal(diff.Bytes(), again) {
		t.Fatalf("export of the imported diff differs: %d bytes, then %d", diff.Len(), len(again))
	}
	got, attrs := map[string]byte{}, map[string]string{}
	tr := tar.NewReader(bytes.NewReader(diff.Bytes()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		got[h.Name] = h.Typeflag
		attrs[h.Name] = h.PAXRecords["MSWINDOWS.fileattr"]
	}
	// A link to a directory is a directory link, one to a file a file link.
	if attrs["Files/dir-link"] != "1040" || attrs["Files/file-link"] != "1056" {
		t.Errorf("link attributes: dir-link %s, file-link %s; want 1040 (DIRECTORY|REPARSE_POINT) and 1056 (ARCHIVE|REPARSE_POINT)", attrs["Files/dir-link"], attrs["Files/file-link"])
	}
	wh := func(n string) string { return filepath.Dir(n) + "/.wh." + filepath.Base(n) }
	for _, n := range []string{modified, wh(deleted), replaced, replaced + "/x", "Files/new.txt"} {
		if _, ok := got[n]; !ok {
			t.Errorf("diff lacks %s; has %v", n, got)
		}
	}
	// new-link.txt sorts first, so new.txt is the link.
	if got["Files/new.txt"] != tar.TypeLink || got["Files/new-link.txt"] != tar.TypeReg {
		t.Errorf("Files/new.txt: type %q, want a hard link to new-link.txt", got["Files/new.txt"])
	}
	// Everything the base had in the replaced directory is removed.
	removedBelow := 0
	for n := range got {
		if strings.HasPrefix(n, replaced+"/.wh.") {
			removedBelow++
		}
	}
	if removedBelow == 0 {
		t.Errorf("the opaque directory %s removes nothing of the base's", replaced)
	}
}
