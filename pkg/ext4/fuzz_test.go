package ext4_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/ext4"
)

// memOutput is an in-memory Output.
type memOutput struct{ b []byte }

func (m *memOutput) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.Truncate(end)
	}
	return copy(m.b[off:], p), nil
}

func (m *memOutput) Truncate(n int64) error {
	if n <= int64(len(m.b)) {
		m.b = m.b[:n]
		return nil
	}
	m.b = append(m.b, make([]byte, n-int64(len(m.b)))...)
	return nil
}

func (m *memOutput) ReadAt(p []byte, off int64) (int, error) {
	return copy(p, m.b[off:]), nil
}

// FuzzBuild feeds arbitrary bytes as a tar stream: Build must return an *Error or an
// image whose size matches its superblock; every 16th image (by input hash) must pass
// e2fsck -fn in native mode.
func FuzzBuild(f *testing.F) {
	f.Add(byte(0), makeTar(f, []entry{dir("a/", 0o755), file("a/b", 0o644, []byte("hello")), symlink("a/c", "b"), hardlink("a/d", "a/b")}))
	f.Add(byte(1), makeTar(f, []entry{file("x", 0o644, randBytes(1, 300)), file("x", 0o600, []byte("y")), file("d/.wh.e", 0o644, nil), file("d/.wh..wh..opq", 0o644, nil)}))
	f.Add(byte(2), makeTar(f, []entry{{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "c", Devmajor: 1, Devminor: 3}}, {hdr: tar.Header{Typeflag: tar.TypeReg, Name: "x", PAXRecords: map[string]string{"SCHILY.xattr.user.a": "b"}}}}))
	f.Add(byte(3), makeTar(f, []entry{symlink("a", "/etc"), file("a/passwd", 0o644, nil)}))
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		// Small limits keep each run cheap: sparse entries can claim huge sizes.
		opts := []ext4.Option{ext4.WithMaximumDiskSize(64 << 20), ext4.WithMaximumFileSize(4 << 20)}
		compat := mode&1 != 0
		if compat {
			opts = append(opts, ext4.WithHcsshimCompat())
		}
		if mode&2 != 0 {
			opts = append(opts, ext4.WithInlineData())
		}
		if mode&4 != 0 {
			opts = append(opts, ext4.WithConvertWhiteouts())
		}
		out := &memOutput{}
		res, err := ext4.Build(context.Background(), out, bytes.NewReader(data), opts...)
		if err != nil {
			var e *ext4.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *ext4.Error: %v", err, err)
			}
			if len(out.b) != 0 {
				t.Fatalf("failed build left %d bytes", len(out.b))
			}
			return
		}
		if int64(len(out.b)) != res.Size {
			t.Fatalf("image is %d bytes, result says %d", len(out.b), res.Size)
		}
		if n, err := ext4.FileSystemSize(out); err != nil || n != res.Size {
			t.Fatalf("superblock size %d (%v), want %d", n, err, res.Size)
		}
		if !compat && crc32.ChecksumIEEE(data)%16 == 0 {
			p := filepath.Join(t.TempDir(), "img")
			if err := os.WriteFile(p, out.b, 0o644); err != nil {
				t.Fatal(err)
			}
			requireClean(t, p)
		}
	})
}
