package mountinfo

import (
	"errors"
	"strings"
	"testing"
)

const sample = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
36 35 98:0 /mnt1 /mnt\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue
40 22 0:50 / /run/hostcompute/fuse/ab/mnt rw,nosuid,nodev - fuse.hostcompute hostcompute:ab rw,user_id=0
41 22 0:51 / /x rw - tmpfs  rw
`

func TestParse(t *testing.T) {
	ms, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 {
		t.Fatalf("got %d mounts, want 4", len(ms))
	}
	m := ms[1]
	if m.ID != 36 || m.ParentID != 35 || m.Major != 98 || m.Minor != 0 || m.Root != "/mnt1" ||
		m.Mountpoint != "/mnt two" || m.FSType != "ext3" || m.Source != "/dev/root" ||
		m.SuperOptions != "rw,errors=continue" || m.Options != "rw,noatime" {
		t.Errorf("line 2: %+v", m)
	}
	if ms[2].FSType != "fuse.hostcompute" || ms[2].Source != "hostcompute:ab" {
		t.Errorf("line 3: %+v", ms[2])
	}
	// An empty source field leaves the super options where the source was:
	// the kernel never writes that, but the parser must not fail on it.
	if ms[3].FSType != "tmpfs" {
		t.Errorf("line 4: %+v", ms[3])
	}
}

func TestParseInvalid(t *testing.T) {
	for _, s := range []string{
		"x 1 8:1 / / rw - ext4 /dev/sda1 rw",
		"1 1 8:1 / / rw ext4 /dev/sda1 rw",
		"1 1 81 / / rw - ext4 /dev/sda1 rw",
		"1 1 8:1 / / rw - ext4",
		"1 1 8:1 / - ext4 a b",
	} {
		if _, err := Parse(strings.NewReader(s)); !errors.Is(err, ErrInvalidFormat) {
			t.Errorf("%q: got %v, want ErrInvalidFormat", s, err)
		}
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`a\040b`: "a b", `\134`: `\`, `a\04`: `a\04`, `\999`: `\999`, `x\011y\012`: "x\ty\n",
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadSelf(t *testing.T) {
	ms, err := Read()
	if err != nil {
		t.Skipf("no /proc/self/mountinfo: %v", err)
	}
	found := false
	for _, m := range ms {
		if m.Mountpoint == "/" {
			found = true
		}
	}
	if !found {
		t.Error("no mount at /")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("1 2 3:4 / / rw - a b c\n")
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := Parse(strings.NewReader(s))
		if err != nil && !errors.Is(err, ErrInvalidFormat) && !strings.Contains(err.Error(), "token too long") {
			t.Fatalf("unexpected error class: %v", err)
		}
		for _, m := range ms {
			if m.FSType == "" {
				t.Fatalf("mount without type: %+v", m)
			}
		}
	})
}
