package hostcompute

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// entry is one file of a layer as a LayerReader returns it.
type entry struct {
	name   string
	size   int64
	info   *winfile.BasicInfo
	stream []byte
}

func readLayer(t *testing.T, r LayerReader) []entry {
	t.Helper()
	defer r.Close()
	var out []entry
	for {
		name, size, info, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("reading %s: %v", name, err)
		}
		out = append(out, entry{name: name, size: size, info: info, stream: b})
	}
}

// dataStream returns the DATA stream of a backup stream.
func dataStream(t *testing.T, b []byte) []byte {
	t.Helper()
	br := winfile.NewBackupReader(bytes.NewReader(b))
	for {
		h, err := br.Next()
		if err == io.EOF {
			t.Fatal("backup stream has no DATA stream")
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.ID == winfile.StreamData {
			d, err := io.ReadAll(br)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
}

func TestLegacyLayerRoundTrip(t *testing.T) {
	home := t.TempDir()
	info := DriverInfo{Flavour: 1, HomeDir: home}
	if err := CreateLayer(info, "base", ""); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(home, "base")
	for id, want := range map[string]bool{"base": true, "layer": false} {
		if ok, err := LayerExists(info, id); ok != want || err != nil {
			t.Errorf("LayerExists(%s) = %v, %v; want %v", id, ok, err, want)
		}
	}

	// Write a layer with one file, sent as a Win32 backup stream.
	parents := []string{base}
	w, err := NewLayerWriter(info, "layer", parents)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.(*FilterLayerWriter); !ok {
		t.Errorf("NewLayerWriter returned %T, want *FilterLayerWriter", w)
	}
	ft := winfile.NewFiletime(time.Date(2025, 3, 4, 5, 6, 7, 800, time.UTC))
	dirInfo := winfile.BasicInfo{CreationTime: ft, LastAccessTime: ft, LastWriteTime: ft, ChangeTime: ft, FileAttributes: winfile.AttrDirectory}
	fileInfo := winfile.BasicInfo{CreationTime: ft - 10, LastAccessTime: ft + 1, LastWriteTime: ft, ChangeTime: ft + 2, FileAttributes: winfile.AttrArchive}
	content := []byte("hello from the legacy API\r\n")
	var stream bytes.Buffer
	bw := winfile.NewBackupWriter(&stream)
	if err := bw.WriteHeader(&winfile.StreamHeader{ID: winfile.StreamData, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	if _, err := bw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"Add Files", func() error { return w.Add(`Files`, &dirInfo) }},
		{"Add hello.txt", func() error { return w.Add(`Files\hello.txt`, &fileInfo) }},
		{"Write hello.txt", func() error { _, err := w.Write(stream.Bytes()); return err }},
		{"Remove gone.txt", func() error { return w.Remove(`Files\gone.txt`) }},
		{"Close", w.Close},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
	}
	if ok, err := LayerExists(info, "layer"); !ok || err != nil {
		t.Fatalf("LayerExists(layer) after Close = %v, %v", ok, err)
	}

	// Read it back.
	r, err := NewLayerReader(info, "layer", parents)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.(*FilterLayerReader); !ok {
		t.Errorf("NewLayerReader returned %T, want *FilterLayerReader", r)
	}
	got := readLayer(t, r)
	byName := map[string]entry{}
	for _, e := range got {
		byName[e.name] = e
	}
	if len(got) != 3 {
		t.Errorf("read %d entries, want 3: %+v", len(got), got)
	}
	if e, ok := byName[`Files\hello.txt`]; !ok {
		t.Error(`Files\hello.txt not read back`)
	} else {
		if e.info == nil || *e.info != fileInfo {
			t.Errorf("hello.txt info %+v, want %+v", e.info, fileInfo)
		}
		if e.size != int64(len(content)) {
			t.Errorf("hello.txt size %d, want %d", e.size, len(content))
		}
		if d := dataStream(t, e.stream); !bytes.Equal(d, content) {
			t.Errorf("hello.txt data %q, want %q", d, content)
		}
	}
	if e, ok := byName[`Files\gone.txt`]; !ok || e.info != nil {
		t.Errorf(`Files\gone.txt read back as %+v, %v; want a removal`, e, ok)
	}
	if e, ok := byName[`Files`]; !ok || e.info == nil || *e.info != dirInfo {
		t.Errorf("Files read back as %+v, %v; want info %+v", e, ok, dirInfo)
	}

	// Through a transport folder and back; the imported layer is named by its full
	// path, with an empty HomeDir.
	export := filepath.Join(t.TempDir(), "export")
	if err := ExportLayer(info, "layer", export, parents); err != nil {
		t.Fatal(err)
	}
	again := filepath.Join(t.TempDir(), "again")
	if err := ImportLayer(DriverInfo{}, again, export, parents); err != nil {
		t.Fatal(err)
	}
	if chain, err := winlayer.Parents(again); err != nil || !reflect.DeepEqual(chain, parents) {
		t.Errorf("imported layer's parents %v, %v; want %v", chain, err, parents)
	}
	r2, err := NewLayerReader(DriverInfo{}, again, parents)
	if err != nil {
		t.Fatal(err)
	}
	if got2 := readLayer(t, r2); !reflect.DeepEqual(got2, got) {
		t.Errorf("imported layer reads\n%+v\nwant\n%+v", got2, got)
	}

	// Destroy.
	if err := DestroyLayer(info, "layer"); err != nil {
		t.Fatal(err)
	}
	if ok, err := LayerExists(info, "layer"); ok || err != nil {
		t.Errorf("LayerExists after DestroyLayer = %v, %v", ok, err)
	}
	if err := DestroyLayer(info, "layer"); err != nil {
		t.Errorf("destroying a missing layer: %v", err)
	}
	if _, err := os.Stat(filepath.Join(home, "layer")); !IsNotExist(err) {
		t.Errorf("layer folder after DestroyLayer: %v", err)
	}
}

func TestLayerPath(t *testing.T) {
	tests := []struct {
		name string
		info DriverInfo
		id   string
		want string
	}{
		{"home and id", DriverInfo{HomeDir: "/var/lib/layers"}, "abc", "/var/lib/layers/abc"},
		{"empty home, full path", DriverInfo{}, "/var/lib/layers/abc", "/var/lib/layers/abc"},
		{"flavour ignored", DriverInfo{Flavour: 1, HomeDir: "/h"}, "x", "/h/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := layerPath(tt.info, tt.id); got != tt.want {
				t.Errorf("layerPath(%+v, %q) = %q, want %q", tt.info, tt.id, got, tt.want)
			}
		})
	}
}

func TestCreateLayerExisting(t *testing.T) {
	info := DriverInfo{HomeDir: t.TempDir()}
	if err := CreateLayer(info, "l", ""); err != nil {
		t.Fatal(err)
	}
	if err := CreateLayer(info, "l", ""); !errors.Is(err, os.ErrExist) {
		t.Errorf("creating over a layer: %v, want an error matching fs.ErrExist", err)
	}
}

func TestZeroFilterLayerReaderWriter(t *testing.T) {
	var r FilterLayerReader
	if _, _, _, err := r.Next(); err == nil {
		t.Error("Next on a zero FilterLayerReader succeeded")
	}
	if _, err := r.Read(make([]byte, 1)); err == nil {
		t.Error("Read on a zero FilterLayerReader succeeded")
	}
	if err := r.Close(); err == nil {
		t.Error("Close on a zero FilterLayerReader succeeded")
	}
	var w FilterLayerWriter
	if err := w.Add(`Files`, &winfile.BasicInfo{}); err == nil {
		t.Error("Add on a zero FilterLayerWriter succeeded")
	}
	if err := w.AddLink(`Files\a`, `Files\b`); err == nil {
		t.Error("AddLink on a zero FilterLayerWriter succeeded")
	}
	if err := w.Remove(`Files\a`); err == nil {
		t.Error("Remove on a zero FilterLayerWriter succeeded")
	}
	if _, err := w.Write([]byte{0}); err == nil {
		t.Error("Write on a zero FilterLayerWriter succeeded")
	}
	if err := w.Close(); err == nil {
		t.Error("Close on a zero FilterLayerWriter succeeded")
	}
}

func TestGetSharedBaseImagesAndIsTP4(t *testing.T) {
	if _, err := GetSharedBaseImages(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("GetSharedBaseImages: %v, want an error matching errors.ErrUnsupported", err)
	}
	if IsTP4() {
		t.Error("IsTP4() = true")
	}
}
