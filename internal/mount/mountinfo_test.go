package mount

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const sampleMountInfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
36 22 0:32 / /mnt/with\040space\011tab rw,nosuid master:4 shared:7 - tmpfs none rw,size=1024k
37 36 0:33 / /mnt/with\040space\011tab/u rw - overlay hcs-c1 rw,lowerdir=/a\134b:/c,upperdir=/u,workdir=/w
38 22 7:3 /sub /var/lib/x ro - ext4 /dev/loop3 ro,noload
`

func TestParseMountInfo(t *testing.T) {
	got, err := ParseMountInfo(strings.NewReader(sampleMountInfo))
	if err != nil {
		t.Fatal(err)
	}
	want := []Info{
		{ID: 22, Parent: 1, Major: 8, Minor: 1, Root: "/", MountPoint: "/", Options: "rw,relatime", Optional: []string{"shared:1"}, FSType: "ext4", Source: "/dev/sda1", SuperOptions: "rw,errors=remount-ro"},
		{ID: 36, Parent: 22, Major: 0, Minor: 32, Root: "/", MountPoint: "/mnt/with space\ttab", Options: "rw,nosuid", Optional: []string{"master:4", "shared:7"}, FSType: "tmpfs", Source: "none", SuperOptions: "rw,size=1024k"},
		{ID: 37, Parent: 36, Major: 0, Minor: 33, Root: "/", MountPoint: "/mnt/with space\ttab/u", Options: "rw", FSType: "overlay", Source: "hcs-c1", SuperOptions: `rw,lowerdir=/a\b:/c,upperdir=/u,workdir=/w`},
		{ID: 38, Parent: 22, Major: 7, Minor: 3, Root: "/sub", MountPoint: "/var/lib/x", Options: "ro", FSType: "ext4", Source: "/dev/loop3", SuperOptions: "ro,noload"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%#v\nwant\n%#v", got, want)
	}
	under := Under(got, "/mnt/with space\ttab")
	if len(under) != 2 || under[0].ID != 36 || under[1].ID != 37 {
		t.Errorf("Under: got %v, want mounts 36 and 37", under)
	}
	if n := len(Under(got, "/mnt/with")); n != 0 {
		t.Errorf("Under(/mnt/with) matched %d mounts, want 0 (prefix of a name is not a parent)", n)
	}
	for _, in := range got {
		if line := in.format(); !strings.Contains(sampleMountInfo, line+"\n") {
			t.Errorf("format gave %q, not a line of the input", line)
		}
	}
}

func TestParseMountInfoErrors(t *testing.T) {
	tests := []struct {
		name, in, field string
		line            int
		offset          int64
	}{
		{"no separator", "1 2 0:1 / / rw ext4 none rw\n", "separator", 1, 0},
		{"short", "1 2 0:1 / /\n", "separator", 1, 0},
		{"bad id", "x 2 0:1 / / rw - ext4 none rw\n", "mount ID", 1, 0},
		{"bad dev", "22 1 8:1 / / rw - ext4 none rw\n1 2 01 / / rw - ext4 none rw\n", "major:minor", 2, 31},
		{"bad escape", `1 2 0:1 / /a\09 rw - ext4 none rw`, "mount point", 1, 0},
		{"cut escape", `1 2 0:1 / /a\04 rw - ext4 none rw`, "mount point", 1, 0},
		{"extra after super", "1 2 0:1 / / rw - ext4 none rw extra\n", "super options", 1, 0},
		{"empty fstype", "1 2 0:1 / / rw -  none rw\n", "fstype", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMountInfo(strings.NewReader(tt.in))
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidMountInfo) {
				t.Fatalf("got %v, want a *ParseError matching ErrInvalidMountInfo", err)
			}
			if pe.Field != tt.field || pe.Line != tt.line || pe.Offset != tt.offset {
				t.Errorf("got field %q line %d offset %d, want %q %d %d (%v)", pe.Field, pe.Line, pe.Offset, tt.field, tt.line, tt.offset, err)
			}
		})
	}
}

// FuzzParseMountInfo checks that whatever parses formats back to text that parses to
// the same mounts, and that paths never come out with escapes left in them.
func FuzzParseMountInfo(f *testing.F) {
	f.Add(sampleMountInfo)
	f.Add(`1 2 0:1 / /a\134\040b rw - ext4 none rw`)
	f.Add("1 2 0:1 / / rw a b c - x y z\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		infos, err := ParseMountInfo(strings.NewReader(in))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		var b strings.Builder
		for _, in := range infos {
			b.WriteString(in.format() + "\n")
		}
		again, err := ParseMountInfo(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("formatted mounts do not parse: %v\n%s", err, b.String())
		}
		if len(again) != len(infos) {
			t.Fatalf("round trip: %d mounts, want %d", len(again), len(infos))
		}
		for i := range infos {
			a, b := infos[i], again[i]
			if len(a.Optional) == 0 {
				a.Optional = nil
			}
			if len(b.Optional) == 0 {
				b.Optional = nil
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("round trip of mount %d:\n%#v\n%#v", i, a, b)
			}
		}
	})
}
