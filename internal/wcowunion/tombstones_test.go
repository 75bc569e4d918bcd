package wcowunion

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseTombstones(t *testing.T) {
	in := "\uFEFFVersion 1.0\r\n\\Windows\\System32\\a.dll\r\n\r\n\\Program Files\\x y\n"
	got, err := ParseTombstones(strings.NewReader(in), "tombstones.txt")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Windows/System32/a.dll", "Program Files/x y"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, tt := range []struct{ in, want string }{
		{"\\a\n", "line 1 (byte 0): want the version header"},
		{"Version 1.0\n\\..\\etc\n", "line 2 (byte 12): not a path inside Files"},
		{"Version 1.0\n\\a\\\\b\n", "line 2 (byte 12)"},
		{"Version 1.0\n\\\n", "line 2"},
	} {
		_, err := ParseTombstones(strings.NewReader(tt.in), "t.txt")
		if !errors.Is(err, ErrBadTombstones) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want ErrBadTombstones with %q", tt.in, err, tt.want)
		}
	}
}

// FuzzParseTombstones checks that every name accepted stays inside Files: local,
// clean, slash-separated, without NUL.
func FuzzParseTombstones(f *testing.F) {
	f.Add("\uFEFFVersion 1.0\n\\Windows\\a.dll\n")
	f.Add("Version 1.0\r\n\\a\\..\\..\\b\r\n")
	f.Add("Version 1.0\n\\\\server\\share\n\\C:\\x\n")
	f.Fuzz(func(t *testing.T, in string) {
		names, err := ParseTombstones(strings.NewReader(in), "t.txt")
		if err != nil {
			if !errors.Is(err, ErrBadTombstones) {
				t.Fatalf("error %v is not ErrBadTombstones", err)
			}
			return
		}
		for _, n := range names {
			if !filepath.IsLocal(n) || filepath.Clean(n) != n || strings.ContainsAny(n, "\\\x00") {
				t.Fatalf("name %q escapes Files or is not clean", n)
			}
			if j := filepath.Join("/root", n); !strings.HasPrefix(j, "/root/") {
				t.Fatalf("name %q joins to %q, outside the root", n, j)
			}
		}
	})
}
