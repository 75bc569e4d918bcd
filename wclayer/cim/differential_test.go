package cim_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/internal/sampletar"
	"github.com/hostcompute/hostcompute/pkg/cimfs"
	"github.com/hostcompute/hostcompute/pkg/ociwclayer"
	ocicim "github.com/hostcompute/hostcompute/pkg/ociwclayer/cim"
	"github.com/hostcompute/hostcompute/pkg/winfile"
	"github.com/hostcompute/hostcompute/pkg/winlayer"
	"github.com/hostcompute/hostcompute/wclayer"
	wcim "github.com/hostcompute/hostcompute/wclayer/cim"
)

// The differential test of the Windows layer rules: every generated tar, hostile
// or not, goes through every way into a Windows layer (a folder import, a CIM built
// from the tar, hcsshim's LayerWriter fed Win32 backup streams, hcsshim's
// CimLayerWriter fed raw data), as a base layer and as a child of one parent. All
// paths must accept it or all reject it with the same class of error naming the
// same entry; what they accept must read back as the same entries, metadata and
// data.

// went is one entry of a generated Windows layer tar.
type went struct {
	hdr  tar.Header
	body string
	raw  func([]byte) []byte // rewrites the finished tar (for what archive/tar will not write)
}

var wtime = time.Unix(1700000000, 123456700)

func wpax(attr string) map[string]string {
	return map[string]string{"MSWINDOWS.fileattr": attr, "LIBARCHIVE.creationtime": "1600000000.5"}
}

func wf(name, body string) went {
	return went{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o100000, Size: int64(len(body)), PAXRecords: wpax("32")}, body: body}
}
func wd(name string) went {
	return went{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o40000, PAXRecords: wpax("16")}}
}
func wsym(name, target string) went {
	return went{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o120000, PAXRecords: wpax("1056")}}
}
func wdsym(name, target string) went {
	return went{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o160000, PAXRecords: wpax("1040")}}
}
func wjunc(name, target string) went {
	e := wdsym(name, target)
	e.hdr.PAXRecords["MSWINDOWS.mountpoint"] = "1"
	return e
}
func wlink(name, target string) went {
	return went{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o644, PAXRecords: wpax("32")}}
}
func wwh(name string) went {
	return went{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}}
}
func wrec(e went, k, v string) went {
	m := map[string]string{}
	for a, b := range e.hdr.PAXRecords {
		m[a] = b
	}
	m[k] = v
	e.hdr.PAXRecords = m
	return e
}
func wtype(name string, typ byte) went {
	return went{hdr: tar.Header{Name: name, Typeflag: typ, Mode: 0o644, PAXRecords: wpax("32")}}
}

// wraw writes a header that archive/tar would refuse: name holds look-alike bytes
// that the rewrite turns into what the test wants (same length, so the PAX record
// lengths stay right).
func wraw(name, body string, from, to string) went {
	e := wf(name, body)
	e.raw = func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(from), []byte(to)) }
	return e
}

func buildW(t testing.TB, ents []went) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var raws []func([]byte) []byte
	for _, e := range ents {
		h := e.hdr
		h.Format = tar.FormatPAX
		if h.ModTime.IsZero() {
			h.ModTime, h.AccessTime, h.ChangeTime = wtime, wtime.Add(time.Hour), wtime.Add(2*time.Hour)
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing %q: %v", h.Name, err)
		}
		if e.body != "" {
			tw.Write([]byte(e.body))
		}
		if e.raw != nil {
			raws = append(raws, e.raw)
		}
	}
	tw.Close()
	b := buf.Bytes()
	for _, r := range raws {
		b = r(b)
	}
	return b
}

// Sentinel errors meaning the same thing on every path, by class.
var wclasses = []struct {
	name string
	errs []error
}{
	{"insecure", []error{winlayer.ErrInsecurePath}},
	{"outside", []error{winlayer.ErrOutsideLayer}},
	{"name", []error{winlayer.ErrInvalidName}},
	{"case", []error{winlayer.ErrCaseCollision}},
	{"duplicate", []error{winlayer.ErrDuplicate}},
	{"parent", []error{winlayer.ErrParentNotDirectory}},
	{"link", []error{winlayer.ErrLinkTarget}},
	{"base-whiteout", []error{winlayer.ErrBaseLayerWhiteout}},
	{"too-large", []error{winlayer.ErrTooLarge, cimfs.ErrTooLarge}},
	{"size", []error{winlayer.ErrSizeMismatch}},
	{"pax", []error{ociwclayer.ErrBadPAX}},
	{"orphan", []error{ociwclayer.ErrOrphanStream}},
	{"unsupported", []error{ociwclayer.ErrUnsupportedEntry, winlayer.ErrNotSupported}},
	{"truncated", []error{ociwclayer.ErrTruncated}},
	{"no-entry", []error{winlayer.ErrNoEntry}},
}

func wclass(err error) string {
	for _, c := range wclasses {
		for _, e := range c.errs {
			if errors.Is(err, e) {
				return c.name
			}
		}
	}
	return "other"
}

type wcase struct {
	name  string
	ents  []went
	base  string // class expected as a base layer ("" accepts)
	child string // class expected as a child of the parent layer; "=" is as base
	entry string // tar entry the error must name ("" for none)
	// centry, when set, is the entry a child layer's error names.
	centry string
}

const asBase = "="

// The parent layer every child case is written over.
var wparent = []went{
	wd("Files"), wf("Files/pf", "parent file"), wd("Files/pdir"), wf("Files/pdir/x", "x"),
	wjunc("Files/pj", `C:\Windows`), wsym("Files/psym", `pf`), wd("Files/pgone"), wf("Files/pgone/y", "y"),
}

func wcases(t testing.TB) []wcase {
	long := strings.Repeat("n", 256)
	cs := []wcase{
		// Path traversal and absolute names.
		{"dotdot", []went{wd("Files"), wf("../escape", "x")}, "insecure", asBase, "../escape", ""},
		{"dotdot inside", []went{wf("Files/../../escape", "x")}, "insecure", asBase, "Files/../../escape", ""},
		{"dotdot backslash", []went{wf(`Files\..\..\escape`, "x")}, "insecure", asBase, `Files\..\..\escape`, ""},
		{"dotdot deep", []went{wf("Files/a/b/../../../../x", "x")}, "insecure", asBase, "Files/a/b/../../../../x", ""},
		{"absolute", []went{wf("/Files/abs", "x")}, "insecure", asBase, "/Files/abs", ""},
		{"drive", []went{wf(`C:\Files\abs`, "x")}, "insecure", asBase, `C:\Files\abs`, ""},
		{"drive slash", []went{wf(`C:/Files/abs`, "x")}, "insecure", asBase, `C:/Files/abs`, ""},
		{"unc", []went{wf(`\\server\share\x`, "x")}, "insecure", asBase, `\\server\share\x`, ""},
		{"link target dotdot", []went{wf("Files/a", "a"), wlink("Files/b", "../../etc/passwd")}, "insecure", asBase, "Files/b", ""},
		{"link target absolute", []went{wf("Files/a", "a"), wlink("Files/b", "/Files/a")}, "insecure", asBase, "Files/b", ""},
		{"whiteout dotdot", []went{wwh("Files/.wh...")}, "insecure", asBase, "Files/.wh...", ""},
		// Outside Files/, Hives/, UtilityVM/Files/.
		{"other root", []went{wf("Other/x", "x")}, "outside", asBase, "Other/x", ""},
		{"uvm other", []went{wf("UtilityVM/Other/x", "x")}, "outside", asBase, "UtilityVM/Other/x", ""},
		{"whiteout outside", []went{wwh("Other/.wh.x")}, "outside", asBase, "Other/.wh.x", ""},
		{"hives file", []went{wd("Hives"), wf("Hives/System_Delta", "regf")}, "", asBase, "", ""},
		{"uvm files", []went{wd("UtilityVM"), wd("UtilityVM/Files"), wf("UtilityVM/Files/boot", "b")}, "", asBase, "", ""},
		// Names Windows refuses.
		{"reserved CON", []went{wf("Files/CON", "x")}, "name", asBase, "Files/CON", ""},
		{"reserved aux.txt", []went{wf("Files/aux.txt", "x")}, "name", asBase, "Files/aux.txt", ""},
		{"reserved lpt9", []went{wf("Files/d/LPT9.log", "x")}, "name", asBase, "Files/d/LPT9.log", ""},
		{"trailing dot", []went{wf("Files/a.", "x")}, "name", asBase, "Files/a.", ""},
		{"trailing space", []went{wf("Files/a ", "x")}, "name", asBase, "Files/a ", ""},
		{"less than", []went{wf("Files/a<b", "x")}, "name", asBase, "Files/a<b", ""},
		{"pipe", []went{wf("Files/a|b", "x")}, "name", asBase, "Files/a|b", ""},
		{"quote", []went{wf(`Files/a"b`, "x")}, "name", asBase, `Files/a"b`, ""},
		{"question", []went{wf("Files/a?b", "x")}, "name", asBase, "Files/a?b", ""},
		{"star", []went{wf("Files/a*b", "x")}, "name", asBase, "Files/a*b", ""},
		{"control", []went{wf("Files/a\x01b", "x")}, "name", asBase, "Files/a\x01b", ""},
		{"long component", []went{wf("Files/"+long, "x")}, "name", asBase, "Files/" + long, ""},
		{"invalid utf8", []went{wf("Files/\xff\xfe", "x")}, "name", asBase, "Files/\xff\xfe", ""},
		{"dot component", []went{wf("Files/./x", "x")}, "name", asBase, "Files/./x", ""},
		{"colon in dir", []went{wf("Files/a:b/c", "x")}, "name", asBase, "Files/a:b/c", ""},
		{"empty component", []went{wf("Files//x", "x")}, "name", asBase, "Files//x", ""},
		{"nul in name", []went{wraw("Files/aQb", "x", "Files/aQb", "Files/a\x00b")}, "other", asBase, "", ""},
		{"unicode names", []went{wf("Files/ünïcødé", "u"), wf("Files/日本語.txt", "j"), wf("Files/emoji😀", "e")}, "", asBase, "", ""},
		{"backslash separators", []went{wd(`Files`), wd(`Files\dir`), wf(`Files\dir\f`, "f")}, "", asBase, "", ""},
		// Case collisions and duplicates.
		{"case file", []went{wf("Files/Readme.TXT", "a"), wf("Files/readme.txt", "b")}, "case", asBase, "Files/readme.txt", ""},
		{"case dir", []went{wf("Files/Dir/a", "a"), wf("Files/DIR/b", "b")}, "case", asBase, "Files/DIR/b", ""},
		{"case unicode", []went{wf("Files/Ä", "a"), wf("Files/ä", "b")}, "case", asBase, "Files/ä", ""},
		{"case link target", []went{wf("Files/T", "t"), wlink("Files/l", "Files/t")}, "link", asBase, "Files/l", ""},
		{"dup file", []went{wf("Files/a", "1"), wf("Files/a", "2")}, "duplicate", asBase, "Files/a", ""},
		{"dup dir", []went{wd("Files"), wd("Files/d"), wd("Files/d")}, "duplicate", asBase, "Files/d", ""},
		{"dup root dir", []went{wd("Files"), wf("Files/a", "a"), wd("Files")}, "duplicate", asBase, "Files", ""},
		{"file then dir", []went{wf("Files/x", "x"), wd("Files/x")}, "duplicate", asBase, "Files/x", ""},
		{"dir then file", []went{wd("Files/y"), wf("Files/y", "y")}, "duplicate", asBase, "Files/y", ""},
		{"implied then file", []went{wf("Files/d/c", "c"), wf("Files/d", "d")}, "duplicate", asBase, "Files/d", ""},
		{"implied then dir", []went{wf("Files/d/c", "c"), wd("Files/d"), wd("Files")}, "", asBase, "", ""},
		{"link over file", []went{wf("Files/a", "a"), wf("Files/b", "b"), wlink("Files/b", "Files/a")}, "duplicate", asBase, "Files/b", ""},
		{"file over link", []went{wf("Files/a", "a"), wlink("Files/b", "Files/a"), wf("Files/b", "b")}, "duplicate", asBase, "Files/b", ""},
		{"symlink twice", []went{wsym("Files/s", "a"), wsym("Files/s", "b")}, "duplicate", asBase, "Files/s", ""},
		{"stream twice", []went{wf("Files/a", "a"), wf("Files/a:s", "1"), wf("Files/a:S", "2")}, "duplicate", asBase, "Files/a:S", ""},
		{"stream data suffix twice", []went{wf("Files/a", "a"), wf("Files/a:s", "1"), wf("Files/a:s:$DATA", "2")}, "duplicate", asBase, "Files/a:s:$DATA", ""},
		{"whiteout twice", []went{wwh("Files/.wh.pf"), wwh("Files/.wh.pf")}, "base-whiteout", "duplicate", "Files/.wh.pf", ""},
		{"whiteout after add", []went{wf("Files/n", "n"), wwh("Files/.wh.n")}, "base-whiteout", "duplicate", "Files/.wh.n", ""},
		{"whiteout of implied dir", []went{wf("Files/n/x", "n"), wwh("Files/.wh.n")}, "base-whiteout", "duplicate", "Files/.wh.n", ""},
		// Writes below links and files, of this layer or of the parent.
		{"below symlink", []went{wd("Files"), wsym("Files/link", `..\..\outside`), wf("Files/link/planted", "x")}, "parent", asBase, "Files/link/planted", ""},
		{"below abs symlink", []went{wsym("Files/link", `/tmp`), wf("Files/link/planted", "x")}, "parent", asBase, "Files/link/planted", ""},
		{"below dir symlink", []went{wdsym("Files/link", `C:\Windows`), wf("Files/link/planted", "x")}, "parent", asBase, "Files/link/planted", ""},
		{"below junction", []went{wjunc("Files/j", `C:\Windows`), wf("Files/j/planted", "x")}, "parent", asBase, "Files/j/planted", ""},
		{"dir below junction", []went{wjunc("Files/j", `C:\`), wd("Files/j/sub")}, "parent", asBase, "Files/j/sub", ""},
		{"deep below junction", []went{wjunc("Files/j", `C:\`), wf("Files/j/a/b/c", "x")}, "parent", asBase, "Files/j/a/b/c", ""},
		{"below file", []went{wf("Files/f", "x"), wf("Files/f/child", "x")}, "parent", asBase, "Files/f/child", ""},
		{"link below symlink", []went{wf("Files/a", "a"), wsym("Files/s", "x"), wlink("Files/s/l", "Files/a")}, "parent", asBase, "Files/s/l", ""},
		{"link via symlink", []went{wsym("Files/l", `..\..\outside`), wlink("Files/b", "Files/l/sentinel")}, "link", asBase, "Files/b", ""},
		{"whiteout below junction", []went{wjunc("Files/j", `C:\`), wwh("Files/j/.wh.x")}, "base-whiteout", "parent", "Files/j/.wh.x", ""},
		{"stream below junction", []went{wjunc("Files/j", `C:\`), wf("Files/j:s", "x")}, "", asBase, "", ""},
		{"below parent junction", []went{wf("Files/pj/planted", "x")}, "", "parent", "Files/pj/planted", ""},
		{"below parent symlink", []went{wf("Files/psym/planted", "x")}, "", "parent", "Files/psym/planted", ""},
		{"below parent file", []went{wf("Files/pf/planted", "x")}, "", "parent", "Files/pf/planted", ""},
		{"below parent dir", []went{wf("Files/pdir/new", "x")}, "", asBase, "", ""},
		{"replaced parent junction", []went{wwh("Files/.wh.pj"), wd("Files/pj"), wf("Files/pj/new", "x")}, "base-whiteout", "", "Files/.wh.pj", ""},
		{"dir over parent junction", []went{wd("Files/pj"), wf("Files/pj/new", "x")}, "", asBase, "", ""},
		{"below removed parent dir", []went{wwh("Files/.wh.pgone"), wf("Files/pgone/new", "x")}, "base-whiteout", "", "Files/.wh.pgone", ""},
		// Whiteouts and opaque markers.
		{"whiteout base", []went{wf("Files/a", "x"), wwh("Files/.wh.b")}, "base-whiteout", "", "Files/.wh.b", ""},
		{"whiteout parent file", []went{wd("Files"), wwh("Files/.wh.pf")}, "base-whiteout", "", "Files/.wh.pf", ""},
		{"whiteout parent dir", []went{wwh("Files/.wh.pdir")}, "base-whiteout", "", "Files/.wh.pdir", ""},
		{"whiteout missing", []went{wwh("Files/.wh.nothing")}, "base-whiteout", "", "Files/.wh.nothing", ""},
		{"whiteout then add", []went{wwh("Files/.wh.pf"), wf("Files/pf", "new")}, "base-whiteout", "", "Files/.wh.pf", ""},
		{"whiteout top level", []went{wwh(".wh.Files")}, "outside", asBase, ".wh.Files", ""},
		{"whiteout of dot", []went{wwh("Files/.wh..")}, "name", asBase, "Files/.wh..", ""},
		{"opaque", []went{wd("Files/d"), wwh("Files/d/.wh..wh..opq")}, "unsupported", asBase, "Files/d/.wh..wh..opq", ""},
		{"opaque root", []went{wwh("Files/.wh..wh..opq")}, "unsupported", asBase, "Files/.wh..wh..opq", ""},
		{"whiteout hives", []went{wwh("Hives/.wh.System_Delta")}, "base-whiteout", "", "Hives/.wh.System_Delta", ""},
		// Hard links.
		{"link ok", []went{wf("Files/a", "data"), wlink("Files/b", "Files/a"), wlink("Files/c", "Files/b")}, "", asBase, "", ""},
		{"link missing", []went{wlink("Files/b", "Files/nothing")}, "link", asBase, "Files/b", ""},
		{"link later", []went{wlink("Files/b", "Files/a"), wf("Files/a", "a")}, "link", asBase, "Files/b", ""},
		{"link to dir", []went{wd("Files/d"), wlink("Files/b", "Files/d")}, "link", asBase, "Files/b", ""},
		{"link to implied dir", []went{wf("Files/d/x", "x"), wlink("Files/b", "Files/d")}, "link", asBase, "Files/b", ""},
		{"link to symlink", []went{wsym("Files/s", "x"), wlink("Files/b", "Files/s")}, "", asBase, "", ""},
		{"link to junction", []went{wjunc("Files/j", `C:\`), wlink("Files/b", "Files/j")}, "link", asBase, "Files/b", ""},
		{"link to parent file", []went{wd("Files"), wlink("Files/alias", "Files/pf")}, "link", "", "Files/alias", ""},
		{"link to parent deep", []went{wlink("Files/alias", "Files/pdir/x")}, "link", "", "Files/alias", ""},
		{"link to parent dir", []went{wlink("Files/alias", "Files/pdir")}, "link", asBase, "Files/alias", ""},
		{"link to removed parent file", []went{wwh("Files/.wh.pf"), wlink("Files/alias", "Files/pf")}, "base-whiteout", "link", "Files/.wh.pf", "Files/alias"},
		{"link below removed parent dir", []went{wwh("Files/.wh.pdir"), wlink("Files/alias", "Files/pdir/x")}, "base-whiteout", "link", "Files/.wh.pdir", "Files/alias"},
		{"link through parent junction", []went{wlink("Files/alias", "Files/pj/x")}, "link", asBase, "Files/alias", ""},
		{"link to parent symlink", []went{wlink("Files/alias", "Files/psym")}, "link", "", "Files/alias", ""},
		{"link chain to parent", []went{wlink("Files/a1", "Files/pf"), wlink("Files/a2", "Files/a1")}, "link", "", "Files/a1", ""},
		{"uvm link into files", []went{wf("Files/k.dll", "k"), wd("UtilityVM"), wd("UtilityVM/Files"), wlink("UtilityVM/Files/k.dll", "Files/k.dll")}, "", asBase, "", ""},
		// PAX records.
		{"fileattr not a number", []went{wrec(wf("Files/a", "x"), "MSWINDOWS.fileattr", "abc")}, "pax", asBase, "Files/a", ""},
		{"fileattr too big", []went{wrec(wf("Files/a", "x"), "MSWINDOWS.fileattr", "4294967296")}, "pax", asBase, "Files/a", ""},
		{"rawsd bad base64", []went{wrec(wf("Files/a", "x"), "MSWINDOWS.rawsd", "!!!")}, "pax", asBase, "Files/a", ""},
		{"rawsd not an sd", []went{wrec(wf("Files/a", "x"), "MSWINDOWS.rawsd", "AAAA")}, "pax", asBase, "Files/a", ""},
		{"rawsd ok", []went{wrec(wf("Files/a", "x"), "MSWINDOWS.rawsd", base64.StdEncoding.EncodeToString(sampletar.SecurityDescriptors[0]))}, "", asBase, "", ""},
		{"sddl only", []went{wrec(wf("Files/a", "x"), "MSWINDOWS.sd", "O:BAG:SYD:(A;;FA;;;SY)")}, "unsupported", asBase, "Files/a", ""},
		{"xattr bad base64", []went{wrec(wf("Files/a", "x"), "MSWINDOWS.xattr.X", "%%")}, "pax", asBase, "Files/a", ""},
		{"xattr ok", []went{wrec(wrec(wf("Files/a", "x"), "MSWINDOWS.xattr.B", "YmI="), "MSWINDOWS.xattr.A", "YQ==")}, "", asBase, "", ""},
		{"xattr long name", []went{wrec(wf("Files/a", "x"), "MSWINDOWS.xattr."+long, "YQ==")}, "pax", asBase, "Files/a", ""},
		{"creationtime bad", []went{wrec(wf("Files/a", "x"), "LIBARCHIVE.creationtime", "12.x")}, "pax", asBase, "Files/a", ""},
		{"creationtime negative", []went{wrec(wf("Files/a", "x"), "LIBARCHIVE.creationtime", "-1.25")}, "", asBase, "", ""},
		{"mountpoint on file", []went{wrec(wf("Files/a", "x"), "MSWINDOWS.mountpoint", "1")}, "", asBase, "", ""},
		{"sparse attribute", []went{wrec(wf("Files/a", "\x00\x00\x00x"), "MSWINDOWS.fileattr", "544")}, "", asBase, "", ""},
		{"hidden system readonly", []went{wrec(wf("Files/a", "x"), "MSWINDOWS.fileattr", "39"), wrec(wd("Files/d"), "MSWINDOWS.fileattr", "8210")}, "", asBase, "", ""},
		{"no data stream", []went{{hdr: tar.Header{Name: "Files/e", Typeflag: tar.TypeReg, PAXRecords: wpax("32")}}}, "", asBase, "", ""},
		{"plain ustar", []went{{hdr: tar.Header{Name: "Files/u", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}, body: "u"}}, "", asBase, "", ""},
		// Alternate data streams.
		{"stream ok", []went{wf("Files/a", "a"), wf("Files/a:Zone.Identifier", "z"), wf("Files/a:two:$DATA", "t")}, "", asBase, "", ""},
		{"stream on dir", []went{wd("Files/d"), wf("Files/d:s", "ds")}, "", asBase, "", ""},
		{"orphan stream", []went{wf("Files/a:stream", "x")}, "orphan", asBase, "Files/a:stream", ""},
		{"stream after other", []went{wf("Files/a", "x"), wf("Files/b", "y"), wf("Files/a:s", "z")}, "orphan", asBase, "Files/a:s", ""},
		{"stream after link", []went{wf("Files/a", "x"), wlink("Files/b", "Files/a"), wf("Files/b:s", "z")}, "orphan", asBase, "Files/b:s", ""},
		{"stream bad type", []went{wf("Files/a", "x"), wf("Files/a:s:$INDEX", "z")}, "name", asBase, "Files/a:s:$INDEX", ""},
		{"stream not regular", []went{wf("Files/a", "x"), wtype("Files/a:s", tar.TypeDir)}, "unsupported", asBase, "Files/a:s", ""},
		// Entry types.
		{"char device", []went{wtype("Files/dev", tar.TypeChar)}, "unsupported", asBase, "Files/dev", ""},
		{"block device", []went{wtype("Files/blk", tar.TypeBlock)}, "unsupported", asBase, "Files/blk", ""},
		{"fifo", []went{wtype("Files/fifo", tar.TypeFifo)}, "unsupported", asBase, "Files/fifo", ""},
		{"symlink to nothing", []went{wsym("Files/s", "")}, "", asBase, "", ""},
		{"junction relative", []went{wjunc("Files/j", `..\x`)}, "", asBase, "", ""},
	}
	// Sizes.
	cs = append(cs,
		wcase{"absurd size", nil, "too-large", asBase, "Files/huge", ""},
		wcase{"larger than disk", nil, "too-large", asBase, "Files/huge", ""},
		wcase{"truncated body", nil, "truncated", asBase, "Files/t", ""},
	)
	// Realistic layers.
	for seed := uint64(1); seed <= 4; seed++ {
		cs = append(cs, wcase{fmt.Sprintf("sample %d", seed), nil, "", asBase, "", ""})
	}
	return cs
}

// sizedTar writes one header claiming size bytes, then ends.
func sizedTar(t testing.TB, name string, size int64, body string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: size, Mode: 0o100000, Format: tar.FormatPAX,
		PAXRecords: wpax("32")}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(body))
	tw.Flush()
	return buf.Bytes()
}

func (c wcase) tar(t testing.TB) []byte {
	switch {
	case c.name == "absurd size":
		return sizedTar(t, "Files/huge", 1<<50, strings.Repeat("x", 64<<10))
	case c.name == "larger than disk":
		return sizedTar(t, "Files/huge", 1<<47, strings.Repeat("x", 64<<10))
	case c.name == "truncated body":
		return sizedTar(t, "Files/t", 10000, "short")
	case strings.HasPrefix(c.name, "sample "):
		var seed uint64
		fmt.Sscanf(c.name, "sample %d", &seed)
		var b bytes.Buffer
		o := sampletar.Options{Seed: seed, Files: 40, Bytes: 64 << 10, Unicode: seed%2 == 0, Hives: seed%2 == 1, UtilityVM: seed == 3}
		if err := sampletar.Write(&b, o); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	return buildW(t, c.ents)
}

// wpath is one way into a Windows layer: it writes the tar as a layer named name
// (under its own folder in dir) over parent (nil for a base layer) and reads it back.
type wpath struct {
	name  string
	write func(ctx context.Context, in []byte, layer string, parents []string) error
	read  func(t testing.TB, layer string) []string
}

func folderRead(t testing.TB, layer string) []string {
	r, err := winlayer.NewReader(context.Background(), layer)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return describe(t, r)
}

func cimRead(t testing.TB, layer string) []string {
	r, err := wcim.NewLayerReader(context.Background(), layer)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return describe(t, r)
}

type entryReader interface {
	Next() (*winlayer.Entry, error)
	OpenData() (io.ReadCloser, error)
	OpenStream(winlayer.Stream) (io.ReadCloser, error)
}

func digest(t testing.TB, rc io.ReadCloser, err error) string {
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%x", n, h.Sum(nil)[:6])
}

// describe lists a layer's entries with everything a layer keeps of them.
func describe(t testing.TB, r entryReader) []string {
	var out []string
	for {
		e, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Removed {
			out = append(out, "remove "+e.Name)
			continue
		}
		s := fmt.Sprintf("%s info=%+v size=%d nodata=%v sd=%x ea=%v rp=%x link=%q plink=%q", e.Name, e.Info, e.Size, e.NoDataStream,
			sha256.Sum256(e.SecurityDescriptor), e.ExtendedAttributes, e.Reparse, e.LinkTarget, e.ParentLink)
		if e.LinkTarget == "" && !e.IsDir() && len(e.Reparse) == 0 {
			rc, err := r.OpenData()
			s += " data=" + digest(t, rc, err)
		}
		if e.LinkTarget == "" {
			for _, st := range e.Streams {
				rc, err := r.OpenStream(st)
				s += fmt.Sprintf(" stream %s=%s", st.Name, digest(t, rc, err))
			}
		}
		out = append(out, s)
	}
}

func wpaths() []wpath {
	return []wpath{
		{"folder import", func(ctx context.Context, in []byte, layer string, parents []string) error {
			_, err := ociwclayer.ImportLayerFromTar(ctx, bytes.NewReader(in), layer, parents, winlayer.WithSync(false))
			return err
		}, folderRead},
		{"CIM from tar", func(ctx context.Context, in []byte, layer string, parents []string) error {
			_, err := ocicim.ImportCimLayerFromTar(ctx, bytes.NewReader(in), layer, parents)
			return writtenCIM(err)
		}, cimRead},
		{"LayerWriter", func(ctx context.Context, in []byte, layer string, parents []string) error {
			lw, err := wclayer.NewLayerWriter(ctx, layer, parents)
			if err != nil {
				return err
			}
			a := &backupAdapter{lw: lw}
			if _, err := ociwclayer.DecodeTar(ctx, bytes.NewReader(in), a); err != nil {
				lw.Close() // discards: the writer saw an error or is left incomplete
				return err
			}
			return a.close()
		}, folderRead},
		{"CimLayerWriter", func(ctx context.Context, in []byte, layer string, parents []string) error {
			cw, err := wcim.NewCimLayerWriter(ctx, layer, parents)
			if err != nil {
				return err
			}
			if _, err := ociwclayer.DecodeTar(ctx, bytes.NewReader(in), &rawAdapter{cw: cw}); err != nil {
				cw.Abort()
				return err
			}
			return writtenCIM(cw.Close(ctx))
		}, cimRead},
	}
}

// writtenCIM takes the errors a CIM layer's Close returns after writing the layer,
// for base-layer steps without a Linux implementation (merging delta hives,
// making a utility VM boot from the CIM), as success: the layer is what the test
// compares.
func writtenCIM(err error) error {
	if errors.Is(err, wcim.ErrHiveMergeUnsupported) || errors.Is(err, wcim.ErrUtilityVMBootUnsupported) {
		return nil
	}
	return err
}

// backupAdapter feeds decoded entries to hcsshim's LayerWriter as Win32 backup
// streams, the way go-winio's backuptar does.
type backupAdapter struct {
	lw     wclayer.LayerWriter
	bw     *winfile.BackupWriter
	err    error
	poison bool // an entry the writer would need to be told about, but cannot be
}

func (a *backupAdapter) Add(e *winlayer.Entry) error {
	if err := a.end(); err != nil {
		return err
	}
	if err := a.lw.Add(strings.ReplaceAll(e.Name, "/", `\`), &e.Info); err != nil {
		return err
	}
	a.bw = winfile.NewBackupWriter(a.lw)
	put := func(id winfile.StreamID, b []byte) error {
		if err := a.bw.WriteHeader(&winfile.StreamHeader{ID: id, Size: int64(len(b))}); err != nil {
			return err
		}
		_, err := a.bw.Write(b)
		return err
	}
	if e.SecurityDescriptor != nil {
		if err := put(winfile.StreamSecurityData, e.SecurityDescriptor); err != nil {
			return err
		}
	}
	if len(e.ExtendedAttributes) > 0 {
		b, err := winfile.EncodeExtendedAttributes(e.ExtendedAttributes)
		if err != nil {
			return err
		}
		if err := put(winfile.StreamEAData, b); err != nil {
			return err
		}
	}
	if len(e.Reparse) > 0 {
		if err := put(winfile.StreamReparseData, e.Reparse); err != nil {
			return err
		}
	}
	if !e.IsDir() && !e.NoDataStream && (len(e.Reparse) == 0 || e.Size > 0) {
		return a.bw.WriteHeader(&winfile.StreamHeader{ID: winfile.StreamData, Size: e.Size})
	}
	return nil
}

func (a *backupAdapter) AddStream(name string, size int64, attributes uint32) error {
	if a.bw == nil {
		return winlayer.ErrNoEntry
	}
	n := strings.TrimPrefix(name, ":")
	if !strings.HasSuffix(n, ":$DATA") {
		n += ":$DATA"
	}
	return a.bw.WriteHeader(&winfile.StreamHeader{ID: winfile.StreamAlternateData, Name: ":" + n, Size: size, Attributes: attributes})
}

func (a *backupAdapter) Write(p []byte) (int, error) {
	if a.bw == nil {
		return 0, winlayer.ErrNoEntry
	}
	return a.bw.Write(p)
}

func (a *backupAdapter) end() error {
	if a.bw != nil {
		err := a.bw.Close()
		a.bw = nil
		return err
	}
	return nil
}

func (a *backupAdapter) AddLink(name, target string) error {
	if err := a.end(); err != nil {
		return err
	}
	return a.lw.AddLink(strings.ReplaceAll(name, "/", `\`), strings.ReplaceAll(target, "/", `\`))
}

func (a *backupAdapter) Remove(name string) error {
	if err := a.end(); err != nil {
		return err
	}
	return a.lw.Remove(strings.ReplaceAll(name, "/", `\`))
}

func (a *backupAdapter) close() error {
	if err := a.end(); err != nil {
		a.lw.Close()
		return err
	}
	return a.lw.Close()
}

// rawAdapter feeds decoded entries to hcsshim's CimLayerWriter: metadata as
// arguments, raw data through Write.
type rawAdapter struct {
	cw      *wcim.CimLayerWriter
	current string
}

func (a *rawAdapter) Add(e *winlayer.Entry) error {
	var ea []byte
	if len(e.ExtendedAttributes) > 0 {
		var err error
		if ea, err = winfile.EncodeExtendedAttributes(e.ExtendedAttributes); err != nil {
			return err
		}
	}
	name := strings.ReplaceAll(e.Name, "/", `\`)
	a.current = name
	info := e.Info
	return a.cw.Add(name, &info, e.Size, e.SecurityDescriptor, ea, e.Reparse)
}

func (a *rawAdapter) AddStream(name string, size int64, attributes uint32) error {
	return a.cw.AddAlternateStream(a.current+":"+strings.TrimPrefix(name, ":"), uint64(size))
}

func (a *rawAdapter) Write(p []byte) (int, error) { return a.cw.Write(p) }

func (a *rawAdapter) AddLink(name, target string) error {
	a.current = ""
	return a.cw.AddLink(strings.ReplaceAll(name, "/", `\`), strings.ReplaceAll(target, "/", `\`))
}

func (a *rawAdapter) Remove(name string) error {
	a.current = ""
	return a.cw.Remove(strings.ReplaceAll(name, "/", `\`))
}

func TestDifferentialWindowsLayers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	paths := wpaths()
	// The parent layer, written once per path, in the folder each path's layers use.
	parentTar := buildW(t, wparent)
	for _, p := range paths {
		if err := p.write(ctx, parentTar, filepath.Join(dir, p.name, "parent"), nil); err != nil {
			t.Fatalf("%s: parent layer: %v", p.name, err)
		}
	}
	n := 0
	for _, c := range wcases(t) {
		in := c.tar(t)
		for _, child := range []bool{false, true} {
			n++
			want := c.base
			ctxName := "base"
			if child {
				ctxName = "child"
				if c.child != asBase {
					want = c.child
				}
			}
			t.Run(c.name+"/"+ctxName, func(t *testing.T) {
				layerName := fmt.Sprintf("l%03d", n)
				var verdicts []string
				var errs []error
				var trees [][]string
				for _, p := range paths {
					var parents []string
					if child {
						parents = []string{filepath.Join(dir, p.name, "parent")}
					}
					layer := filepath.Join(dir, p.name, layerName)
					err := p.write(ctx, in, layer, parents)
					errs = append(errs, err)
					if err != nil {
						verdicts = append(verdicts, wclass(err))
						trees = append(trees, nil)
						continue
					}
					verdicts = append(verdicts, "")
					trees = append(trees, p.read(t, layer))
				}
				for i, p := range paths {
					if verdicts[i] != want {
						t.Errorf("%s: verdict %q (%v), want %q", p.name, verdicts[i], errs[i], want)
					}
				}
				if want != "" {
					entry := c.entry
					if child && c.centry != "" {
						entry = c.centry
					}
					checkNamed(t, paths, errs, entry)
					return
				}
				for i := 1; i < len(paths); i++ {
					if trees[i] == nil || trees[0] == nil {
						continue
					}
					a, b := trees[0], trees[i]
					if paths[i].name == "CimLayerWriter" {
						// hcsshim's CimLayerWriter.Add has no way to say that a file
						// has no data stream at all: it becomes an empty one.
						a, b = maskNoData(a), maskNoData(b)
					}
					if d := firstDiff(a, b); d != "" {
						t.Errorf("%s and %s read back different layers: %s", paths[0].name, paths[i].name, d)
					}
				}
			})
		}
	}
	if n < 200 {
		t.Errorf("only %d generated layers; want at least 200", n)
	}
	t.Logf("%d layers through %d paths", n, len(paths))
}

// checkNamed checks that every path's error names the entry and, for the paths
// reading the tar directly, its offset, the same for all.
func checkNamed(t *testing.T, paths []wpath, errs []error, entry string) {
	t.Helper()
	var off int64 = -2
	for i, err := range errs {
		if err == nil {
			continue
		}
		var te *ociwclayer.TarError
		if !errors.As(err, &te) {
			// hcsshim's LayerWriter may only report a file's failure at Close.
			if paths[i].name != "LayerWriter" {
				t.Errorf("%s: %v is not a *ociwclayer.TarError", paths[i].name, err)
			}
			te = &ociwclayer.TarError{Entry: entry, Offset: off}
		}
		if off == -2 {
			off = te.Offset
		} else if te.Offset != off && i < 2 {
			t.Errorf("%s: offset %d, want %d as the others", paths[i].name, te.Offset, off)
		}
		if entry == "" {
			continue
		}
		norm := func(s string) string { return strings.TrimSuffix(strings.ReplaceAll(s, `\`, "/"), "/") }
		if i < 2 && te.Entry != entry {
			t.Errorf("%s: error names %q, want %q: %v", paths[i].name, te.Entry, entry, err)
		}
		// The hcsshim-shaped writers may report a file's failure at the next call
		// (backup streams are parsed as they arrive); the error still names it.
		if !strings.Contains(norm(err.Error()), norm(entry)) {
			t.Errorf("%s: error %q does not name %s", paths[i].name, err, entry)
		}
	}
}

func maskNoData(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = strings.Replace(s, " nodata=true ", " nodata=false ", 1)
	}
	return out
}

func firstDiff(a, b []string) string {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return fmt.Sprintf("entry %d:\n\t%s\n\t%s", i, x, y)
		}
	}
	return ""
}
