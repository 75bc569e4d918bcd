package ocilayer

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"path"
	"strings"
	"testing"
)

func validatorSeed(hdrs ...tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		h.Format = tar.FormatPAX
		tw.WriteHeader(&h)
		tw.Write(make([]byte, h.Size))
	}
	tw.Close()
	return buf.Bytes()
}

// local reports whether a checked name stays in the root: relative, clean, no "..".
func local(n string) bool {
	return n == "." || n != "" && !strings.HasPrefix(n, "/") && path.Clean(n) == n && n != ".." && !strings.HasPrefix(n, "../")
}

// FuzzValidator runs arbitrary tars through the Linux layer rules, with and without
// a base. Properties: every verdict names local paths only; whatever is accepted
// stays consistent (a hard link's target is not a directory the layer made, nothing
// is accepted below a non-directory the layer made); refusals are of the
// documented classes.
func FuzzValidator(f *testing.F) {
	f.Add(validatorSeed(
		tar.Header{Typeflag: tar.TypeDir, Name: "a/", Mode: 0o755},
		tar.Header{Typeflag: tar.TypeReg, Name: "a/b", Size: 4},
		tar.Header{Typeflag: tar.TypeLink, Name: "a/c", Linkname: "a/b"},
		tar.Header{Typeflag: tar.TypeSymlink, Name: "a/d", Linkname: "/"},
		tar.Header{Typeflag: tar.TypeReg, Name: "a/d/x"},
	))
	f.Add(validatorSeed(
		tar.Header{Typeflag: tar.TypeReg, Name: "d/.wh..wh..opq"},
		tar.Header{Typeflag: tar.TypeReg, Name: ".wh.d"},
		tar.Header{Typeflag: tar.TypeReg, Name: "d/.wh..."},
		tar.Header{Typeflag: tar.TypeReg, Name: "../x"},
	))
	f.Add(validatorSeed(
		tar.Header{Typeflag: tar.TypeDir, Name: "d/", PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}},
		tar.Header{Typeflag: tar.TypeLink, Name: "l", Linkname: "d"},
		tar.Header{Typeflag: tar.TypeReg, Name: "d", Size: 1},
		tar.Header{Typeflag: tar.TypeLink, Name: "m", Linkname: "d/x"},
	))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, opts := range [][]ValidatorOption{nil, {WithoutBase()}} {
			v := NewValidator(opts...)
			made := map[string]EntryType{}
			tr := tar.NewReader(bytes.NewReader(b))
			for {
				hdr, err := tr.Next()
				if err == io.EOF || err != nil && !errors.Is(err, tar.ErrInsecurePath) {
					break
				}
				e := EntryFromHeader(hdr)
				c, err := v.Check(&e)
				if err != nil {
					if !errors.Is(err, ErrInvalidEntry) && !errors.Is(err, ErrInsecurePath) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooLarge) {
						t.Fatalf("%q: error %v of no documented class", hdr.Name, err)
					}
					break
				}
				if c.Action == Ignore {
					continue
				}
				if !local(c.Name) || c.Target != "" && !local(c.Target) {
					t.Fatalf("%q: verdict %+v names a path outside the root", hdr.Name, c)
				}
				if c.Action != Create {
					continue
				}
				for p := path.Dir(c.Name); p != "."; p = path.Dir(p) {
					if k, ok := made[p]; ok && k != TypeDir {
						t.Fatalf("%q accepted below %s, a non-directory of the layer", hdr.Name, p)
					}
				}
				if e.Type == TypeLink && made[c.Target] == TypeDir {
					t.Fatalf("%q: hard link to the directory %s accepted", hdr.Name, c.Target)
				}
				if e.Type != TypeDir {
					for n := range made {
						if strings.HasPrefix(n, c.Name+"/") {
							delete(made, n)
						}
					}
				}
				made[c.Name] = e.Type
			}
		}
	})
}
