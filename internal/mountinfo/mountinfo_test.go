package mountinfo

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// sample holds what the kernel writes: escapes in paths, optional fields, a FUSE
// source, an empty source, escaped commas in super options, an nsfs root.
const sample = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
36 22 0:32 / /mnt/with\040space\011tab rw,nosuid master:4 shared:7 - tmpfs none rw,size=1024k
37 36 0:33 / /mnt/with\040space\011tab/u rw - overlay hcs-c1 rw,lowerdir=/a\134\054b:/c,upperdir=/u,workdir=/w
38 22 7:3 /sub /var/lib/x ro - ext4 /dev/loop3 ro,noload
40 22 0:50 / /run/hostcompute/fuse/ab/mnt rw,nosuid,nodev - fuse.hostcompute hostcompute:ab rw,user_id=0
41 22 0:51 / /x\012y\134 rw,relatime - tmpfs  rw
42 22 0:4 net:[4026531840] /run/netns/n1 rw shared:9 - nsfs nsfs rw
`

func TestParse(t *testing.T) {
	got, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{ID: 22, ParentID: 1, Major: 8, Minor: 1, Root: "/", Mountpoint: "/", Options: "rw,relatime", Optional: []string{"shared:1"}, FSType: "ext4", Source: "/dev/sda1", SuperOptions: "rw,errors=remount-ro"},
		{ID: 36, ParentID: 22, Major: 0, Minor: 32, Root: "/", Mountpoint: "/mnt/with space\ttab", Options: "rw,nosuid", Optional: []string{"master:4", "shared:7"}, FSType: "tmpfs", Source: "none", SuperOptions: "rw,size=1024k"},
		{ID: 37, ParentID: 36, Major: 0, Minor: 33, Root: "/", Mountpoint: "/mnt/with space\ttab/u", Options: "rw", FSType: "overlay", Source: "hcs-c1", SuperOptions: `rw,lowerdir=/a\134\054b:/c,upperdir=/u,workdir=/w`},
		{ID: 38, ParentID: 22, Major: 7, Minor: 3, Root: "/sub", Mountpoint: "/var/lib/x", Options: "ro", FSType: "ext4", Source: "/dev/loop3", SuperOptions: "ro,noload"},
		{ID: 40, ParentID: 22, Major: 0, Minor: 50, Root: "/", Mountpoint: "/run/hostcompute/fuse/ab/mnt", Options: "rw,nosuid,nodev", FSType: "fuse.hostcompute", Source: "hostcompute:ab", SuperOptions: "rw,user_id=0"},
		{ID: 41, ParentID: 22, Major: 0, Minor: 51, Root: "/", Mountpoint: "/x\ny\\", Options: "rw,relatime", FSType: "tmpfs", Source: "", SuperOptions: "rw"},
		{ID: 42, ParentID: 22, Major: 0, Minor: 4, Root: "net:[4026531840]", Mountpoint: "/run/netns/n1", Options: "rw", Optional: []string{"shared:9"}, FSType: "nsfs", Source: "nsfs", SuperOptions: "rw"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%#v\nwant\n%#v", got, want)
	}
	for _, m := range got {
		if line := format(m); !strings.Contains(sample, line+"\n") {
			t.Errorf("format gave %q, not a line of the input", line)
		}
	}
	// No final newline, blank lines skipped, line numbers still counted.
	ms, err := Parse(strings.NewReader("\n\n1 2 0:1 / / rw - ext4 none rw"))
	if err != nil || len(ms) != 1 || ms[0].SuperOptions != "rw" {
		t.Errorf("without final newline: %+v, %v", ms, err)
	}
	// A carriage return is not a line ending: it belongs to the last field.
	ms, err = Parse(strings.NewReader("1 2 0:1 / / rw - ext4 none rw\r\n"))
	if err != nil || len(ms) != 1 || ms[0].SuperOptions != "rw\r" {
		t.Errorf("carriage return: %+v, %v", ms, err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, field string
		line            int
		offset          int64
	}{
		{"no separator", "1 2 0:1 / / rw ext4 none rw\n", "separator", 1, 0},
		{"short", "1 2 0:1 / /\n", "separator", 1, 0},
		{"separator too early", "1 2 0:1 / - ext4 a b\n", "separator", 1, 0},
		{"missing super options", "1 2 0:1 / / rw - ext4 none\n", "separator", 1, 15},
		{"extra after super", "1 2 0:1 / / rw - ext4 none rw extra\n", "separator", 1, 15},
		{"bad id", "x 2 0:1 / / rw - ext4 none rw\n", "mount ID", 1, 0},
		{"negative id", "-1 2 0:1 / / rw - ext4 none rw\n", "mount ID", 1, 0},
		{"bad parent", "1 y 0:1 / / rw - ext4 none rw\n", "parent ID", 1, 2},
		{"bad dev", "22 1 8:1 / / rw - ext4 none rw\n1 2 01 / / rw - ext4 none rw\n", "major:minor", 2, 31 + 4},
		{"big minor", "1 2 0:4294967296 / / rw - ext4 none rw\n", "major:minor", 1, 4},
		{"empty root", "1 2 0:1  / rw - ext4 none rw\n", "root", 1, 8},
		{"bad escape", `1 2 0:1 / /a\09 rw - ext4 none rw`, "mount point", 1, 10},
		{"cut escape", `1 2 0:1 / /a\04 rw - ext4 none rw`, "mount point", 1, 10},
		{"escape above 0377", `1 2 0:1 / /a\400 rw - ext4 none rw`, "mount point", 1, 10},
		{"empty options", "1 2 0:1 / /  - ext4 none rw\n", "options", 1, 12},
		{"empty optional", "1 2 0:1 / / rw  shared:1 - ext4 none rw\n", "optional fields", 1, 15},
		{"empty fstype", "1 2 0:1 / / rw -  none rw\n", "fstype", 1, 17},
		{"bad source", `1 2 0:1 / / rw - ext4 a\b rw`, "source", 1, 22},
		{"bad super options", `1 2 0:1 / / rw - ext4 none rw,x=\5`, "super options", 1, 27},
		{"empty super options", "1 2 0:1 / / rw - ext4 none \n", "super options", 1, 27},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := Parse(strings.NewReader(tt.in))
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("got %v, %v; want a *ParseError matching ErrInvalidFormat", ms, err)
			}
			if pe.Field != tt.field || pe.Line != tt.line || pe.Offset != tt.offset {
				t.Errorf("got field %q line %d offset %d, want %q %d %d (%v)", pe.Field, pe.Line, pe.Offset, tt.field, tt.line, tt.offset, err)
			}
			if ms != nil {
				t.Errorf("partial result %v beside the error", ms)
			}
		})
	}
}

// TestParseLongLine reads a line longer than the reader's buffer, as an overlay of
// hundreds of deep lowers gives, and refuses one beyond the bound.
func TestParseLongLine(t *testing.T) {
	lower := "/var/lib/hostcompute/layers/" + strings.Repeat("d", 200)
	var opts strings.Builder
	opts.WriteString("ro")
	for i := range 500 {
		fmt.Fprintf(&opts, ",lowerdir+=%s/%d", lower, i)
	}
	in := "1 2 0:1 / / rw - ext4 none rw\n3 1 0:9 / /u ro - overlay hcs " + opts.String() + "\n4 1 0:10 / /v rw - tmpfs none rw\n"
	ms, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[1].SuperOptions != opts.String() || ms[2].Mountpoint != "/v" {
		t.Fatalf("got %d mounts, the overlay's options %d bytes long, want 3 and %d", len(ms), len(ms[1].SuperOptions), opts.Len())
	}
	huge := "1 2 0:1 / / rw - ext4 none rw\n3 1 0:9 / /u ro - overlay hcs ro," + strings.Repeat("x", maxLine) + "\n"
	_, err = Parse(strings.NewReader(huge))
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Field != "line" || pe.Line != 2 || pe.Offset != 30 {
		t.Fatalf("line over %d bytes: got %v, want a *ParseError for line 2 at byte 30", maxLine, err)
	}
}

func TestUnderContaining(t *testing.T) {
	ms, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	ids := func(ms []Mount) []int {
		var out []int
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	for dir, want := range map[string][]int{
		"/mnt/with space\ttab": {36, 37},
		"/mnt/with":            nil, // a prefix of a name is not a parent
		"/":                    {22, 36, 37, 38, 40, 41, 42},
		"/var/lib/x":           {38},
		"/var":                 {38},
	} {
		if got := ids(Under(ms, dir)); !reflect.DeepEqual(got, want) {
			t.Errorf("Under(%q) = %v, want %v", dir, got, want)
		}
	}
	for path, want := range map[string]int{
		"/mnt/with space\ttab/u/a/b": 37,
		"/mnt/with space\ttab":       36,
		"/mnt/with":                  22,
		"/var/lib/xy":                22,
		"/":                          22,
	} {
		if m, ok := Containing(ms, path); !ok || m.ID != want {
			t.Errorf("Containing(%q) = %d, %v; want %d", path, m.ID, ok, want)
		}
	}
	// Of mounts stacked on one mount point, the last is on top.
	stacked := append(ms, Mount{ID: 99, Mountpoint: "/var/lib/x"})
	if m, _ := Containing(stacked, "/var/lib/x/f"); m.ID != 99 {
		t.Errorf("Containing under a stack gave %d, want the top one, 99", m.ID)
	}
	if _, ok := Containing(nil, "/a"); ok {
		t.Error("Containing found a mount in an empty table")
	}
}

// TestReadAgainstFindmnt mounts a tmpfs with an empty source on a directory whose
// name needs every escape, then checks Read against util-linux's findmnt, which
// parses the same table with its own code.
func TestReadAgainstFindmnt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	findmnt, err := exec.LookPath("findmnt")
	if err != nil {
		t.Skip("findmnt (util-linux) not installed:", err)
	}
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "a b\tc\nd\\e")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("", dir, "tmpfs", unix.MS_NOSUID, "size=1m,mode=0711"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	link := filepath.Join(base, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(findmnt, "--list", "--json", "-o", "ID,PARENT,MAJ:MIN,FSROOT,TARGET,SOURCE,FSTYPE,VFS-OPTIONS,FS-OPTIONS,OPT-FIELDS").Output()
	if err != nil {
		t.Fatalf("findmnt: %v", err)
	}
	ms, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	var table struct {
		Filesystems []struct {
			ID, Parent                                    int
			MajMin                                        string `json:"maj:min"`
			FSRoot, Target, FSType, VFSOptions, FSOptions string
			Source, OptFields                             *string
		}
	}
	// encoding/json matches keys without regard to case but not dashes.
	fixed := strings.NewReplacer(`"vfs-options"`, `"vfsoptions"`, `"fs-options"`, `"fsoptions"`, `"opt-fields"`, `"optfields"`).Replace(string(out))
	if err := json.Unmarshal([]byte(fixed), &table); err != nil {
		t.Fatalf("findmnt output: %v", err)
	}
	byID := map[int]Mount{}
	for _, m := range ms {
		byID[m.ID] = m
	}
	// Other processes may mount and unmount between the two reads: compare the
	// mounts both saw, which must include the root and ours.
	compared, ours := 0, false
	for _, f := range table.Filesystems {
		m, ok := byID[f.ID]
		if !ok {
			continue
		}
		compared++
		str := func(p *string) string {
			if p == nil {
				return ""
			}
			return *p
		}
		super, err := unescape(m.SuperOptions, false)
		if err != nil {
			t.Errorf("mount %d: super options %q: %v", m.ID, m.SuperOptions, err)
		}
		// findmnt writes a bind mount's source as "device[/root]".
		source := str(f.Source)
		if m.Root != "/" && strings.HasSuffix(source, "["+m.Root+"]") {
			source = strings.TrimSuffix(source, "["+m.Root+"]")
		}
		got := []string{strconv.Itoa(m.ParentID), fmt.Sprintf("%d:%d", m.Major, m.Minor), m.Root, m.Mountpoint, m.Source, m.FSType, m.Options, super, strings.Join(m.Optional, " ")}
		want := []string{strconv.Itoa(f.Parent), f.MajMin, f.FSRoot, f.Target, source, f.FSType, f.VFSOptions, f.FSOptions, str(f.OptFields)}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("mount %d:\n got  %q\n findmnt %q", m.ID, got, want)
		}
		if m.Mountpoint == dir {
			ours = true
			if m.Source != "" || m.FSType != "tmpfs" || !strings.Contains(m.Options, "nosuid") || !strings.Contains(m.SuperOptions, "size=1024k") {
				t.Errorf("our tmpfs: %+v", m)
			}
		}
	}
	if !ours || compared < 2 {
		t.Fatalf("compared %d mounts with findmnt, ours among them: %v", compared, ours)
	}
	t.Logf("%d mounts agree with findmnt", compared)

	// Lookup resolves the symbolic link, and Under and Containing find the mount.
	got, err := Lookup(link)
	if err != nil || len(got) != 1 || got[0].Mountpoint != dir || got[0].FSType != "tmpfs" {
		t.Errorf("Lookup(%q) = %+v, %v; want our tmpfs", link, got, err)
	}
	if got, err := Lookup(base); err != nil || len(got) != 0 {
		t.Errorf("Lookup(%q) = %+v, %v; want nothing mounted there", base, got, err)
	}
	if u := Under(ms, base); len(u) != 1 || u[0].Mountpoint != dir {
		t.Errorf("Under(%q) = %+v, want our tmpfs alone", base, u)
	}
	if m, ok := Containing(ms, filepath.Join(dir, "f")); !ok || m.Mountpoint != dir {
		t.Errorf("Containing a file in our tmpfs: %+v, %v", m, ok)
	}
}

// format writes m as the kernel would, escaping what it escapes in paths and the
// source; Parse's inverse, for the tests.
func format(m Mount) string {
	esc := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			switch c := s[i]; c {
			case ' ', '\t', '\n', '\\':
				fmt.Fprintf(&b, `\%03o`, c)
			default:
				b.WriteByte(c)
			}
		}
		return b.String()
	}
	f := []string{strconv.Itoa(m.ID), strconv.Itoa(m.ParentID), fmt.Sprintf("%d:%d", m.Major, m.Minor),
		esc(m.Root), esc(m.Mountpoint), m.Options}
	f = append(f, m.Optional...)
	f = append(f, "-", m.FSType, esc(m.Source), m.SuperOptions)
	return strings.Join(f, " ")
}

// FuzzParse checks that Parse either fails with a *ParseError or gives mounts that
// format back to text parsing to the same mounts, with no escapes left in the paths.
func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("1 2 3:4 / / rw - a b c\n")
	f.Add(`1 2 0:1 / /a\134\040b rw - ext4 none rw`)
	f.Add("1 2 0:1 / / rw a b c - x y z\n\n")
	f.Add("41 22 0:51 / /x rw - tmpfs  rw\n")
	f.Add("1 2 0:1 / / rw - ext4 none rw\r\r\n")
	f.Add("x 1 8:1 / / rw - ext4 /dev/sda1 rw")
	f.Add("1 1 8:1 / - ext4 a b")
	f.Fuzz(func(t *testing.T, in string) {
		ms, err := Parse(strings.NewReader(in))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.Line < 1 || pe.Offset < 0 || pe.Offset > int64(len(in)) {
				t.Fatalf("error %v: line %d, offset %d of %d bytes", err, pe.Line, pe.Offset, len(in))
			}
			return
		}
		var b strings.Builder
		for _, m := range ms {
			if m.FSType == "" || m.Root == "" || m.Mountpoint == "" {
				t.Fatalf("mount with an empty field: %+v", m)
			}
			b.WriteString(format(m) + "\n")
		}
		again, err := Parse(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("formatted mounts do not parse: %v\n%q", err, b.String())
		}
		if !reflect.DeepEqual(again, ms) {
			t.Fatalf("round trip:\n%#v\n%#v", ms, again)
		}
	})
}
