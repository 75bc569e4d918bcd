package winlayer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// upperTestSD is O:BAG:SYD:AI(A;OICI;FA;;;SY)(A;OICI;0x1200a9;;;BU)(A;OICIIO;GA;;;CO).
func upperTestSD() []byte {
	sid := func(auth byte, subs ...uint32) []byte {
		b := []byte{1, byte(len(subs)), 0, 0, 0, 0, 0, auth}
		for _, s := range subs {
			b = append(b, byte(s), byte(s>>8), byte(s>>16), byte(s>>24))
		}
		return b
	}
	ace := func(flags byte, mask uint32, s []byte) []byte {
		b := []byte{0, flags, byte(8 + len(s)), 0, byte(mask), byte(mask >> 8), byte(mask >> 16), byte(mask >> 24)}
		return append(b, s...)
	}
	aces := append(append(ace(3, 0x1f01ff, sid(5, 18)), ace(3, 0x1200a9, sid(5, 32, 545))...), ace(0x0b, 0x10000000, sid(3, 0))...)
	acl := append([]byte{2, 0, byte(8 + len(aces)), 0, 3, 0, 0, 0}, aces...)
	owner, group := sid(5, 32, 544), sid(5, 18)
	b := []byte{1, 0, 0x04, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0}
	b = append(b, acl...)
	b[4] = byte(len(b))
	b = append(b, owner...)
	b[8] = byte(len(b))
	return append(b, group...)
}

// writeUpperParent writes a base layer for the upper tests.
func writeUpperParent(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	w, err := NewWriter(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	sd := upperTestSD()
	ft := winfile.NewFiletime(time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC))
	info := func(attrs uint32) winfile.BasicInfo {
		return winfile.BasicInfo{CreationTime: ft, LastAccessTime: ft, LastWriteTime: ft, ChangeTime: ft, FileAttributes: attrs}
	}
	add := func(name string, attrs uint32, data string, streams map[string]string, eas []winfile.ExtendedAttribute) {
		t.Helper()
		if err := w.Add(&Entry{Name: name, Info: info(attrs), Size: int64(len(data)), SecurityDescriptor: sd, ExtendedAttributes: eas}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, data); err != nil {
			t.Fatal(err)
		}
		for n, v := range streams {
			if err := w.AddStream(n, int64(len(v)), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(w, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("Files", winfile.AttrDirectory, "", nil, nil)
	add("Files/dir", winfile.AttrDirectory, "", nil, nil)
	add("Files/dir/a", winfile.AttrArchive, "a", nil, nil)
	add("Files/dir/b", winfile.AttrArchive, "b", nil, nil)
	add("Files/gone.txt", winfile.AttrArchive, "gone", nil, nil)
	add("Files/mod.txt", winfile.AttrArchive|winfile.AttrHidden, "old", map[string]string{":s:$DATA": "ads"}, []winfile.ExtendedAttribute{{Name: "X", Value: []byte("1")}})
	add("Files/opq", winfile.AttrDirectory, "", nil, nil)
	add("Files/opq/x", winfile.AttrArchive, "x", nil, nil)
	add("Files/opq/y", winfile.AttrArchive, "y", nil, nil)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// needUpperRoot skips unless the test may make whiteouts (mknod) and trusted
// extended attributes, as overlayfs does.
func needUpperRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: whiteouts are device files and opaque markers trusted extended attributes")
	}
	p := filepath.Join(t.TempDir(), "probe")
	if err := unix.Mknod(p, unix.S_IFCHR, 0); err != nil {
		t.Skipf("cannot make a whiteout (mknod): %v", err)
	}
}

// MakeUpper builds an overlayfs upper directory by hand, as a union over
// writeUpperParent's layer leaves it after: mod.txt rewritten, gone.txt and
// dir/a deleted, dir/new.txt and the hard links dir/h1, dir/h2 created, links
// ln (to a file) and lndir (to a directory) made, opq
// deleted and made again with a new x, newdir/f created, ghost a whiteout of a
// name no parent has.
func makeUpper(t *testing.T, upper string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	whiteout := func(p string) { must(unix.Mknod(filepath.Join(upper, p), unix.S_IFCHR, 0)) }
	write := func(p, data string) { must(os.WriteFile(filepath.Join(upper, p), []byte(data), 0o644)) }
	for _, d := range []string{"", "dir", "opq", "newdir"} {
		must(os.MkdirAll(filepath.Join(upper, d), 0o755))
	}
	write("mod.txt", "new content")
	whiteout("gone.txt")
	whiteout("ghost")
	whiteout("dir/a")
	write("dir/new.txt", "new")
	write("dir/h1", "linked")
	must(os.Link(filepath.Join(upper, "dir/h1"), filepath.Join(upper, "dir/h2")))
	must(unix.Setxattr(filepath.Join(upper, "opq"), "trusted.overlay.opaque", []byte("y"), 0))
	write("opq/x", "new x")
	write("newdir/f", "f")
	must(os.Symlink("mod.txt", filepath.Join(upper, "ln")))
	must(os.Symlink("dir", filepath.Join(upper, "lndir")))
}

func TestUpperReader(t *testing.T) {
	needUpperRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	parent := filepath.Join(dir, "base")
	writeUpperParent(t, parent)
	upper := filepath.Join(dir, "volume", "Files")
	makeUpper(t, upper)

	r, err := NewUpperReader(ctx, upper, []string{parent})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sd := upperTestSD()
	ca := winfile.SIDContainerAdministrator
	fileSD, _ := winfile.InheritSecurityDescriptor(sd, false, ca, ca)
	dirSD, _ := winfile.InheritSecurityDescriptor(sd, true, ca, ca)
	grandSD, _ := winfile.InheritSecurityDescriptor(dirSD, false, ca, ca)
	parentTime := winfile.NewFiletime(time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC))
	type want struct {
		name    string
		removed bool
		attrs   uint32
		sd      []byte
		data    string
		link    string
		streams string // the content of the one stream
		copied  bool   // creation time from the parent
	}
	wants := []want{
		{name: "Files", attrs: winfile.AttrDirectory, sd: sd, copied: true},
		{name: "Files/gone.txt", removed: true},
		{name: "Files/dir", attrs: winfile.AttrDirectory, sd: sd, copied: true},
		{name: "Files/dir/a", removed: true},
		{name: "Files/dir/h1", attrs: winfile.AttrArchive, sd: fileSD, data: "linked"},
		{name: "Files/dir/h2", attrs: winfile.AttrArchive, sd: fileSD, link: "Files/dir/h1"},
		{name: "Files/dir/new.txt", attrs: winfile.AttrArchive, sd: fileSD, data: "new"},
		{name: "Files/ln", attrs: winfile.AttrArchive | winfile.AttrReparsePoint, sd: fileSD},
		{name: "Files/lndir", attrs: winfile.AttrDirectory | winfile.AttrReparsePoint, sd: dirSD},
		{name: "Files/mod.txt", attrs: winfile.AttrArchive | winfile.AttrHidden, sd: sd, data: "new content", streams: "ads", copied: true},
		{name: "Files/newdir", attrs: winfile.AttrDirectory, sd: dirSD},
		{name: "Files/newdir/f", attrs: winfile.AttrArchive, sd: grandSD, data: "f"},
		{name: "Files/opq", attrs: winfile.AttrDirectory, sd: dirSD},
		{name: "Files/opq/y", removed: true},
		{name: "Files/opq/x", attrs: winfile.AttrArchive, sd: grandSD, data: "new x"},
	}
	for i, w := range wants {
		e, err := r.Next()
		if err != nil {
			t.Fatalf("entry %d (%s): %v", i, w.name, err)
		}
		if e.Name != w.name || e.Removed != w.removed {
			t.Fatalf("entry %d: got %s (removed %v), want %s (removed %v)", i, e.Name, e.Removed, w.name, w.removed)
		}
		if w.removed {
			continue
		}
		if e.Info.FileAttributes != w.attrs {
			t.Errorf("%s: attributes %s, want %s", e.Name, winfile.AttributeString(e.Info.FileAttributes), winfile.AttributeString(w.attrs))
		}
		if !bytes.Equal(e.SecurityDescriptor, w.sd) {
			got, _ := winfile.SDDL(e.SecurityDescriptor)
			want, _ := winfile.SDDL(w.sd)
			t.Errorf("%s: security descriptor %s, want %s", e.Name, got, want)
		}
		if e.LinkTarget != w.link {
			t.Errorf("%s: link target %q, want %q", e.Name, e.LinkTarget, w.link)
		}
		if (e.Info.CreationTime == parentTime) != w.copied {
			t.Errorf("%s: creation time %v, copied from the parent: want %v", e.Name, e.Info.CreationTime.Time(), w.copied)
		}
		if e.Info.LastWriteTime == parentTime {
			t.Errorf("%s: last write time is the parent's, want the upper's", e.Name)
		}
		if w.data != "" {
			rc, err := r.OpenData()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if string(b) != w.data || e.Size != int64(len(w.data)) {
				t.Errorf("%s: data %q (size %d), want %q", e.Name, b, e.Size, w.data)
			}
		}
		if w.streams != "" {
			if len(e.Streams) != 1 || len(e.ExtendedAttributes) != 1 {
				t.Fatalf("%s: streams %v, EAs %v; want the parent's", e.Name, e.Streams, e.ExtendedAttributes)
			}
			rc, err := r.OpenStream(e.Streams[0])
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if string(b) != w.streams {
				t.Errorf("%s: stream %q, want %q", e.Name, b, w.streams)
			}
		} else if len(e.Streams) != 0 {
			t.Errorf("%s: streams %v, want none", e.Name, e.Streams)
		}
	}
	if e, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last entry: %v, %v; want EOF", e, err)
	}
}

func TestUpperReaderRefusesWhatItCannotRead(t *testing.T) {
	needUpperRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	parent := filepath.Join(dir, "base")
	writeUpperParent(t, parent)
	for name, mk := range map[string]func(upper string) error{
		"fifo": func(u string) error { return unix.Mkfifo(filepath.Join(u, "p"), 0o644) },
		"redirect": func(u string) error {
			return unix.Setxattr(filepath.Join(u, "dir"), "trusted.overlay.redirect", []byte("/opq"), 0)
		},
		"metacopy": func(u string) error {
			return unix.Setxattr(filepath.Join(u, "mod.txt"), "trusted.overlay.metacopy", nil, 0)
		},
	} {
		t.Run(name, func(t *testing.T) {
			upper := filepath.Join(t.TempDir(), "Files")
			makeUpper(t, upper)
			if err := mk(upper); err != nil {
				t.Fatal(err)
			}
			r, err := NewUpperReader(ctx, upper, []string{parent})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for {
				_, err = r.Next()
				if err != nil {
					break
				}
			}
			var ee *EntryError
			if !errors.Is(err, ErrUnsupportedUpper) || !errors.Is(err, errors.ErrUnsupported) || !errors.As(err, &ee) {
				t.Fatalf("got %v, want an *EntryError matching ErrUnsupportedUpper", err)
			}
		})
	}
}
