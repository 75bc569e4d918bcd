package cimfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

var testSD = []byte{1, 0, 4, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

func testEA(t testing.TB) []byte {
	b, err := winfile.EncodeExtendedAttributes([]winfile.ExtendedAttribute{{Name: "USER.TEST", Value: []byte("value")}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testReparse(t testing.TB, target string) []byte {
	b, err := winfile.NewLinkReparsePoint(target, false).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fill(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

type testFile struct {
	h       Header
	data    []byte
	streams map[string][]byte
	link    string // AddLink target instead of Add
	remove  bool
}

func ft(n int) winfile.Filetime { return winfile.Filetime(132000000000000000 + uint64(n)*10_000_001) }

func info(attr uint32, n int) winfile.BasicInfo {
	return winfile.BasicInfo{CreationTime: ft(n), LastWriteTime: ft(n + 1), ChangeTime: ft(n + 2), LastAccessTime: ft(n + 3), FileAttributes: attr}
}

func sampleFiles(t testing.TB) []testFile {
	big := fill(200_000, 7)
	return []testFile{
		{h: Header{Name: "Files", Info: info(winfile.AttrDirectory, 1), SecurityDescriptor: testSD}},
		{h: Header{Name: "Files/Windows", Info: info(winfile.AttrDirectory|winfile.AttrNotContentIndexed, 2), SecurityDescriptor: testSD, ExtendedAttributes: testEA(t)}},
		{h: Header{Name: "Files/Windows/small.txt", Info: info(winfile.AttrArchive|winfile.AttrReadOnly, 3), SecurityDescriptor: testSD}, data: []byte("hello, world\n"),
			streams: map[string][]byte{"Zone.Identifier": []byte("[ZoneTransfer]\r\nZoneId=3\r\n"), "empty": nil}},
		{h: Header{Name: "Files/Windows/big.bin", Info: info(winfile.AttrArchive|winfile.AttrHidden|winfile.AttrSystem, 4)}, data: big},
		{h: Header{Name: "Files/Windows/big-copy.bin", Info: info(winfile.AttrArchive, 5)}, data: big},
		{h: Header{Name: "Files/Windows/empty", Info: info(winfile.AttrArchive, 6)}, data: nil},
		{h: Header{Name: "Files/Windows/nodata", Info: info(0, 7), NoDataStream: true}},
		{h: Header{Name: "Files/Windows/sparse-zero", Info: info(winfile.AttrSparseFile|winfile.AttrArchive, 8)}, data: make([]byte, 100_000)},
		{h: Header{Name: "Files/Windows/sparse-data", Info: info(winfile.AttrSparseFile, 9)}, data: append(make([]byte, 5000), 1, 2, 3)},
		{h: Header{Name: "Files/Windows/link", Info: info(winfile.AttrArchive, 10), ReparseData: testReparse(t, `..\big.bin`)}},
		{h: Header{Name: "Files/Windows/hard", Info: info(0, 0)}, link: "Files/Windows/small.txt"},
		{h: Header{Name: "Files/Ünïcödé ß 😀", Info: info(winfile.AttrArchive, 11), ExtendedAttributes: testEA(t)}, data: []byte("unicode")},
		{h: Header{Name: "Files/implicit/dir/file.txt", Info: info(winfile.AttrArchive, 12)}, data: []byte("deep")},
		{h: Header{Name: "Hives", Info: info(winfile.AttrDirectory, 13)}},
		{h: Header{Name: "Hives/a"}, remove: true},
	}
}

func writeFiles(t testing.TB, w *Writer, files []testFile) {
	t.Helper()
	for _, f := range files {
		var err error
		switch {
		case f.remove:
			err = w.Remove(f.h.Name)
		case f.link != "":
			err = w.AddLink(f.h.Name, f.link)
		default:
			h := f.h
			h.Size = int64(len(f.data))
			if err = w.Add(&h); err == nil && len(f.data) > 0 {
				_, err = w.Write(f.data)
			}
			names := make([]string, 0, len(f.streams))
			for n := range f.streams {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, n := range names {
				if err == nil {
					err = w.AddStream(n, int64(len(f.streams[n])))
				}
				if err == nil {
					_, err = w.Write(f.streams[n])
				}
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", f.h.Name, err)
		}
	}
}

func build(t testing.TB, dir, name, parent string, files []testFile) *Image {
	t.Helper()
	w, err := Create(dir, name, parent)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, w, files)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	im, err := Open(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { im.Close() })
	if err := im.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return im
}

func readAll(t testing.TB, im *Image, p string) []byte {
	t.Helper()
	f, err := im.Open(p)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return b
}

func checkFiles(t *testing.T, im *Image, files []testFile) {
	t.Helper()
	for _, f := range files {
		if f.remove || f.link != "" {
			continue
		}
		fi, err := im.Stat(f.h.Name)
		if err != nil {
			t.Fatalf("stat %s: %v", f.h.Name, err)
		}
		want := f.h.Info
		if f.h.ReparseData != nil {
			want.FileAttributes |= winfile.AttrReparsePoint
		}
		if fi.Info != want {
			t.Errorf("%s: info %+v, want %+v", f.h.Name, fi.Info, want)
		}
		if fi.NoDataStream != f.h.NoDataStream || !fi.Added {
			t.Errorf("%s: nodata %v added %v", f.h.Name, fi.NoDataStream, fi.Added)
		}
		sd, _ := fi.SecurityDescriptor()
		ea, _ := fi.ExtendedAttributes()
		rp, _ := fi.ReparseData()
		if !bytes.Equal(sd, f.h.SecurityDescriptor) || !bytes.Equal(ea, f.h.ExtendedAttributes) || !bytes.Equal(rp, f.h.ReparseData) {
			t.Errorf("%s: sd %x ea %x reparse %x", f.h.Name, sd, ea, rp)
		}
		if fi.IsDir() {
			continue
		}
		if fi.Size != int64(len(f.data)) {
			t.Errorf("%s: size %d, want %d", f.h.Name, fi.Size, len(f.data))
		}
		if got := readAll(t, im, f.h.Name); !bytes.Equal(got, f.data) {
			t.Errorf("%s: data differs", f.h.Name)
		}
		if len(fi.Streams) != len(f.streams) {
			t.Errorf("%s: streams %v", f.h.Name, fi.Streams)
		}
		for n, d := range f.streams {
			if got := readAll(t, im, f.h.Name+":"+strings.ToUpper(n)); !bytes.Equal(got, d) {
				t.Errorf("%s:%s: %q, want %q", f.h.Name, n, got, d)
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	files := sampleFiles(t)
	im := build(t, dir, "layer.cim", "", files)
	checkFiles(t, im, files)

	// Case-insensitive lookups, both separators, hard link identity.
	a, err := im.Lookup(`FILES\windows\SMALL.TXT`)
	if err != nil {
		t.Fatal(err)
	}
	b, err := im.Lookup("Files/Windows/hard")
	if err != nil || a != b {
		t.Fatalf("hard link: %d %d %v", a, b, err)
	}
	if _, err := im.Lookup("files/ünïcödé SS 😀"); err == nil {
		t.Error("ß matched SS: upcase must be one-to-one per unit")
	}
	if _, err := im.Lookup("files/ÜNÏCÖDÉ ß 😀"); err != nil {
		t.Error(err)
	}
	if _, err := im.Lookup("Files/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if _, err := im.Lookup("Files/Windows/small.txt/x"); !errors.Is(err, ErrNotDir) {
		t.Errorf("through a file: %v", err)
	}
	// Dedup: the two big files share their data; the sparse zero file has none.
	x, _ := im.Stat("Files/Windows/big.bin")
	y, _ := im.Stat("Files/Windows/big-copy.bin")
	if x.rec.data.offset != y.rec.data.offset || x.rec.data.offset.offset()%4096 != 0 {
		t.Errorf("big files: %v %v", x.rec.data.offset, y.rec.data.offset)
	}
	z, _ := im.Stat("Files/Windows/sparse-zero")
	if !z.rec.data.sparse || z.rec.data.offset != 0 {
		t.Errorf("sparse zero file stored with data: %+v", z.rec.data)
	}
	// Listing is in link table order.
	ents, err := im.ReadDir("Files/Windows")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
	}
	want := []string{"big-copy.bin", "big.bin", "empty", "hard", "link", "nodata", "small.txt", "sparse-data", "sparse-zero"}
	if !slices.Equal(names, want) {
		t.Errorf("readdir: %v", names)
	}
	rm, err := im.Removals()
	if err != nil || !slices.Equal(rm, []string{`Hives\a`}) {
		t.Errorf("removals %v %v", rm, err)
	}
	// Random access.
	f, _ := im.Open("Files/Windows/big.bin")
	p := make([]byte, 100)
	if _, err := f.ReadAt(p, 150_000); err != nil || !bytes.Equal(p, files[3].data[150_000:150_100]) {
		t.Errorf("ReadAt: %v", err)
	}
	if n, err := f.ReadAt(p, 199_950); n != 50 || err != io.EOF {
		t.Errorf("ReadAt at end: %d %v", n, err)
	}
}

func TestDeterministic(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	build(t, d1, "x.cim", "", sampleFiles(t))
	build(t, d2, "x.cim", "", sampleFiles(t))
	e1, _ := os.ReadDir(d1)
	e2, _ := os.ReadDir(d2)
	if len(e1) != 7 || len(e1) != len(e2) {
		t.Fatalf("files: %d %d", len(e1), len(e2))
	}
	for i := range e1 {
		if e1[i].Name() != e2[i].Name() {
			t.Fatalf("names differ: %s %s", e1[i].Name(), e2[i].Name())
		}
		a, _ := os.ReadFile(filepath.Join(d1, e1[i].Name()))
		b, _ := os.ReadFile(filepath.Join(d2, e2[i].Name()))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs", e1[i].Name())
		}
	}
	// Another name in the same directory gets its own region files.
	build(t, d1, "y.cim", "", sampleFiles(t))
	if e, _ := os.ReadDir(d1); len(e) != 14 {
		t.Errorf("second image shares files: %d entries", len(e))
	}
}

func TestFork(t *testing.T) {
	dir := t.TempDir()
	files := sampleFiles(t)
	base := build(t, dir, "base.cim", "", files)
	baseRegions := len(base.regions)
	child := build(t, dir, "child.cim", "base.cim", []testFile{
		{h: Header{Name: "Files/Windows/new.txt", Info: info(winfile.AttrArchive, 20)}, data: []byte("new")},
		{h: Header{Name: "Files/Windows/small.txt", Info: info(winfile.AttrArchive, 21)}, data: []byte("replaced")},
		{h: Header{Name: "Files/Windows/big.bin"}, remove: true},
		{h: Header{Name: "Files/implicit"}, remove: true},
		{h: Header{Name: "Files/Windows/copy", Info: info(winfile.AttrArchive, 22)}, data: files[3].data},
	})
	if child.Parents() != 1 || len(child.regions) != 2*regionCount {
		t.Fatalf("parents %d regions %d", child.Parents(), len(child.regions))
	}
	if got := readAll(t, child, "Files/Windows/small.txt"); string(got) != "replaced" {
		t.Errorf("replaced file: %q", got)
	}
	if got := readAll(t, child, "Files/Windows/hard"); string(got) != "hello, world\n" {
		t.Errorf("hard link keeps the old file: %q", got)
	}
	for _, p := range []string{"Files/Windows/big.bin", "Files/implicit/dir/file.txt", "Files/implicit"} {
		if _, err := child.Lookup(p); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s still visible: %v", p, err)
		}
	}
	// Unchanged and identical content is referenced in the base's regions.
	for _, p := range []string{"Files/Windows/big-copy.bin", "Files/Windows/copy"} {
		fi, err := child.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.rec.data.offset.region() >= baseRegions {
			t.Errorf("%s: data copied into the fork (%v)", p, fi.rec.data.offset)
		}
		if fi.Added != (p == "Files/Windows/copy") {
			t.Errorf("%s: added %v", p, fi.Added)
		}
	}
	if child.fs.upcase.region() >= baseRegions {
		t.Error("upcase table copied into the fork")
	}
	if got := readAll(t, child, "Files/Windows/copy"); !bytes.Equal(got, files[3].data) {
		t.Error("copy differs")
	}
	rm, _ := child.Removals()
	if !slices.Equal(rm, []string{`Files\Windows\big.bin`, `Files\implicit`}) {
		t.Errorf("removals %v", rm)
	}
	// A grandchild over the fork.
	gc := build(t, dir, "gc.cim", "child.cim", []testFile{{h: Header{Name: "Files/Windows/new.txt"}, remove: true}})
	if gc.Parents() != 2 {
		t.Errorf("grandchild parents %d", gc.Parents())
	}
	if got := readAll(t, gc, "Files/Windows/copy"); !bytes.Equal(got, files[3].data) {
		t.Error("grandchild copy differs")
	}
}

func TestWriterErrors(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, "bad.cim", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(&Header{Name: "a", Size: 10}); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("short"))
	if err := w.Add(&Header{Name: "b"}); !errors.Is(err, ErrWriter) {
		t.Errorf("short write: %v", err)
	}
	if err := w.Close(); err == nil {
		t.Error("Close after a failure succeeded")
	}
	if e, _ := os.ReadDir(dir); len(e) != 0 {
		t.Errorf("failed writer left %d files", len(e))
	}
	for _, name := range []string{"a/../b", "x:y", "", "a/" + strings.Repeat("x", 256)} {
		w, _ := Create(dir, "n.cim", "")
		if err := w.Add(&Header{Name: name}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: %v", name, err)
		}
		w.Abort()
	}
	build(t, dir, "x.cim", "", nil)
	if _, err := Create(dir, "x.cim", ""); !errors.Is(err, fs.ErrExist) {
		t.Errorf("existing: %v", err)
	}
}

func TestNameOrder(t *testing.T) {
	names := []string{"a", "B", "c", "Ａ", "ｂ", "😀", "😀x", "\uE000", "\uFFFD", "ä", "Ä2", "ß", "σς", "İ", "ı", "z", "_", "~", "日本語", "𝔘𝔫𝔦"}
	var files []testFile
	for i, n := range names {
		files = append(files, testFile{h: Header{Name: "d/" + n, Info: info(0, i)}, data: []byte(n)})
	}
	dir := t.TempDir()
	im := build(t, dir, "n.cim", "", files)
	for _, n := range names {
		for _, v := range []string{n, strings.ToUpper(n), strings.ToLower(n)} {
			id, err := im.Lookup("D/" + v)
			if err != nil {
				if v == n {
					t.Errorf("%q: %v", v, err)
				}
				continue
			}
			if got := readAll(t, im, "d/"+v); compareKeys(nameKey(im.upcase, string(got)), nameKey(im.upcase, v)) != 0 {
				t.Errorf("%q (%d) found %q", v, id, got)
			}
		}
	}
	ents, _ := im.ReadDir("d")
	if len(ents) != len(names) {
		t.Errorf("%d entries, want %d", len(ents), len(names))
	}
}

// TestWithoutExtensions writes only the public format and reads it back the way a
// reader without the extensions would.
func TestWithoutExtensions(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, "p.cim", "", WithoutExtensions())
	if err != nil {
		t.Fatal(err)
	}
	files := sampleFiles(t)
	writeFiles(t, w, files)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	im, err := Open(filepath.Join(dir, "p.cim"))
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if err := im.Verify(); err != nil {
		t.Fatal(err)
	}
	if im.hdr.extension || im.ftd[0].entrySize != recordSizeV2 {
		t.Fatalf("extension %v, record size %d", im.hdr.extension, im.ftd[0].entrySize)
	}
	fi, err := im.Stat("Files/Windows")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Info.FileAttributes != winfile.AttrDirectory || fi.Added {
		t.Errorf("Files/Windows: attributes %#x added %v; NOT_CONTENT_INDEXED has no place in a public record", fi.Info.FileAttributes, fi.Added)
	}
	fi, _ = im.Stat("Files/Windows/big.bin")
	if want := uint32(winfile.AttrArchive | winfile.AttrHidden | winfile.AttrSystem); fi.Info.FileAttributes != want {
		t.Errorf("big.bin attributes %#x, want %#x", fi.Info.FileAttributes, want)
	}
	if got := readAll(t, im, "Files/Windows/big.bin"); !bytes.Equal(got, files[3].data) {
		t.Error("data differs")
	}
	if rm, _ := im.Removals(); rm != nil {
		t.Errorf("removals %v", rm)
	}
}

// TestConcurrentReads reads one image from many goroutines (run with -race).
func TestConcurrentReads(t *testing.T) {
	files := sampleFiles(t)
	im := build(t, t.TempDir(), "c.cim", "", files)
	done := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; i < 50; i++ {
				for _, f := range files {
					if f.remove || f.link != "" || f.h.Info.FileAttributes&winfile.AttrDirectory != 0 {
						continue
					}
					file, err := im.Open(f.h.Name)
					if err != nil {
						done <- err
						return
					}
					b := make([]byte, len(f.data))
					if _, err := file.ReadAt(b, 0); err != nil && err != io.EOF || !bytes.Equal(b, f.data) {
						done <- errors.Join(err, errors.New(f.h.Name+": data differs"))
						return
					}
				}
				im.ReadDir("Files/Windows")
			}
			done <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestStreamsLargerThanBuffer covers streams that span several region buffer
// flushes (written out in the background): a duplicate and an all-zero sparse
// stream are taken back after parts of them reached the file, and what follows
// must land where the records say.
func TestStreamsLargerThanBuffer(t *testing.T) {
	dir := t.TempDir()
	big := fill(3*regionBufferSize+12345, 21)
	files := []testFile{
		{h: Header{Name: "a.bin", Info: info(winfile.AttrArchive, 1)}, data: big},
		{h: Header{Name: "b.bin", Info: info(winfile.AttrArchive, 2)}, data: big},
		{h: Header{Name: "zero", Info: info(winfile.AttrSparseFile, 3)}, data: make([]byte, 2*regionBufferSize+7)},
		{h: Header{Name: "c.bin", Info: info(winfile.AttrArchive, 4)}, data: fill(regionBufferSize+999, 22)},
		{h: Header{Name: "small", Info: info(winfile.AttrArchive, 5)}, data: []byte("after")},
	}
	w, err := Create(dir, "big.cim", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		h := f.h
		h.Size = int64(len(f.data))
		if err := w.Add(&h); err != nil {
			t.Fatal(err)
		}
		// Odd-sized writes so flushes fall inside writes.
		for p := f.data; len(p) > 0; {
			n := min(len(p), 300_001)
			if _, err := w.Write(p[:n]); err != nil {
				t.Fatalf("%s: %v", f.h.Name, err)
			}
			p = p[n:]
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	im, err := Open(filepath.Join(dir, "big.cim"))
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if err := im.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	checkFiles(t, im, files)
	a, _ := im.Stat("a.bin")
	b, _ := im.Stat("b.bin")
	c, _ := im.Stat("c.bin")
	if a.rec.data.offset != b.rec.data.offset {
		t.Errorf("duplicate stored twice: %v %v", a.rec.data.offset, b.rec.data.offset)
	}
	// c.bin follows a.bin's data directly (page aligned): the duplicate and the
	// zero stream left nothing behind.
	end := a.rec.data.offset.offset() + int64(len(big))
	if want := (end + 4095) &^ 4095; c.rec.data.offset.offset() != want {
		t.Errorf("c.bin at %d, want %d", c.rec.data.offset.offset(), want)
	}
	if z, _ := im.Stat("zero"); !z.rec.data.sparse || z.rec.data.offset != 0 {
		t.Errorf("sparse zero stream stored with data: %+v", z.rec.data)
	}
}
