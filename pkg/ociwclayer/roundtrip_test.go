package ociwclayer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// tarEntry is what a comparison looks at: every header field a Windows layer tar uses,
// and the content digest.
type tarEntry struct {
	Name, Linkname              string
	Typeflag                    byte
	Mode, Size                  int64
	ModTime, AccessTime, Change string
	PAX                         map[string]string
	Digest                      [32]byte
}

func (e tarEntry) String() string {
	return fmt.Sprintf("%s type=%c mode=%o size=%d link=%q mtime=%s atime=%s ctime=%s pax=%v sha=%x",
		e.Name, e.Typeflag, e.Mode, e.Size, e.Linkname, e.ModTime, e.AccessTime, e.Change, e.PAX, e.Digest[:6])
}

func readTar(t *testing.T, b []byte) []tarEntry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []tarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		d := sha256.New()
		if _, err := io.Copy(d, tr); err != nil {
			t.Fatalf("reading %s: %v", h.Name, err)
		}
		pax := map[string]string{}
		maps.Copy(pax, h.PAXRecords)
		e := tarEntry{Name: h.Name, Linkname: h.Linkname, Typeflag: h.Typeflag, Mode: h.Mode, Size: h.Size,
			ModTime: h.ModTime.UTC().String(), AccessTime: h.AccessTime.UTC().String(), Change: h.ChangeTime.UTC().String(), PAX: pax}
		copy(e.Digest[:], d.Sum(nil))
		out = append(out, e)
	}
}

func compareTars(t *testing.T, want, got []byte) {
	t.Helper()
	we, ge := readTar(t, want), readTar(t, got)
	for i := 0; i < max(len(we), len(ge)); i++ {
		switch {
		case i >= len(we):
			t.Fatalf("entry %d: extra entry %v", i, ge[i])
		case i >= len(ge):
			t.Fatalf("entry %d: missing entry %v", i, we[i])
		case !equalEntry(we[i], ge[i]):
			t.Fatalf("entry %d differs:\nwant %v\ngot  %v", i, we[i], ge[i])
		}
	}
}

func equalEntry(a, b tarEntry) bool {
	return a.Name == b.Name && a.Linkname == b.Linkname && a.Typeflag == b.Typeflag && a.Mode == b.Mode &&
		a.Size == b.Size && a.ModTime == b.ModTime && a.AccessTime == b.AccessTime && a.Change == b.Change &&
		maps.Equal(a.PAX, b.PAX) && a.Digest == b.Digest
}

func genTar(t *testing.T, o sampletar.Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := sampletar.Write(&buf, o); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func importTar(t *testing.T, b []byte, path string, parents []string) int64 {
	t.Helper()
	n, err := ImportLayerFromTar(context.Background(), bytes.NewReader(b), path, parents)
	if err != nil {
		t.Fatalf("import into %s: %v", path, err)
	}
	return n
}

func exportTar(t *testing.T, path string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := ExportLayerToTar(context.Background(), &buf, path, nil); err != nil {
		t.Fatalf("export %s: %v", path, err)
	}
	return buf.Bytes()
}

func TestRoundTripBaseLayer(t *testing.T) {
	in := genTar(t, sampletar.Options{Seed: 1, Files: 400, Bytes: 4 << 20, UtilityVM: true, Hives: true, Unicode: true, LargeFiles: 2})
	dir := t.TempDir()
	layer := filepath.Join(dir, "base")
	size := importTar(t, in, layer, nil)
	if size <= 4<<20/2 {
		t.Errorf("import size %d, want about 4 MiB", size)
	}
	out := exportTar(t, layer)
	compareTars(t, in, out)

	again := exportTar(t, layer)
	if !bytes.Equal(out, again) {
		t.Fatal("two exports of the same layer differ")
	}
	layer2 := filepath.Join(dir, "base2")
	importTar(t, out, layer2, nil)
	if out2 := exportTar(t, layer2); !bytes.Equal(out, out2) {
		t.Fatal("export of a re-imported layer differs from the first export")
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"base", "base2"}) {
		t.Errorf("folder holds %v, want only the two layers", names)
	}
}

func TestRoundTripChildLayer(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	importTar(t, genTar(t, sampletar.Options{Seed: 2, Files: 200, Bytes: 1 << 20}), base, nil)

	child := genTar(t, sampletar.Options{Seed: 3, Files: 100, Bytes: 1 << 20, Hives: true,
		Whiteouts: []string{"Files/Windows/System32/d0000/f00003.dll", "Files/Windows/System32/d0001/f00070.dll", "Files/gone/dir"}})
	layer := filepath.Join(dir, "child")
	importTar(t, child, layer, []string{base})
	compareTars(t, child, exportTar(t, layer))

	tomb, err := os.ReadFile(filepath.Join(layer, "tombstones.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := "\uFEFFVersion 1.0\n\\gone\\dir\n\\Windows\\System32\\d0000\\f00003.dll\n\\Windows\\System32\\d0001\\f00070.dll\n"
	if string(tomb) != want {
		t.Errorf("tombstones.txt = %q, want %q", tomb, want)
	}
	chain, err := os.ReadFile(filepath.Join(layer, "layerchain.json"))
	if err != nil || string(chain) != fmt.Sprintf("[%q]", base) {
		t.Errorf("layerchain.json = %s (%v)", chain, err)
	}
}

func TestHardLinkIntoParent(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	importTar(t, genTar(t, sampletar.Options{Seed: 4, Files: 10, Bytes: 10 << 10}), base, nil)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "Files/alias.dll", Typeflag: tar.TypeLink, Linkname: "Files/Windows/System32/d0000/f00001.dll", Mode: 0o644})
	tw.Close()
	layer := filepath.Join(dir, "child")
	importTar(t, buf.Bytes(), layer, []string{base})
	a, err := os.ReadFile(filepath.Join(layer, "Files/alias.dll"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(base, "Files/Windows/System32/d0000/f00001.dll"))
	if !bytes.Equal(a, b) {
		t.Error("link into the parent has different content")
	}
	// Issue 10: the exported child lists the link to its parent's file as a link,
	// as the tar it came from did, not as a full copy.
	wantSameInode(t, filepath.Join(layer, "Files/alias.dll"), filepath.Join(base, "Files/Windows/System32/d0000/f00001.dll"))
	ents := readTar(t, exportTar(t, layer))
	if len(ents) != 1 || ents[0].Name != "Files/alias.dll" || ents[0].Typeflag != tar.TypeLink || ents[0].Linkname != "Files/Windows/System32/d0000/f00001.dll" {
		t.Errorf("exported child = %v; want one link Files/alias.dll to the parent's file", ents)
	}
}

func wantSameInode(t *testing.T, a, b string) {
	t.Helper()
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	if err1 != nil || err2 != nil || !os.SameFile(sa, sb) {
		t.Errorf("%s and %s are not one file (%v, %v)", a, b, err1, err2)
	}
}

// TestImportedLayersCheckClean runs the layer checker after imports that exercise
// duplicates, links and streams.
func TestImportedLayersCheckClean(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	importTar(t, genTar(t, sampletar.Options{Seed: 7, Files: 300, Bytes: 1 << 20, UtilityVM: true, Hives: true, Unicode: true}), base, nil)
	dup := buildTar(t, file("Files/a", "x"), file("Files/a:s", "stream"), file("Files/a:t", "t"),
		hardlink("Files/b", "Files/a"), hardlink("Files/c", "Files/Windows/System32/d0000/f00001.dll"))
	child := filepath.Join(dir, "child")
	importTar(t, dup, child, []string{base})
	for _, l := range []string{base, child} {
		problems, err := winlayer.Check(context.Background(), l)
		if err != nil || len(problems) != 0 {
			t.Errorf("Check(%s) = %v, %v", l, problems, err)
		}
	}
	// Damage the child: a stream file vanishes, a file is replaced by a directory.
	os.RemoveAll(filepath.Join(child, "hcsmeta", "streams"))
	os.Remove(filepath.Join(child, "Files", "b"))
	os.Mkdir(filepath.Join(child, "Files", "b"), 0o755)
	problems, err := winlayer.Check(context.Background(), child)
	if err != nil || len(problems) < 2 {
		t.Errorf("Check of a damaged layer = %v, %v; want problems", problems, err)
	}
}
