package tarstream

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// entry is what both readers must agree on for one entry.
type entry struct {
	hdr     string
	content []byte
	readErr bool
}

func describe(h *tar.Header) string {
	recs := make([]string, 0, len(h.PAXRecords))
	for k, v := range h.PAXRecords {
		recs = append(recs, fmt.Sprintf("%q=%q", k, v))
	}
	sortStrings(recs)
	xs := make([]string, 0, len(h.Xattrs)) //nolint:staticcheck // compared as archive/tar fills it
	for k, v := range h.Xattrs {           //nolint:staticcheck
		xs = append(xs, fmt.Sprintf("%q=%q", k, v))
	}
	sortStrings(xs)
	t := func(t time.Time) string {
		if t.IsZero() {
			return "0"
		}
		return fmt.Sprint(t.UnixNano())
	}
	return fmt.Sprintf("name=%q type=%q link=%q size=%d mode=%o uid=%d gid=%d uname=%q gname=%q mtime=%s atime=%s ctime=%s dev=%d,%d pax=%v xattrs=%v",
		h.Name, h.Typeflag, h.Linkname, h.Size, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname,
		t(h.ModTime), t(h.AccessTime), t(h.ChangeTime), h.Devmajor, h.Devminor, recs, xs)
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// skipEntry decides, from the input, which entries are skipped rather than read, so
// that both ways of moving on are compared.
func skipEntry(data []byte, i int) bool {
	if len(data) == 0 {
		return false
	}
	return (int(data[len(data)/2])+i)%4 == 3
}

// contentLimit bounds what is compared of one entry: a few bytes of header can
// claim gigabytes of sparse holes.
const contentLimit = 4 << 20

// readSome reads the entry's contents up to contentLimit bytes.
func readSome(r io.Reader) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, contentLimit))
}

// readStd reads data with archive/tar.
func readStd(data []byte) ([]entry, bool) {
	tr := tar.NewReader(bytes.NewReader(data))
	var out []entry
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			return out, false
		}
		if err != nil {
			return out, true
		}
		e := entry{hdr: describe(h)}
		if !skipEntry(data, i) {
			e.content, err = readSome(tr)
			e.readErr = err != nil
		}
		out = append(out, e)
		if e.readErr {
			return out, true
		}
	}
}

// readOurs reads with a Reader over r; with sections, data is taken from
// DataSection with ReadAt, as a copy_file_range caller would.
func readOurs(t testing.TB, data []byte, r io.Reader, sections bool) ([]entry, bool) {
	tr := NewReader(r)
	var out []entry
	for i := 0; ; i++ {
		off := tr.pos
		h, err := tr.Next()
		if err == io.EOF {
			return out, false
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not a *tarstream.Error", err)
			}
			if e.Offset < off || e.Offset > int64(len(data)) {
				t.Fatalf("error %v: offset outside [%d, %d]", err, off, len(data))
			}
			return out, true
		}
		if tr.Offset() < off || tr.DataOffset() < tr.Offset() {
			t.Fatalf("entry %q: offsets %d, %d after %d", h.Name, tr.Offset(), tr.DataOffset(), off)
		}
		e := entry{hdr: describe(h)}
		if !skipEntry(data, i) {
			if f, foff, n, ok := tr.DataSection(); sections && ok {
				// The file holds at most the input; a header may claim more.
				b := make([]byte, min(n, int64(len(data)), contentLimit))
				m, _ := f.ReadAt(b, foff)
				// Only what the file holds can be copied; the rest is read, so
				// that a truncated entry fails as it would.
				if err := tr.Skip(int64(m)); err != nil {
					t.Fatalf("Skip(%d): %v", m, err)
				}
				rest, err := io.ReadAll(io.LimitReader(tr, contentLimit-int64(m)))
				e.content = append(b[:m], rest...)
				e.readErr = err != nil
			} else {
				e.content, err = readSome(tr)
				e.readErr = err != nil
			}
		}
		out = append(out, e)
		if e.readErr {
			return out, true
		}
	}
}

func compare(t testing.TB, data []byte, mode string, got []entry, gotErr bool) {
	t.Helper()
	want, wantErr := readStd(data)
	if len(got) != len(want) {
		t.Fatalf("%s: %d entries (error %v), archive/tar %d (error %v)\nours %v\nstd  %v", mode, len(got), gotErr, len(want), wantErr, got, want)
	}
	for i := range want {
		if got[i].hdr != want[i].hdr {
			t.Fatalf("%s: entry %d:\nours %s\nstd  %s", mode, i, got[i].hdr, want[i].hdr)
		}
		if !bytes.Equal(got[i].content, want[i].content) || got[i].readErr != want[i].readErr {
			t.Fatalf("%s: entry %d (%s): content %d bytes (error %v), archive/tar %d bytes (error %v)",
				mode, i, want[i].hdr, len(got[i].content), got[i].readErr, len(want[i].content), want[i].readErr)
		}
	}
	if gotErr != wantErr {
		t.Fatalf("%s: error %v, archive/tar error %v", mode, gotErr, wantErr)
	}
}

var scratch struct {
	f *os.File
}

func checkAll(t testing.TB, data []byte) {
	got, gotErr := readOurs(t, data, bytes.NewReader(data), false)
	compare(t, data, "reader", got, gotErr)
	got, gotErr = readOurs(t, data, iotest.HalfReader(bytes.NewReader(data)), false)
	compare(t, data, "half reader", got, gotErr)

	if scratch.f == nil {
		f, err := os.CreateTemp("", "tarstream-fuzz-")
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(f.Name())
		scratch.f = f
	}
	f := scratch.f
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	// A few bytes before the tar: the Reader starts at the file's offset.
	prefix := []byte("pre")
	if _, err := f.WriteAt(append(prefix, data...), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(int64(len(prefix)), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, gotErr = readOurs(t, data, f, true)
	compare(t, data, "file", got, gotErr)
}

func FuzzReader(f *testing.F) {
	for _, s := range seedTars(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAll(t, data)
	})
}

// seedTars are the generated tars of the shapes layers use, and their truncations.
func seedTars(t testing.TB) [][]byte {
	var out [][]byte
	add := func(b []byte) {
		out = append(out, b)
		for _, cut := range []int{len(b) - 1024, len(b) - 1536, len(b) / 2, 700, 100} {
			if cut > 0 && cut < len(b) {
				out = append(out, b[:cut])
			}
		}
	}
	for _, format := range []tar.Format{tar.FormatUSTAR, tar.FormatPAX, tar.FormatGNU} {
		add(writeTar(t, format))
	}
	return out
}

func writeTar(t testing.TB, format tar.Format) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	long := strings.Repeat("long/", 30) + "name.txt"
	add := func(h *tar.Header, data string) {
		h.Format = format
		h.ModTime = mtime
		if format != tar.FormatPAX {
			h.PAXRecords = nil
		}
		if format == tar.FormatUSTAR && (len(h.Name) > 100 || len(h.Linkname) > 100 || h.Uid > 1<<21) {
			return
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("%v %s: %v", format, h.Name, err)
		}
		if _, err := io.WriteString(tw, data); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "Files/", Typeflag: tar.TypeDir, Mode: 0o755, PAXRecords: map[string]string{
		"MSWINDOWS.fileattr": "16", "MSWINDOWS.rawsd": "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAAgAgAAAQIAAAAAAAUgAAAAIAIAAA==",
		"LIBARCHIVE.creationtime": "1700000000.5"}}, "")
	add(&tar.Header{Name: "Files/a.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5, Uname: "root", Gname: "root",
		PAXRecords: map[string]string{"MSWINDOWS.fileattr": "32", "MSWINDOWS.xattr.user.x": "aGk="}}, "hello")
	add(&tar.Header{Name: "Files/a.txt:stream", Typeflag: tar.TypeReg, Size: 3}, "abc")
	add(&tar.Header{Name: "Files/" + long, Typeflag: tar.TypeReg, Size: 600, Mode: 0o600}, strings.Repeat("x", 600))
	add(&tar.Header{Name: "Files/link", Typeflag: tar.TypeSymlink, Linkname: strings.Repeat("t/", 60)}, "")
	add(&tar.Header{Name: "Files/hard", Typeflag: tar.TypeLink, Linkname: "Files/a.txt"}, "")
	add(&tar.Header{Name: "Files/.wh.gone", Typeflag: tar.TypeReg}, "")
	add(&tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666}, "")
	add(&tar.Header{Name: "Files/big-ids", Typeflag: tar.TypeReg, Uid: 1 << 22, Gid: 1 << 22, Size: 1}, "z")
	add(&tar.Header{Name: "Files/x", Typeflag: tar.TypeReg, PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00"}}, "")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSeedCorpus runs the differential check on the generated seeds, the committed
// corpus (tars GNU tar wrote, sparse ones among them) and Go's own tar test files.
func TestSeedCorpus(t *testing.T) {
	n := 0
	for _, s := range seedTars(t) {
		checkAll(t, s)
		n++
	}
	files, _ := filepath.Glob("testdata/fuzz/FuzzReader/*")
	for _, p := range files {
		b, err := readCorpusFile(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		t.Run(filepath.Base(p), func(t *testing.T) { checkAll(t, b) })
		n++
	}
	std, _ := filepath.Glob(filepath.Join(runtime.GOROOT(), "src", "archive", "tar", "testdata", "*.tar"))
	for _, p := range std {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 64<<20 {
			continue
		}
		t.Run("go-"+filepath.Base(p), func(t *testing.T) { checkAll(t, b) })
		n++
	}
	t.Logf("%d inputs", n)
}

// readCorpusFile decodes a "go test fuzz v1" file holding one []byte.
func readCorpusFile(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	lines := strings.SplitN(string(b), "\n", 2)
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		return nil, fmt.Errorf("not a fuzz corpus file")
	}
	v := strings.TrimSpace(lines[1])
	if !strings.HasPrefix(v, "[]byte(") || !strings.HasSuffix(v, ")") {
		return nil, fmt.Errorf("not a []byte value")
	}
	return unquote(v[len("[]byte(") : len(v)-1])
}

func TestErrorsNameEntryAndOffset(t *testing.T) {
	data := writeTar(t, tar.FormatPAX)
	// Break the checksum of the third entry's header.
	tr := NewReader(bytes.NewReader(data))
	var third int64
	for i := 0; i < 3; i++ {
		if _, err := tr.Next(); err != nil {
			t.Fatal(err)
		}
		third = tr.Offset()
	}
	bad := bytes.Clone(data)
	bad[third+offChksum] ^= 1
	tr = NewReader(bytes.NewReader(bad))
	var err error
	for err == nil {
		_, err = tr.Next()
	}
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, tar.ErrHeader) || e.Offset != third {
		t.Fatalf("got %v, want a tar.ErrHeader at byte %d", err, third)
	}
	// Truncated inside the data of Files/a.txt.
	tr = NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "Files/a.txt" {
			break
		}
	}
	cut := tr.DataOffset() + 2
	tr = NewReader(bytes.NewReader(data[:cut]))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "Files/a.txt" {
			break
		}
	}
	_, err = io.ReadAll(tr)
	if !errors.As(err, &e) || !errors.Is(err, io.ErrUnexpectedEOF) || e.Entry != "Files/a.txt" || e.Offset != cut {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF in Files/a.txt at byte %d", err, cut)
	}
	if !strings.Contains(err.Error(), "Files/a.txt") || !strings.Contains(err.Error(), fmt.Sprint(cut)) {
		t.Fatalf("message %q does not name the entry and offset", err)
	}
}

func TestDataSectionSkip(t *testing.T) {
	data := writeTar(t, tar.FormatPAX)
	f := writeAndOpen(t, filepath.Join(t.TempDir(), "l.tar"), data)
	tr := NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sf, off, n, ok := tr.DataSection()
		if h.Size > 0 != ok || (ok && (sf != f || n != h.Size || off != tr.DataOffset())) {
			t.Fatalf("%s: DataSection = %v, %d, %d, %v", h.Name, sf, off, n, ok)
		}
		if ok {
			if err := tr.Skip(n); err != nil {
				t.Fatal(err)
			}
			if m, err := tr.Read(make([]byte, 1)); m != 0 || err != io.EOF {
				t.Fatalf("%s: Read after Skip = %d, %v", h.Name, m, err)
			}
		}
	}
	if !reflect.DeepEqual(tr.err, io.EOF) {
		t.Fatalf("sticky error %v", tr.err)
	}
}

func unquote(s string) ([]byte, error) {
	v, err := strconv.Unquote(s)
	return []byte(v), err
}

// TestWriteCorpus writes tars made by GNU tar (sparse files in each of its sparse
// formats, long names and links) into testdata/fuzz/FuzzReader, when
// TARSTREAM_WRITE_CORPUS=1. The files are committed; this records how.
func TestWriteCorpus(t *testing.T) {
	if os.Getenv("TARSTREAM_WRITE_CORPUS") != "1" {
		t.Skip("set TARSTREAM_WRITE_CORPUS=1 to regenerate the seed corpus with GNU tar")
	}
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("no tar")
	}
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("begin"), 0)
	f.WriteAt([]byte("middle"), 4000)
	f.WriteAt([]byte("end"), 9000)
	f.Truncate(12000)
	f.Close()
	long := filepath.Join(src, strings.Repeat("d", 90), strings.Repeat("e", 90))
	os.MkdirAll(long, 0o755)
	os.WriteFile(filepath.Join(long, "f"), []byte("data"), 0o644)
	os.Symlink(strings.Repeat("target/", 20), filepath.Join(src, "ln"))
	os.Link(filepath.Join(long, "f"), filepath.Join(src, "hard"))
	cases := map[string][]string{
		"gnu-sparse-old":   {"--format=gnu", "--sparse"},
		"pax-sparse-0.0":   {"--format=posix", "--sparse", "--sparse-version=0.0"},
		"pax-sparse-0.1":   {"--format=posix", "--sparse", "--sparse-version=0.1"},
		"pax-sparse-1.0":   {"--format=posix", "--sparse", "--sparse-version=1.0"},
		"gnu-long-names":   {"--format=gnu"},
		"pax-long-names":   {"--format=posix"},
		"ustar-plain":      {"--format=ustar", "--exclude=./d*", "--exclude=./ln"},
		"v7-plain":         {"--format=v7", "--exclude=./d*", "--exclude=./ln"},
		"oldgnu-long-name": {"--format=oldgnu"},
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	os.MkdirAll(dir, 0o755)
	for name, args := range cases {
		out := filepath.Join(t.TempDir(), name+".tar")
		cmd := exec.Command("tar", append(append([]string{"-cf", out, "--owner=0", "--group=0", "--mtime=@1700000000", "--sort=name"}, args...), "-C", src, ".")...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.TrimRight(b, "\x00")
		b = append(b, make([]byte, blockPadding(int64(len(b)))+2*blockSize)...)
		writeCorpusFile(t, filepath.Join(dir, name), b)
		if len(b) > 3*blockSize {
			writeCorpusFile(t, filepath.Join(dir, name+"-cut"), b[:len(b)-3*blockSize-100])
		}
	}
}

func writeCorpusFile(t *testing.T, p string, b []byte) {
	if err := os.WriteFile(p, []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(b))+")\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// failingReader gives data, then an error other than io.EOF, as a truncated
// gzip stream does.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

// A source that fails, rather than ends, at any point of the stream (in a header,
// in data, in padding) fails the archive with that error, as archive/tar does;
// only io.EOF may end it early.
func TestSourceErrorsAreNotEOF(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i, size := range []int{5, 512, 700} {
		tw.WriteHeader(&tar.Header{Name: "f" + string(rune('a'+i)), Typeflag: tar.TypeReg, Size: int64(size), Mode: 0o644})
		tw.Write(bytes.Repeat([]byte{'x'}, size))
	}
	tw.Close()
	stream := b.Bytes()
	drain := func(r interface {
		Next() (*tar.Header, error)
		Read([]byte) (int, error)
	}) error {
		for {
			if _, err := r.Next(); err != nil {
				return err
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				return err
			}
		}
	}
	for cut := 1; cut < len(stream)-1024; cut++ {
		src := func() io.Reader { return &failingReader{data: stream[:cut], err: io.ErrUnexpectedEOF} }
		want := drain(tar.NewReader(src()))
		got := drain(NewReader(src()))
		if (want == io.EOF) != (got == io.EOF) || !errors.Is(got, io.ErrUnexpectedEOF) && got != io.EOF {
			t.Fatalf("stream cut at %d by a failing source: archive/tar %v, ours %v", cut, want, got)
		}
	}
}
