package cimview_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/internal/cimview"
	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/guid"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/winfile"
	wcim "github.com/hostcompute/hostcompute/wclayer/cim"
)

// buildLayer writes the sample layer tar for o as the CIM layer dir/name (with
// the given parent layers) and returns the .cim path.
func buildLayer(t testing.TB, dir, name string, o sampletar.Options, parents ...string) string {
	t.Helper()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(sampletar.Write(pw, o)) }()
	layer := filepath.Join(dir, name)
	cw, err := wcim.NewCimLayerWriter(context.Background(), layer, parents)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ociwclayer.DecodeTar(context.Background(), pr, cw.EntryWriter()); err != nil {
		cw.Abort()
		pr.CloseWithError(err)
		t.Fatal(err)
	}
	if err := cw.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return wcim.GetCimPathFromLayer(layer)
}

// want is what the view must show for one path, computed from the reader
// alone.
type want struct {
	path    string
	id      cimfs.FileID
	mode    uint32 // type bits
	size    int64
	info    winfile.BasicInfo
	nlink   uint32
	digest  [32]byte
	target  string            // symlink target, when known to the test
	xattrs  map[string][]byte // nil value: larger than Linux allows
	streams map[string][32]byte
	names   []string // directory: sorted entry names
}

// expected walks im with the reader and returns the entries by path ("" is
// the root) and the set of paths in walk order.
func expected(t testing.TB, im *cimfs.Image) (map[string]*want, []string) {
	t.Helper()
	out := map[string]*want{}
	var order []string
	links := map[cimfs.FileID]uint32{}
	var walk func(p string, id cimfs.FileID)
	walk = func(p string, id cimfs.FileID) {
		fi, err := im.StatID(id)
		if err != nil {
			t.Fatalf("stat %s: %v", p, err)
		}
		w := &want{path: p, id: id, info: fi.Info, xattrs: map[string][]byte{}, streams: map[string][32]byte{}}
		out[p] = w
		order = append(order, p)
		links[id]++
		at := binary.LittleEndian.AppendUint32(nil, fi.Info.FileAttributes)
		w.xattrs[cimview.XattrAttributes] = at
		var tb []byte
		for _, ft := range []winfile.Filetime{fi.Info.CreationTime, fi.Info.LastAccessTime, fi.Info.LastWriteTime, fi.Info.ChangeTime} {
			tb = binary.LittleEndian.AppendUint64(tb, uint64(ft))
		}
		w.xattrs[cimview.XattrTimes] = tb
		if sd, _ := fi.SecurityDescriptor(); sd != nil {
			w.xattrs[cimview.XattrSD] = sd
		}
		if ea, _ := fi.ExtendedAttributes(); ea != nil {
			w.xattrs[cimview.XattrEA] = ea
		}
		if rp, _ := fi.ReparseData(); rp != nil {
			w.xattrs[cimview.XattrReparse] = rp
		}
		for _, s := range fi.Streams {
			f, err := im.OpenStreamID(id, s.Name)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, s.Size)
			if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			w.streams[s.Name] = sha256.Sum256(b)
			if s.Size <= 64<<10 {
				w.xattrs[cimview.XattrADSPrefix+s.Name] = b
			} else {
				w.xattrs[cimview.XattrADSPrefix+s.Name] = nil
			}
		}
		switch {
		case fi.ReparseTag == winfile.ReparseTagSymlink || fi.ReparseTag == winfile.ReparseTagMountPoint:
			w.mode = cimview.ModeSymlink
		case fi.IsDir():
			w.mode = cimview.ModeDir
			w.nlink = 2
			ents, err := im.ReadDirID(id)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				w.names = append(w.names, e.Name)
				walk(path.Join(p, e.Name), e.ID)
				if out[path.Join(p, e.Name)].mode == cimview.ModeDir {
					w.nlink++
				}
			}
			sort.Strings(w.names)
		default:
			w.mode = cimview.ModeRegular
			w.size = fi.Size
			f, err := im.OpenID(id)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			if _, err := f.WriteTo(h); err != nil {
				t.Fatal(err)
			}
			copy(w.digest[:], h.Sum(nil))
		}
	}
	walk("", im.Root())
	for _, w := range out {
		if w.mode != cimview.ModeDir {
			w.nlink = links[w.id]
		}
	}
	return out, order
}

// knownTargets are the links of the sample layer and what they must read.
var knownTargets = map[string]string{
	"Files/special/symlink-file": "../Windows/System32/d0000/f00000.dll",
	"Files/special/symlink-dir":  "../Windows",
	"Files/special/junction":     "../ProgramData",
}

// copyDir copies the files of dir (not recursive) into a new temporary
// directory.
func copyDir(t testing.TB, dir string) string {
	t.Helper()
	out := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// metadataRegion returns the path of the metadata region (index 0) of the
// image's own region set: the file holding its tree.
func metadataRegion(t testing.TB, cimPath string) string {
	t.Helper()
	b, err := os.ReadFile(cimPath)
	if err != nil {
		t.Fatal(err)
	}
	var id [16]byte
	copy(id[:], b[32:48])
	g := guid.FromWindowsArray(id).String()
	ents, _ := os.ReadDir(filepath.Dir(cimPath))
	for _, e := range ents {
		if strings.EqualFold(e.Name(), "region_"+g+"_0") {
			return filepath.Join(filepath.Dir(cimPath), e.Name())
		}
	}
	t.Fatalf("no metadata region for %s", cimPath)
	return ""
}
