package wclayer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
)

// commitTestSD is O:BAG:SYD:AI(A;OICI;FA;;;SY)(A;OICI;0x1200a9;;;BU)(A;OICIIO;GA;;;CO),
// a descriptor whose ACEs new files inherit.
func commitTestSD() []byte {
	sid := func(auth byte, subs ...uint32) []byte {
		b := []byte{1, byte(len(subs)), 0, 0, 0, 0, 0, auth}
		for _, s := range subs {
			b = binary.LittleEndian.AppendUint32(b, s)
		}
		return b
	}
	ace := func(flags byte, mask uint32, s []byte) []byte {
		b := []byte{0, flags, byte(8 + len(s)), 0}
		return append(binary.LittleEndian.AppendUint32(b, mask), s...)
	}
	aces := bytes.Join([][]byte{ace(3, 0x1f01ff, sid(5, 18)), ace(3, 0x1200a9, sid(5, 32, 545)), ace(0x0b, 0x10000000, sid(3, 0))}, nil)
	acl := append([]byte{2, 0, byte(8 + len(aces)), 0, 3, 0, 0, 0}, aces...)
	b := []byte{1, 0, 0x04, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0}
	b = append(b, acl...)
	b[4] = byte(len(b))
	b = append(b, sid(5, 32, 544)...)
	b[8] = byte(len(b))
	return append(b, sid(5, 18)...)
}

var commitTestTime = winfile.NewFiletime(time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC))

// writeCommitBase writes a base layer with security descriptors, EAs and an
// alternate data stream.
func writeCommitBase(t *testing.T, path string) {
	t.Helper()
	w, err := winlayer.NewWriter(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	add := func(name string, attrs uint32, data, ads string) {
		t.Helper()
		ft := commitTestTime
		e := &winlayer.Entry{Name: name, Size: int64(len(data)), SecurityDescriptor: commitTestSD(),
			Info: winfile.BasicInfo{CreationTime: ft, LastAccessTime: ft, LastWriteTime: ft, ChangeTime: ft, FileAttributes: attrs}}
		if ads != "" {
			e.ExtendedAttributes = []winfile.ExtendedAttribute{{Name: "X", Value: []byte("1")}}
		}
		if err := w.Add(e); err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, data)
		if ads != "" {
			if err := w.AddStream(":s:$DATA", int64(len(ads)), 0); err != nil {
				t.Fatal(err)
			}
			io.WriteString(w, ads)
		}
	}
	dir := uint32(winfile.AttrDirectory)
	add("Files", dir, "", "")
	add("Files/dir", dir, "", "")
	add("Files/dir/a", winfile.AttrArchive, "a", "")
	add("Files/dir/b", winfile.AttrArchive, "b", "")
	add("Files/gone.txt", winfile.AttrArchive, "gone", "")
	add("Files/keep.txt", winfile.AttrArchive|winfile.AttrReadOnly, "keep", "")
	add("Files/mod.txt", winfile.AttrArchive|winfile.AttrHidden, "old", "ads")
	add("Files/opq", dir, "", "")
	add("Files/opq/x", winfile.AttrArchive, "x", "")
	add("Files/opq/y", winfile.AttrArchive, "y", "")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// readEntry is one entry of a LayerReader with its backup stream decoded.
type readEntry struct {
	size    int64
	info    *winfile.BasicInfo
	data    string
	sd      []byte
	eas     []byte
	streams map[string]string
}

func readLayer(t *testing.T, path string, parents []string) (names []string, entries map[string]readEntry) {
	t.Helper()
	r, err := NewLayerReader(context.Background(), path, parents)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	entries = map[string]readEntry{}
	for {
		name, size, info, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		e := readEntry{size: size, info: info, streams: map[string]string{}}
		br := winfile.NewBackupReader(r)
		for info != nil {
			h, err := br.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			b, err := io.ReadAll(br)
			if err != nil {
				t.Fatal(err)
			}
			switch h.ID {
			case winfile.StreamData:
				e.data = string(b)
			case winfile.StreamSecurityData:
				e.sd = b
			case winfile.StreamEAData:
				e.eas = b
			case winfile.StreamAlternateData:
				e.streams[h.Name] = string(b)
			}
		}
		names = append(names, name)
		entries[name] = e
	}
	return names, entries
}

// TestCommitScratchLayer builds a layer the way a Windows image is built:
// a scratch layer over a base, prepared, changed through its union, then its
// changes read, exported and imported as a child of the base.
func TestCommitScratchLayer(t *testing.T) {
	state := needLayerState(t)
	ctx := context.Background()
	dir := t.TempDir()
	base, scratch := filepath.Join(dir, "base"), filepath.Join(dir, "scratch")
	writeCommitBase(t, base)
	if err := CreateScratchLayerWithOptions(ctx, scratch, []string{base}, WithScratchSize(64<<20)); err != nil {
		t.Fatal(err)
	}
	if err := ActivateLayer(ctx, scratch); err != nil {
		t.Fatal(err)
	}
	if err := PrepareLayer(ctx, scratch, []string{base}); err != nil {
		t.Fatal(err)
	}
	union, err := GetLayerMountPath(ctx, scratch)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	u := func(p string) string { return filepath.Join(union, p) }
	must(os.WriteFile(u("mod.txt"), []byte("new content"), 0o644))
	must(os.Remove(u("gone.txt")))
	must(os.Remove(u("dir/a")))
	must(os.WriteFile(u("dir/new.txt"), []byte("new"), 0o644))
	must(os.WriteFile(u("dir/h1"), []byte("linked"), 0o644))
	must(os.Link(u("dir/h1"), u("dir/h2")))
	must(os.RemoveAll(u("opq")))
	must(os.Mkdir(u("opq"), 0o755))
	must(os.WriteFile(u("opq/x"), []byte("new x"), 0o644))
	must(os.MkdirAll(u("newdir"), 0o755))
	must(os.WriteFile(u("newdir/f"), []byte("f"), 0o644))

	// Readable while prepared, parents from layerchain.json.
	names, _ := readLayer(t, scratch, nil)
	if len(names) == 0 {
		t.Fatal("a prepared scratch layer with changes reads as no entries")
	}
	must(UnprepareLayer(ctx, scratch))

	names, got := readLayer(t, scratch, []string{base})
	sd := commitTestSD()
	ca := winfile.SIDContainerAdministrator
	fileSD, _ := winfile.InheritSecurityDescriptor(sd, false, ca, ca)
	dirSD, _ := winfile.InheritSecurityDescriptor(sd, true, ca, ca)
	grandSD, _ := winfile.InheritSecurityDescriptor(dirSD, false, ca, ca)
	type want struct {
		name    string
		removed bool
		attrs   uint32
		sd      []byte
		data    string
		copied  bool
		ads     string
	}
	wants := []want{
		{name: `Files`, attrs: winfile.AttrDirectory, sd: sd, copied: true},
		{name: `Files\gone.txt`, removed: true},
		{name: `Files\dir`, attrs: winfile.AttrDirectory, sd: sd, copied: true},
		{name: `Files\dir\a`, removed: true},
		{name: `Files\dir\h1`, attrs: winfile.AttrArchive, sd: fileSD, data: "linked"},
		{name: `Files\dir\h2`, attrs: winfile.AttrArchive, sd: fileSD, data: "linked"},
		{name: `Files\dir\new.txt`, attrs: winfile.AttrArchive, sd: fileSD, data: "new"},
		{name: `Files\mod.txt`, attrs: winfile.AttrArchive | winfile.AttrHidden, sd: sd, data: "new content", copied: true, ads: "ads"},
		{name: `Files\newdir`, attrs: winfile.AttrDirectory, sd: dirSD},
		{name: `Files\newdir\f`, attrs: winfile.AttrArchive, sd: grandSD, data: "f"},
		{name: `Files\opq`, attrs: winfile.AttrDirectory, sd: dirSD},
		{name: `Files\opq\y`, removed: true},
		{name: `Files\opq\x`, attrs: winfile.AttrArchive, sd: grandSD, data: "new x"},
	}
	if len(names) != len(wants) {
		t.Fatalf("entries %q, want %d", names, len(wants))
	}
	for i, w := range wants {
		if names[i] != w.name {
			t.Fatalf("entry %d is %s, want %s (all: %q)", i, names[i], w.name, names)
		}
		e := got[w.name]
		if w.removed {
			if e.info != nil {
				t.Errorf("%s: want a tombstone (nil info)", w.name)
			}
			continue
		}
		if e.info == nil {
			t.Fatalf("%s: a tombstone, want an entry", w.name)
		}
		if e.info.FileAttributes != w.attrs {
			t.Errorf("%s: attributes %s, want %s", w.name, winfile.AttributeString(e.info.FileAttributes), winfile.AttributeString(w.attrs))
		}
		if !bytes.Equal(e.sd, w.sd) {
			g, _ := winfile.SDDL(e.sd)
			ws, _ := winfile.SDDL(w.sd)
			t.Errorf("%s: security descriptor %s, want %s", w.name, g, ws)
		}
		if e.data != w.data || (w.data != "" && e.size != int64(len(w.data))) {
			t.Errorf("%s: data %q size %d, want %q", w.name, e.data, e.size, w.data)
		}
		if (e.info.CreationTime == commitTestTime) != w.copied {
			t.Errorf("%s: creation time %v; from the parent: want %v", w.name, e.info.CreationTime.Time(), w.copied)
		}
		if e.info.LastWriteTime == commitTestTime {
			t.Errorf("%s: last write time is the parent's", w.name)
		}
		if w.ads != "" {
			if e.streams[":s:$DATA"] != w.ads || len(e.eas) == 0 {
				t.Errorf("%s: streams %q, EAs %x; want the parent's stream %q and EA", w.name, e.streams, e.eas, w.ads)
			}
		} else if len(e.streams) > 0 {
			t.Errorf("%s: streams %q, want none", w.name, e.streams)
		}
	}

	// The transport export keeps the hard link and the tombstones, and imports
	// as a child that reads the same.
	export := filepath.Join(dir, "export")
	must(ExportLayer(ctx, scratch, export, []string{base}))
	if a, b := statFile(t, filepath.Join(export, "Files/dir/h1")), statFile(t, filepath.Join(export, "Files/dir/h2")); !os.SameFile(a, b) {
		t.Error("Files/dir/h1 and h2 are not hard-linked in the export")
	}
	tomb, err := os.ReadFile(filepath.Join(export, winlayer.TombstonesFile))
	must(err)
	for _, n := range []string{`\gone.txt`, `\dir\a`, `\opq\y`} {
		if !strings.Contains(string(tomb), n+"\n") {
			t.Errorf("tombstones.txt lacks %s: %q", n, tomb)
		}
	}
	child := filepath.Join(dir, "child")
	must(ImportLayer(ctx, child, export, []string{base}))
	cnames, cgot := readLayer(t, child, []string{base})
	if strings.Join(cnames, "|") != strings.Join(names, "|") {
		t.Fatalf("the imported child reads %q, the scratch %q", cnames, names)
	}
	for _, n := range names {
		a, b := got[n], cgot[n]
		if (a.info == nil) != (b.info == nil) || a.info != nil && *a.info != *b.info || a.data != b.data || !bytes.Equal(a.sd, b.sd) || !bytes.Equal(a.eas, b.eas) || len(a.streams) != len(b.streams) {
			t.Errorf("%s: the child reads %+v, the scratch %+v", n, b, a)
		}
	}

	// The OCI tar of the changes is the tar of the imported child, byte for byte.
	upper, release, err := ScratchUpper(ctx, scratch)
	must(err)
	var diff, again bytes.Buffer
	must(ociwclayer.ExportUpperToTar(ctx, &diff, upper, []string{base}))
	must(release())
	tarChild := filepath.Join(dir, "tarchild")
	if _, err := ociwclayer.ImportLayerFromTar(ctx, bytes.NewReader(diff.Bytes()), tarChild, []string{base}); err != nil {
		t.Fatal(err)
	}
	must(ociwclayer.ExportLayerToTar(ctx, &again, tarChild, nil))
	if !bytes.Equal(diff.Bytes(), again.Bytes()) {
		t.Errorf("the tar of the imported diff differs: %d bytes, then %d", diff.Len(), again.Len())
	}

	// Not active: read by activating for the time of the read, then nothing left.
	must(DeactivateLayer(ctx, scratch))
	if n2, _ := readLayer(t, scratch, nil); strings.Join(n2, "|") != strings.Join(names, "|") {
		t.Errorf("inactive scratch reads %q, want %q", n2, names)
	}
	checkNothingLeft(t, state)
}

func statFile(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// A scratch layer without parents to compare with is refused, not read as empty.
func TestScratchChangesNeedParents(t *testing.T) {
	needLayerState(t)
	ctx := context.Background()
	scratch := filepath.Join(t.TempDir(), "scratch")
	if err := CreateScratchLayerWithOptions(ctx, scratch, nil, WithScratchSize(16<<20)); err != nil {
		t.Fatal(err)
	}
	_, err := NewLayerReader(ctx, scratch, nil)
	if !errors.Is(err, ErrNoParents) {
		t.Fatalf("got %v, want ErrNoParents", err)
	}
}
