package wclayer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// stream is one backup stream of a test file.
type stream struct {
	h    winfile.StreamHeader
	data []byte
}

func encodeStreams(t *testing.T, ss []stream) []byte {
	t.Helper()
	var buf bytes.Buffer
	bw := winfile.NewBackupWriter(&buf)
	for _, s := range ss {
		h := s.h
		h.Size = int64(len(s.data))
		if err := bw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := bw.Write(s.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type testFile struct {
	name    string
	info    winfile.BasicInfo
	streams []stream
	link    string // AddLink target
	remove  bool
}

func info(attrs uint32) winfile.BasicInfo {
	t := winfile.NewFiletime(time.Date(2025, 1, 2, 3, 4, 5, 600700800, time.UTC))
	return winfile.BasicInfo{CreationTime: t - 100, LastAccessTime: t + 1, LastWriteTime: t, ChangeTime: t + 7, FileAttributes: attrs}
}

var sd = sampletar.SecurityDescriptors[0]

func TestLayerWriterReaderBackupStreams(t *testing.T) {
	ctx := context.Background()
	eas, _ := winfile.EncodeExtendedAttributes([]winfile.ExtendedAttribute{{Name: "USER.A", Value: []byte("one")}, {Name: "B", Value: []byte{0, 1, 2}}})
	symlink, _ := winfile.NewLinkReparsePoint(`..\target.txt`, false).Encode()
	junction, _ := winfile.NewLinkReparsePoint(`C:\ProgramData`, true).Encode()
	objectID := bytes.Repeat([]byte{0xab}, 64)
	sparseData := bytes.Repeat([]byte("S"), 70000)
	files := []testFile{
		{name: `Files`, info: info(winfile.AttrDirectory), streams: []stream{{h: winfile.StreamHeader{ID: winfile.StreamSecurityData, Attributes: winfile.StreamAttrContainsSecurity}, data: sd}}},
		{name: `Files\dir`, info: info(winfile.AttrDirectory), streams: []stream{
			{h: winfile.StreamHeader{ID: winfile.StreamSecurityData, Attributes: winfile.StreamAttrContainsSecurity}, data: sd},
			{h: winfile.StreamHeader{ID: winfile.StreamAlternateData, Name: ":dirstream:$DATA"}, data: []byte("on a directory")},
		}},
		{name: `Files\dir\all.txt`, info: info(winfile.AttrArchive | winfile.AttrHidden), streams: []stream{
			{h: winfile.StreamHeader{ID: winfile.StreamSecurityData, Attributes: winfile.StreamAttrContainsSecurity}, data: sd},
			{h: winfile.StreamHeader{ID: winfile.StreamEAData}, data: eas},
			{h: winfile.StreamHeader{ID: winfile.StreamData}, data: []byte("hello, layer")},
			// Alternate streams in the order Windows lists them (upcased names sorted).
			{h: winfile.StreamHeader{ID: winfile.StreamAlternateData, Name: ":big:$DATA"}, data: bytes.Repeat([]byte("ads"), 100000)},
			{h: winfile.StreamHeader{ID: winfile.StreamAlternateData, Name: ":Zone.Identifier:$DATA"}, data: []byte("[ZoneTransfer]\r\nZoneId=3")},
			{h: winfile.StreamHeader{ID: winfile.StreamObjectID}, data: objectID},
		}},
		{name: `Files\dir\nodata`, info: info(winfile.AttrArchive)},
		{name: `Files\dir\emptydata`, info: info(winfile.AttrArchive), streams: []stream{{h: winfile.StreamHeader{ID: winfile.StreamData}}}},
		{name: `Files\dir\link.txt`, info: info(winfile.AttrArchive | winfile.AttrReparsePoint), streams: []stream{
			{h: winfile.StreamHeader{ID: winfile.StreamReparseData}, data: symlink},
		}},
		{name: `Files\dir\junction`, info: info(winfile.AttrDirectory | winfile.AttrReparsePoint), streams: []stream{
			{h: winfile.StreamHeader{ID: winfile.StreamReparseData}, data: junction},
		}},
		{name: `Files\dir\sparse.bin`, info: info(winfile.AttrArchive | winfile.AttrSparseFile), streams: []stream{
			{h: winfile.StreamHeader{ID: winfile.StreamData, Attributes: winfile.StreamAttrSparse}},
			{h: winfile.StreamHeader{ID: winfile.StreamSparseBlock, Attributes: winfile.StreamAttrSparse, Offset: 1 << 20}, data: sparseData},
			{h: winfile.StreamHeader{ID: winfile.StreamSparseBlock, Attributes: winfile.StreamAttrSparse, Offset: 4 << 20}, data: sparseData},
			{h: winfile.StreamHeader{ID: winfile.StreamSparseBlock, Attributes: winfile.StreamAttrSparse, Offset: 8 << 20}},
		}},
		{name: `Files\dir\hardlink.txt`, link: `Files\dir\all.txt`},
		{name: `Files\gone.txt`, remove: true},
		{name: `Hives`, info: info(winfile.AttrDirectory)},
		{name: `Hives\System_Delta`, info: info(winfile.AttrArchive), streams: []stream{{h: winfile.StreamHeader{ID: winfile.StreamData}, data: []byte("regf...")}}},
	}
	dir := t.TempDir()
	parent := filepath.Join(dir, "parent")
	if err := CreateLayer(ctx, parent, ""); err != nil {
		t.Fatal(err)
	}
	layer := filepath.Join(dir, "layer")
	w, err := NewLayerWriter(ctx, layer, []string{parent})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		switch {
		case f.remove:
			err = w.Remove(f.name)
		case f.link != "":
			err = w.AddLink(f.name, f.link)
		default:
			if err = w.Add(f.name, &f.info); err == nil {
				b := encodeStreams(t, f.streams)
				// Feed the stream in odd-sized pieces.
				for len(b) > 0 && err == nil {
					n := min(len(b), 777)
					_, err = w.Write(b[:n])
					b = b[n:]
				}
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// Read back: every stream must come back byte for byte, in order.
	r, err := NewLayerReader(ctx, layer, []string{parent})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := map[string]testFile{}
	for _, f := range files {
		want[f.name] = f
	}
	seen := 0
	for {
		name, size, fi, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen++
		f, ok := want[name]
		if !ok {
			t.Fatalf("unexpected entry %s", name)
		}
		if f.remove {
			if fi != nil {
				t.Errorf("%s: removal read back with file info", name)
			}
			continue
		}
		if f.link != "" {
			f = want[f.link]
		}
		if *fi != f.info {
			t.Errorf("%s: info %+v, want %+v", name, *fi, f.info)
		}
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == `Files\dir\sparse.bin` {
			// Allocated ranges come back at the filesystem's block granularity, so
			// compare the logical content.
			if !bytes.Equal(logical(t, got), logical(t, encodeStreams(t, f.streams))) {
				t.Errorf("%s: sparse content differs", name)
			}
		} else if wantStream := encodeStreams(t, f.streams); !bytes.Equal(got, wantStream) {
			t.Errorf("%s: backup stream differs (%d bytes, want %d)\n got %x\nwant %x", name, len(got), len(wantStream), head(got), head(wantStream))
		}
		if name == `Files\dir\sparse.bin` && size != 8<<20 {
			t.Errorf("sparse size %d", size)
		}
	}
	if seen != len(files) {
		t.Errorf("read %d entries, want %d", seen, len(files))
	}
	// The sparse file is sparse on disk too.
	var st os.FileInfo
	if st, err = os.Stat(filepath.Join(layer, "Files/dir/sparse.bin")); err != nil || st.Size() != 8<<20 {
		t.Fatalf("sparse.bin: %v %v", st, err)
	}
}

// logical expands the data stream of a backup stream, sparse blocks included.
func logical(t *testing.T, b []byte) []byte {
	t.Helper()
	br := winfile.NewBackupReader(bytes.NewReader(b))
	var out []byte
	for {
		h, err := br.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(br)
		switch h.ID {
		case winfile.StreamData:
			out = append(out, data...)
		case winfile.StreamSparseBlock:
			if end := h.Offset + int64(len(data)); int64(len(out)) < end {
				out = append(out, make([]byte, end-int64(len(out)))...)
			}
			copy(out[h.Offset:], data)
		}
	}
}

func head(b []byte) []byte { return b[:min(len(b), 96)] }

func TestBadBackupStreamLeavesNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w, err := NewLayerWriter(ctx, filepath.Join(dir, "l"), nil)
	if err != nil {
		t.Fatal(err)
	}
	fi := info(winfile.AttrArchive)
	w.Add(`Files\a`, &fi)
	w.Write([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0}) // DATA of 2^63-1 bytes
	w.Write([]byte("short"))
	err = w.Close()
	if err == nil {
		t.Fatal("Close accepted a truncated backup stream")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed writer left %v", ents)
	}
}

func TestTransportRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	in := new(bytes.Buffer)
	sampletar.Write(in, sampletar.Options{Seed: 5, Files: 150, Bytes: 1 << 20, Hives: true, Unicode: true, Whiteouts: []string{"Files/old/x.txt"}})
	parent := filepath.Join(dir, "parent")
	CreateLayer(ctx, parent, "")
	layer := filepath.Join(dir, "layer")
	if _, err := ociwclayer.ImportLayerFromTar(ctx, bytes.NewReader(in.Bytes()), layer, []string{parent}); err != nil {
		t.Fatal(err)
	}
	export := filepath.Join(dir, "export")
	if err := ExportLayer(ctx, layer, export, []string{parent}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(export, "Files.$wcidirs$")); err != nil {
		t.Errorf("transport folder lacks Files.$wcidirs$: %v", err)
	}
	tomb, _ := os.ReadFile(filepath.Join(export, "tombstones.txt"))
	if string(tomb) != "\uFEFFVersion 1.0\n\\old\\x.txt\n" {
		t.Errorf("tombstones.txt = %q", tomb)
	}
	again := filepath.Join(dir, "again")
	if err := ImportLayer(ctx, again, export, []string{parent}); err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if err := ociwclayer.ExportLayerToTar(ctx, &a, layer, nil); err != nil {
		t.Fatal(err)
	}
	if err := ociwclayer.ExportLayerToTar(ctx, &b, again, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("layer imported from the transport folder exports differently from the original")
	}
	if !bytes.Equal(a.Bytes(), in.Bytes()) {
		t.Error("original layer does not export to its input tar")
	}
}

func TestLayerLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	child := filepath.Join(dir, "child")
	if err := CreateLayer(ctx, base, ""); err != nil {
		t.Fatal(err)
	}
	if err := CreateLayer(ctx, child, base); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{base, child} {
		if ok, err := LayerExists(ctx, p); !ok || err != nil {
			t.Errorf("LayerExists(%s) = %v, %v", p, ok, err)
		}
	}
	if err := CreateLayer(ctx, child, base); !errors.Is(err, os.ErrExist) {
		t.Errorf("creating over a layer: %v, want ErrExist", err)
	}
	id1, _ := LayerID(ctx, child)
	id2, _ := NameToGuid(ctx, "child")
	id3, _ := LayerID(ctx, filepath.Join(dir, "other", "child"))
	if id1 != id2 || id1 != id3 || id1.IsZero() {
		t.Errorf("LayerID %v, NameToGuid %v, same name elsewhere %v", id1, id2, id3)
	}
	if err := DestroyLayer(ctx, child); err != nil {
		t.Fatal(err)
	}
	if ok, _ := LayerExists(ctx, child); ok {
		t.Error("layer exists after DestroyLayer")
	}
	if err := DestroyLayer(ctx, child); err != nil {
		t.Errorf("destroying a missing layer: %v", err)
	}
	if _, err := GetSharedBaseImages(ctx); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("GetSharedBaseImages: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "base" {
		t.Errorf("folder holds %v, want only base", ents)
	}
	_ = winlayer.ErrClosed
}
