package tarstream

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writerHeaders are the shapes layer exports write, and neighbours of them that
// take archive/tar's encoder.
func writerHeaders() []*tar.Header {
	mt := time.Unix(1700000000, 123456700)
	rec := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	long := strings.Repeat("dir/", 30) + "file"
	return []*tar.Header{
		{Name: "Files/a.txt", Typeflag: tar.TypeReg, Mode: 0o100000, Size: 5, ModTime: mt, AccessTime: mt, ChangeTime: mt, Format: tar.FormatPAX,
			PAXRecords: rec("MSWINDOWS.fileattr", "32", "LIBARCHIVE.creationtime", "1700000000.1", "MSWINDOWS.rawsd", "AQAEgBQAAAA=")},
		{Name: "Files/dir", Typeflag: tar.TypeDir, Mode: 0o40000, ModTime: mt, AccessTime: mt, ChangeTime: mt, Format: tar.FormatPAX,
			PAXRecords: rec("MSWINDOWS.fileattr", "16")},
		{Name: "Files/link", Typeflag: tar.TypeSymlink, Linkname: `C:\target`, Mode: 0o120000, ModTime: time.Unix(-11644473600, 0), AccessTime: mt, Format: tar.FormatPAX,
			PAXRecords: rec("MSWINDOWS.mountpoint", "1")},
		{Name: "Files/hard", Typeflag: tar.TypeLink, Linkname: "Files/a.txt", Mode: 0o644, ModTime: mt, Format: tar.FormatPAX, PAXRecords: rec("MSWINDOWS.fileattr", "32")},
		{Name: "Files/a.txt:stream", Typeflag: tar.TypeReg, Mode: 0o100000, Size: 3, ModTime: mt, AccessTime: mt, ChangeTime: mt, Format: tar.FormatPAX},
		{Name: "Files/.wh.gone", Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatPAX},
		{Name: "Files/" + long, Typeflag: tar.TypeReg, Size: 700, ModTime: mt, Format: tar.FormatPAX, PAXRecords: rec("MSWINDOWS.fileattr", "32")},
		{Name: "Files/" + long + "/", Typeflag: tar.TypeDir, ModTime: mt, AccessTime: mt, Format: tar.FormatPAX},
		{Name: "Files/" + strings.Repeat("x", 120), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatPAX},
		{Name: "Files/ünïcode", Typeflag: tar.TypeSymlink, Linkname: "Fïles/" + long, ModTime: mt, Format: tar.FormatPAX, PAXRecords: rec("MSWINDOWS.xattr.A", "AA==")},
		{Name: "Files/big", Typeflag: tar.TypeReg, Size: 1 << 34, ModTime: mt, Format: tar.FormatPAX, PAXRecords: rec("MSWINDOWS.fileattr", "32")},
		{Name: "Files/old", Typeflag: tar.TypeReg, ModTime: time.Unix(-5, 500), AccessTime: time.Unix(1<<40, 1), ChangeTime: time.Unix(-1, 999999999), Format: tar.FormatPAX},
		{Name: "Files/zero", Typeflag: tar.TypeReg, AccessTime: mt, Format: tar.FormatPAX},
		{Name: "Files/basic", Typeflag: tar.TypeReg, ModTime: mt, Format: tar.FormatPAX, PAXRecords: rec("path", "Files/basic", "MSWINDOWS.fileattr", "1")},
		{Name: "Files/bad", Typeflag: tar.TypeReg, ModTime: mt, Format: tar.FormatPAX, PAXRecords: rec("a=b", "1")},
		{Name: "Files/slash/", Typeflag: tar.TypeReg, ModTime: mt, Format: tar.FormatPAX, PAXRecords: rec("k", "v")},
		{Name: "usr/bin/sh", Typeflag: tar.TypeReg, Mode: 0o755, Uid: 1000, Gid: 1000, Uname: "u", Gname: "g", Size: 1, ModTime: time.Unix(1, 0)},
		{Name: "Files/" + strings.Repeat("d", 99) + "/", Typeflag: tar.TypeDir, ModTime: mt, AccessTime: mt, Format: tar.FormatPAX},
		{Name: "Files/recs", Typeflag: tar.TypeReg, ModTime: mt, Format: tar.FormatPAX, PAXRecords: rec("k", strings.Repeat("v", 90), "k2", strings.Repeat("w", 1000))},
	}
}

// encodeBoth writes headers (and data of their sizes, capped) with archive/tar
// and with Writer, and returns both streams and errors per header.
func encodeBoth(t testing.TB, hdrs []*tar.Header) (want, got []byte, wantErrs, gotErrs []error) {
	var wb, gb bytes.Buffer
	aw, tw := tar.NewWriter(&wb), NewWriter(&gb)
	for _, h := range hdrs {
		if h.Size > 1<<20 {
			continue
		}
		ea, eb := aw.WriteHeader(h), tw.WriteHeader(h)
		wantErrs, gotErrs = append(wantErrs, ea), append(gotErrs, eb)
		if ea != nil || eb != nil {
			continue
		}
		data := bytes.Repeat([]byte{'d'}, int(h.Size))
		if isHeaderOnly(h.Typeflag) {
			data = nil
		}
		if _, err := aw.Write(data); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	aw.Close()
	tw.Close()
	return wb.Bytes(), gb.Bytes(), wantErrs, gotErrs
}

func TestWriterMatchesArchiveTar(t *testing.T) {
	hdrs := writerHeaders()
	for _, h := range hdrs {
		want, got, we, ge := encodeBoth(t, []*tar.Header{h})
		if len(we) == 0 {
			continue // too large to write here; TestWriterBigHeaderFallsBack
		}
		if (we[0] == nil) != (ge[0] == nil) {
			t.Fatalf("%s: archive/tar error %v, ours %v", h.Name, we[0], ge[0])
		}
		if !bytes.Equal(want, got) {
			t.Errorf("%s: bytes differ from archive/tar's (%d and %d bytes)", h.Name, len(want), len(got))
		}
	}
	want, got, _, _ := encodeBoth(t, hdrs)
	if !bytes.Equal(want, got) {
		t.Errorf("the whole stream differs from archive/tar's")
	}
}

func TestWriterBigHeaderFallsBack(t *testing.T) {
	// A size beyond the octal field needs a size record: archive/tar writes it.
	for _, h := range writerHeaders() {
		if h.Size <= 1<<20 {
			continue
		}
		var wb, gb bytes.Buffer
		if err := tar.NewWriter(&wb).WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw := NewWriter(&gb)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Flush()
		if !bytes.Equal(wb.Bytes(), gb.Bytes()) {
			t.Errorf("%s: header differs", h.Name)
		}
	}
}

func TestWriterDataErrors(t *testing.T) {
	tw := NewWriter(io.Discard)
	if err := tw.WriteHeader(&tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 3, Format: tar.FormatPAX, PAXRecords: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	if n, err := tw.Write([]byte("abcd")); n != 3 || !errors.Is(err, tar.ErrWriteTooLong) {
		t.Fatalf("Write past the size: %d, %v", n, err)
	}
	tw = NewWriter(io.Discard)
	tw.WriteHeader(&tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 3})
	tw.Write([]byte("a"))
	if err := tw.Close(); err == nil || !strings.Contains(err.Error(), "missed writing 2 bytes") {
		t.Fatalf("Close with data missing: %v", err)
	}
}

// TestWriteFile writes file data through every path: in place, buffered reads and
// the kernel copy to a regular file and to a pipe, and compares with archive/tar.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	sizes := []int{0, 1, 511, 512, 4096 + 3, KernelCopyMin - 1, KernelCopyMin, 3<<20 + 17}
	var files []*os.File
	var want bytes.Buffer
	aw := tar.NewWriter(&want)
	for i, n := range sizes {
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(j*7 + i)
		}
		p := filepath.Join(dir, "f"+string(rune('a'+i)))
		files = append(files, writeAndOpen(t, p, data))
		h := &tar.Header{Name: "Files/" + filepath.Base(p), Typeflag: tar.TypeReg, Size: int64(n), ModTime: time.Unix(5, 5), Format: tar.FormatPAX}
		aw.WriteHeader(h)
		aw.Write(data)
	}
	aw.Close()
	write := func(t *testing.T, out io.Writer, inPlace bool) {
		tw := NewWriter(out)
		for i, f := range files {
			n := int64(sizes[i])
			if err := tw.WriteHeader(&tar.Header{Name: "Files/" + filepath.Base(f.Name()), Typeflag: tar.TypeReg, Size: n, ModTime: time.Unix(5, 5), Format: tar.FormatPAX}); err != nil {
				t.Fatal(err)
			}
			if inPlace && n <= writeBufferSize {
				if err := tw.WriteInPlace(int(n), func(p []byte) error { _, err := f.ReadAt(p, 0); return err }); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if k, err := tw.WriteFile(f, 0, n); err != nil || k != n {
				t.Fatalf("WriteFile %s: %d of %d, %v", f.Name(), k, n, err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("buffer", func(t *testing.T) {
		var b bytes.Buffer
		write(t, &b, false)
		if !bytes.Equal(b.Bytes(), want.Bytes()) {
			t.Fatal("stream differs from archive/tar's")
		}
	})
	t.Run("in place", func(t *testing.T) {
		var b bytes.Buffer
		write(t, &b, true)
		if !bytes.Equal(b.Bytes(), want.Bytes()) {
			t.Fatal("stream differs from archive/tar's")
		}
	})
	t.Run("regular file", func(t *testing.T) {
		out, err := os.Create(filepath.Join(dir, "out.tar"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		write(t, out, false)
		got, _ := os.ReadFile(out.Name())
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatal("stream differs from archive/tar's")
		}
	})
	t.Run("pipe", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan []byte)
		go func() { b, _ := io.ReadAll(r); done <- b }()
		write(t, w, false)
		w.Close()
		if got := <-done; !bytes.Equal(got, want.Bytes()) {
			t.Fatal("stream differs from archive/tar's")
		}
	})
	t.Run("short file", func(t *testing.T) {
		out, err := os.Create(filepath.Join(dir, "short.tar"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		tw := NewWriter(out)
		f := files[len(files)-1]
		n := int64(sizes[len(sizes)-1])
		tw.WriteHeader(&tar.Header{Name: "x", Typeflag: tar.TypeReg, Size: n + 10, Format: tar.FormatPAX, ModTime: time.Unix(1, 1)})
		if k, err := tw.WriteFile(f, 0, n+10); k != n || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("WriteFile past the end of the file: %d, %v", k, err)
		}
	})
}

// FuzzWriter holds Writer to archive/tar's bytes and errors for headers built from
// the fuzzer's input, around the shapes layers write.
func FuzzWriter(f *testing.F) {
	for _, h := range writerHeaders() {
		f.Add(h.Name, h.Linkname, h.Typeflag, h.Mode, h.Size%4096, h.ModTime.UnixNano(), h.AccessTime.Unix(), int64(len(h.PAXRecords)), "MSWINDOWS.fileattr", "32")
	}
	f.Fuzz(func(t *testing.T, name, link string, flag byte, mode, size, mtime, atime, nrec int64, key, val string) {
		if size < 0 || size > 1<<16 {
			size = 0
		}
		h := &tar.Header{Name: name, Linkname: link, Typeflag: flag, Mode: mode, Size: size, Format: tar.FormatPAX,
			ModTime: time.Unix(0, mtime)}
		if atime != 0 {
			h.AccessTime = time.Unix(atime, mtime%1e9)
		}
		if nrec&1 != 0 {
			h.ChangeTime = time.Unix(mtime/3, 0)
		}
		if nrec > 0 {
			h.PAXRecords = map[string]string{key: val}
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], uint64(nrec))
			h.PAXRecords["MSWINDOWS.rawsd"] = string(b[:])
		}
		want, got, we, ge := encodeBoth(t, []*tar.Header{h, {Name: "next", Typeflag: tar.TypeReg, Format: tar.FormatPAX, ModTime: time.Unix(1, 1)}})
		for i := range we {
			if (we[i] == nil) != (ge[i] == nil) {
				t.Fatalf("header %d: archive/tar error %v, ours %v", i, we[i], ge[i])
			}
		}
		if !bytes.Equal(want, got) {
			t.Fatalf("bytes differ from archive/tar's for %+v", h)
		}
	})
}

// TestWriteFileOtherFS copies from a file on another file system (tmpfs under
// /dev/shm, where there is one) into a file in the test's directory.
func TestWriteFileOtherFS(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "tarstream-")
	if err != nil {
		t.Skip("no /dev/shm:", err)
	}
	defer os.RemoveAll(shm)
	data := bytes.Repeat([]byte("0123456789abcdef"), (KernelCopyMin+100)/16)
	src := filepath.Join(shm, "src")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, err := os.Create(filepath.Join(t.TempDir(), "out.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	h := &tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: int64(len(data)), ModTime: time.Unix(1, 1), Format: tar.FormatPAX}
	tw := NewWriter(out)
	tw.WriteHeader(h)
	if n, err := tw.WriteFile(f, 0, h.Size); err != nil || n != h.Size {
		t.Fatalf("WriteFile: %d, %v", n, err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	aw := tar.NewWriter(&want)
	aw.WriteHeader(h)
	aw.Write(data)
	aw.Close()
	if got, _ := os.ReadFile(out.Name()); !bytes.Equal(got, want.Bytes()) {
		t.Fatal("stream differs from archive/tar's")
	}
}

// TestWriterBufferBounded writes many entries whose headers, data and padding do not
// divide the buffer evenly, with a large header now and then, and checks that the
// buffer never stays larger than writeBufferSize: memory must not grow with the
// number of entries.
func TestWriterBufferBounded(t *testing.T) {
	tw := NewWriter(io.Discard)
	sd := strings.Repeat("A", 3000)
	data := make([]byte, 70_001)
	peak := 0
	for i := 0; i < 20_000; i++ {
		recs := map[string]string{"MSWINDOWS.rawsd": sd}
		if i%1000 == 999 {
			recs["MSWINDOWS.rawsd"] = strings.Repeat("B", 900<<10) // more than the room the buffer keeps
		}
		n := i % len(data)
		hdr := &tar.Header{Name: "Files/f" + strings.Repeat("x", i%200), Typeflag: tar.TypeReg, Size: int64(n), Mode: 0o644, Format: tar.FormatPAX, PAXRecords: recs}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		if i%1000 != 999 {
			peak = max(peak, cap(tw.buf))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if peak > writeBufferSize {
		t.Errorf("buffer grew to %d bytes, want at most %d", peak, writeBufferSize)
	}
}

// A regular-file output is written at offsets from a background goroutine;
// the stream must be the bytes a buffer gets, wherever the file's position
// started, with large files copied by the kernel between buffered parts, and
// the position must end after the stream. An output opened for appending is
// written in order instead.
func TestWriterRegularFileOutput(t *testing.T) {
	dir := t.TempDir()
	var srcs []*os.File
	for i, size := range []int{KernelCopyMin, 3 << 20, KernelCopyMin + 1} {
		p := filepath.Join(dir, "src"+string(rune('a'+i)))
		data := bytes.Repeat([]byte{byte('A' + i)}, size)
		binary.BigEndian.PutUint64(data, uint64(i))
		srcs = append(srcs, writeAndOpen(t, p, data))
	}
	// Enough small entries between the large ones to fill several buffers.
	write := func(tw *Writer) error {
		for i := range 3000 {
			small := bytes.Repeat([]byte{byte(i)}, i%1500)
			if err := tw.WriteHeader(&tar.Header{Name: "f" + strings.Repeat("x", i%90), Typeflag: tar.TypeReg, Size: int64(len(small)), Format: tar.FormatPAX, ModTime: time.Unix(int64(i), 0)}); err != nil {
				return err
			}
			if i%2 == 0 {
				if _, err := tw.Write(small); err != nil {
					return err
				}
			} else if err := tw.WriteInPlace(len(small), func(p []byte) error { copy(p, small); return nil }); err != nil {
				return err
			}
			if i%1000 == 999 {
				src := srcs[i/1000]
				fi, _ := src.Stat()
				if err := tw.WriteHeader(&tar.Header{Name: src.Name(), Typeflag: tar.TypeReg, Size: fi.Size(), Format: tar.FormatPAX}); err != nil {
					return err
				}
				if n, err := tw.WriteFile(src, 0, fi.Size()); err != nil || n != fi.Size() {
					return errors.Join(err, errors.New("short WriteFile"))
				}
			}
			if i == 1500 {
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if i == 2500 {
				// Larger than the buffer: written straight from the caller's slice.
				big := bytes.Repeat([]byte("big"), 1<<20)
				if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: int64(len(big)), Format: tar.FormatPAX}); err != nil {
					return err
				}
				if _, err := tw.Write(big); err != nil {
					return err
				}
			}
		}
		return tw.Close()
	}
	var want bytes.Buffer
	if err := write(NewWriter(&want)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		flags int
	}{{"regular", os.O_RDWR}, {"append", os.O_RDWR | os.O_APPEND}} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, "out-"+c.name)
			preamble := []byte("preamble: the stream starts at the file's position\n")
			if err := os.WriteFile(p, preamble, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, c.flags, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Seek(int64(len(preamble)), io.SeekStart); err != nil {
				t.Fatal(err)
			}
			tw := NewWriter(f)
			if err := write(tw); err != nil {
				t.Fatal(err)
			}
			if (tw.bg != nil) != (c.flags&os.O_APPEND == 0) {
				t.Fatalf("background writes: %v, want them only without O_APPEND", tw.bg != nil)
			}
			end, err := f.Seek(0, io.SeekCurrent)
			if err != nil || end != int64(len(preamble)+want.Len()) {
				t.Fatalf("position after Close %d (%v), want %d", end, err, len(preamble)+want.Len())
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:len(preamble)], preamble) || !bytes.Equal(got[len(preamble):], want.Bytes()) {
				t.Fatalf("file output (%d bytes) differs from the buffer's (%d bytes after the preamble)", len(got), want.Len())
			}
		})
	}
}

// writeAndOpen writes data to a new file p and opens it for reading; the file
// is closed when the test ends.
func writeAndOpen(t testing.TB, p string, data []byte) *os.File {
	t.Helper()
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
