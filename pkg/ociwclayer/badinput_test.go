package ociwclayer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// tarEnt is one entry of a hand-made archive.
type tarEnt struct {
	hdr  tar.Header
	body string
}

func file(name, body string) tarEnt {
	return tarEnt{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o100000, Size: int64(len(body)), Format: tar.FormatPAX,
		PAXRecords: map[string]string{"MSWINDOWS.fileattr": "32"}}, body: body}
}

func dirEnt(name string) tarEnt {
	return tarEnt{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o40000, Format: tar.FormatPAX,
		PAXRecords: map[string]string{"MSWINDOWS.fileattr": "16"}}}
}

func symlink(name, target string) tarEnt {
	return tarEnt{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o120000, Format: tar.FormatPAX,
		PAXRecords: map[string]string{"MSWINDOWS.fileattr": "1056"}}}
}

func hardlink(name, target string) tarEnt {
	return tarEnt{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o644}}
}

func withPAX(e tarEnt, k, v string) tarEnt {
	e.hdr.PAXRecords = map[string]string{k: v}
	if k != "MSWINDOWS.fileattr" {
		e.hdr.PAXRecords["MSWINDOWS.fileattr"] = "32"
	}
	return e
}

func buildTar(t testing.TB, ents ...tarEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 123456700)
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing %s: %v", h.Name, err)
		}
		if e.body != "" {
			tw.Write([]byte(e.body))
		}
	}
	// Close may fail for deliberately odd headers (sizes without bodies); the bytes so far
	// are what the test wants.
	tw.Close()
	return buf.Bytes()
}

// rawSizeTar writes a single header that claims size bytes and then ends.
func rawSizeTar(t *testing.T, name string, size int64) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: size, Mode: 0o100000, Format: tar.FormatPAX,
		PAXRecords: map[string]string{"MSWINDOWS.fileattr": "32"}}); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	return buf.Bytes()
}

func TestBadInput(t *testing.T) {
	valid := genTar(t, sampletar.Options{Seed: 9, Files: 20, Bytes: 64 << 10})
	cases := []struct {
		name    string
		tar     []byte
		parents bool
		want    error
		entry   string // the entry the error must name
	}{
		{"dotdot", buildTar(t, dirEnt("Files"), file("../escape", "x")), false, winlayer.ErrInsecurePath, "../escape"},
		{"dotdot inside", buildTar(t, dirEnt("Files"), file("Files/../../escape", "x")), false, winlayer.ErrInsecurePath, "Files/../../escape"},
		{"absolute", buildTar(t, file("/Files/abs", "x")), false, winlayer.ErrInsecurePath, "/Files/abs"},
		{"drive letter", buildTar(t, file(`C:\Files\abs`, "x")), false, winlayer.ErrInsecurePath, `C:\Files\abs`},
		{"backslash dotdot", buildTar(t, file(`Files\..\..\escape`, "x")), false, winlayer.ErrInsecurePath, `Files\..\..\escape`},
		{"outside roots", buildTar(t, file("Other/x", "x")), false, winlayer.ErrOutsideLayer, "Other/x"},
		{"utilityvm not files", buildTar(t, file("UtilityVM/x", "x")), false, winlayer.ErrOutsideLayer, "UtilityVM/x"},
		{"reserved char", buildTar(t, file("Files/a<b", "x")), false, winlayer.ErrInvalidName, "Files/a<b"},
		{"question mark", buildTar(t, file("Files/a?", "x")), false, winlayer.ErrInvalidName, "Files/a?"},
		{"pipe", buildTar(t, file("Files/a|b", "x")), false, winlayer.ErrInvalidName, "Files/a|b"},
		{"trailing dot", buildTar(t, file("Files/name.", "x")), false, winlayer.ErrInvalidName, "Files/name."},
		{"trailing space", buildTar(t, file("Files/name ", "x")), false, winlayer.ErrInvalidName, "Files/name "},
		{"device name", buildTar(t, file("Files/CON", "x")), false, winlayer.ErrInvalidName, "Files/CON"},
		{"device name ext", buildTar(t, file("Files/dir/lpt1.txt", "x")), false, winlayer.ErrInvalidName, "Files/dir/lpt1.txt"},
		{"control char", buildTar(t, file("Files/a\x01b", "x")), false, winlayer.ErrInvalidName, "Files/a\x01b"},
		{"case collision", buildTar(t, file("Files/Readme.TXT", "a"), file("Files/readme.txt", "b")), false, winlayer.ErrCaseCollision, "Files/readme.txt"},
		{"case collision dir", buildTar(t, file("Files/Dir/a", "a"), file("Files/DIR/b", "b")), false, winlayer.ErrCaseCollision, "Files/DIR/b"},
		{"symlink escape", buildTar(t, dirEnt("Files"), symlink("Files/link", `..\..\outside`), file("Files/link/planted", "x")), false, winlayer.ErrParentNotDirectory, "Files/link/planted"},
		{"symlink escape abs", buildTar(t, symlink("Files/link", `/tmp`), file("Files/link/planted", "x")), false, winlayer.ErrParentNotDirectory, "Files/link/planted"},
		{"file as parent", buildTar(t, file("Files/f", "x"), file("Files/f/child", "x")), false, winlayer.ErrParentNotDirectory, "Files/f/child"},
		{"hardlink escape", buildTar(t, file("Files/a", "x"), hardlink("Files/b", "../outside/sentinel")), false, winlayer.ErrInsecurePath, "Files/b"},
		{"hardlink absolute", buildTar(t, hardlink("Files/b", "/etc/passwd")), false, winlayer.ErrInsecurePath, "Files/b"},
		{"hardlink missing", buildTar(t, hardlink("Files/b", "Files/nothing")), false, winlayer.ErrLinkTarget, "Files/b"},
		{"hardlink to dir", buildTar(t, dirEnt("Files/d"), hardlink("Files/b", "Files/d")), false, winlayer.ErrLinkTarget, "Files/b"},
		{"hardlink via symlink", buildTar(t, symlink("Files/l", `..\..\outside`), hardlink("Files/b", "Files/l/sentinel")), false, winlayer.ErrLinkTarget, "Files/b"},
		{"fileattr not a number", buildTar(t, withPAX(file("Files/a", "x"), "MSWINDOWS.fileattr", "abc")), false, ErrBadPAX, "Files/a"},
		{"fileattr too big", buildTar(t, withPAX(file("Files/a", "x"), "MSWINDOWS.fileattr", "4294967296")), false, ErrBadPAX, "Files/a"},
		{"rawsd bad base64", buildTar(t, withPAX(file("Files/a", "x"), "MSWINDOWS.rawsd", "!!!")), false, ErrBadPAX, "Files/a"},
		{"rawsd not an SD", buildTar(t, withPAX(file("Files/a", "x"), "MSWINDOWS.rawsd", "AAAA")), false, ErrBadPAX, "Files/a"},
		{"xattr bad base64", buildTar(t, withPAX(file("Files/a", "x"), "MSWINDOWS.xattr.X", "%%")), false, ErrBadPAX, "Files/a"},
		{"creationtime bad", buildTar(t, withPAX(file("Files/a", "x"), "LIBARCHIVE.creationtime", "12.x")), false, ErrBadPAX, "Files/a"},
		{"orphan stream", buildTar(t, file("Files/a:stream", "x")), false, ErrOrphanStream, "Files/a:stream"},
		{"stream after other file", buildTar(t, file("Files/a", "x"), file("Files/b", "y"), file("Files/a:s", "z")), false, ErrOrphanStream, "Files/a:s"},
		{"truncated data", valid[:len(valid)/2+100], false, ErrTruncated, ""},
		{"truncated header", append(buildTar(t, file("Files/a", "x"))[:1024], make([]byte, 100)...), false, ErrTruncated, ""},
		{"absurd size", rawSizeTar(t, "Files/huge", 1<<50), false, winlayer.ErrTooLarge, "Files/huge"},
		{"larger than disk", rawSizeTar(t, "Files/huge", 1<<47), false, winlayer.ErrTooLarge, "Files/huge"},
		{"whiteout in base", buildTar(t, file("Files/a", "x"), file("Files/.wh.b", "")), false, winlayer.ErrBaseLayerWhiteout, "Files/.wh.b"},
		{"opaque whiteout", buildTar(t, file("Files/d/.wh..wh..opq", "")), true, ErrUnsupportedEntry, "Files/d/.wh..wh..opq"},
		{"char device", buildTar(t, tarEnt{hdr: tar.Header{Name: "Files/dev", Typeflag: tar.TypeChar, Mode: 0o644}}), false, ErrUnsupportedEntry, "Files/dev"},
		{"whiteout outside", buildTar(t, file("Other/.wh.x", "")), true, winlayer.ErrOutsideLayer, "Other/.wh.x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			outside := filepath.Join(dir, "outside")
			os.Mkdir(outside, 0o755)
			os.WriteFile(filepath.Join(outside, "sentinel"), []byte("keep"), 0o644)
			var parents []string
			if tc.parents {
				parents = []string{filepath.Join(dir, "outside")}
			}
			layer := filepath.Join(dir, "layers", "l")
			_, err := ImportLayerFromTar(context.Background(), bytes.NewReader(tc.tar), layer, parents)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var te *TarError
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a *TarError", err)
			}
			if tc.entry != "" && te.Entry != tc.entry {
				t.Errorf("error names entry %q, want %q", te.Entry, tc.entry)
			}
			if !strings.Contains(err.Error(), "byte") {
				t.Errorf("error %q does not give an offset", err)
			}
			assertUntouched(t, dir)
		})
	}
}

// assertUntouched checks that a failed import left no layer, no staging folder and no
// file outside.
func assertUntouched(t *testing.T, dir string) {
	t.Helper()
	var got []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			got = append(got, rel)
		}
		return nil
	})
	want := []string{"layers", "outside", "outside/sentinel"}
	if !slices.Equal(got, want) && !slices.Equal(got, want[1:]) {
		t.Errorf("after the failed import the folder holds %v, want %v", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "outside", "sentinel")); string(b) != "keep" {
		t.Error("the file outside the layer changed")
	}
}

// TestDuplicateEntriesRejected: a Windows host creates every name of a layer with
// FILE_CREATE, so a second entry of the same name fails there; every duplicate is
// rejected here, naming the second entry. A directory implied by the entries below it
// may still be given once.
func TestDuplicateEntriesRejected(t *testing.T) {
	cases := []struct {
		name  string
		tar   []byte
		want  error
		entry string
	}{
		{"file twice", buildTar(t, dirEnt("Files"), file("Files/a.txt", "first"), file("Files/a.txt", "second")), winlayer.ErrDuplicate, "Files/a.txt"},
		{"file then dir", buildTar(t, file("Files/x", "file"), dirEnt("Files/x")), winlayer.ErrDuplicate, "Files/x"},
		{"dir then file", buildTar(t, dirEnt("Files/y"), file("Files/y/child", "c"), file("Files/y", "file")), winlayer.ErrDuplicate, "Files/y"},
		{"dir twice", buildTar(t, dirEnt("Files"), file("Files/a", "a"), dirEnt("Files")), winlayer.ErrDuplicate, "Files"},
		{"implied dir then file", buildTar(t, file("Files/d/child", "c"), file("Files/d", "file")), winlayer.ErrDuplicate, "Files/d"},
		{"link over file", buildTar(t, file("Files/a", "a"), file("Files/b", "b"), hardlink("Files/b", "Files/a")), winlayer.ErrDuplicate, "Files/b"},
		{"stream twice", buildTar(t, file("Files/a", "a"), file("Files/a:s", "1"), file("Files/a:S", "2")), winlayer.ErrDuplicate, "Files/a:S"},
		{"case variant", buildTar(t, file("Files/A", "a"), file("Files/a", "b")), winlayer.ErrCaseCollision, "Files/a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := ImportLayerFromTar(context.Background(), bytes.NewReader(tc.tar), filepath.Join(dir, "l"), nil)
			var te *TarError
			if !errors.Is(err, tc.want) || !errors.As(err, &te) || te.Entry != tc.entry {
				t.Fatalf("error %v, want %v naming %s", err, tc.want, tc.entry)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("failed import left %v", ents)
			}
		})
	}
	// A directory implied by its children, given afterwards, is fine.
	layer := filepath.Join(t.TempDir(), "l")
	importTar(t, buildTar(t, file("Files/x/inner", "in"), dirEnt("Files/x"), dirEnt("Files")), layer, nil)
	var names []string
	for _, e := range readTar(t, exportTar(t, layer)) {
		names = append(names, e.Name)
	}
	if want := []string{"Files", "Files/x", "Files/x/inner"}; !slices.Equal(names, want) {
		t.Errorf("exported %v, want %v", names, want)
	}
}

func TestImportIntoExisting(t *testing.T) {
	dir := t.TempDir()
	layer := filepath.Join(dir, "l")
	os.MkdirAll(filepath.Join(layer, "keep"), 0o755)
	_, err := ImportLayerFromTar(context.Background(), bytes.NewReader(buildTar(t, file("Files/a", "x"))), layer, nil)
	if !errors.Is(err, winlayer.ErrLayerExists) || !errors.Is(err, os.ErrExist) {
		t.Fatalf("error %v, want ErrLayerExists", err)
	}
	if _, err := os.Stat(filepath.Join(layer, "keep")); err != nil {
		t.Error("existing content was touched")
	}
	// An empty directory is a valid destination.
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	importTar(t, buildTar(t, file("Files/a", "x")), empty, nil)
}

func TestCanceledImportLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := ImportLayerFromTar(ctx, bytes.NewReader(genTar(t, sampletar.Options{Seed: 1, Files: 10})), filepath.Join(dir, "l"), nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("canceled import left %v", ents)
	}
}
