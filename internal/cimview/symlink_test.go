package cimview

import (
	"testing"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

func TestLinkTarget(t *testing.T) {
	for _, c := range []struct {
		link, target string
		mountPoint   bool
		want         string
	}{
		{"Files/a/l", `..\b\c`, false, "../b/c"},
		{"Files/a/l", `b`, false, "b"},
		{"Files/a/l", `C:\ProgramData`, false, "../ProgramData"},
		{"Files/a/l", `C:\ProgramData`, true, "../ProgramData"},
		{"Files/l", `c:\Windows\System32`, true, "Windows/System32"},
		{"Files/a/b/l", `C:\`, false, "../.."},
		{"Files/a/l", `\Windows`, false, "../Windows"},
		{"Files/a/l", `C:\..\..\etc`, false, "../etc"},
		{"UtilityVM/Files/x/l", `C:\EFI\BCD`, true, "../EFI/BCD"},
		{"Files/a/l", `\\server\share\x`, false, `\\server\share\x`},
		{"Files/a/l", `\\?\Volume{01234567-89ab-cdef-0123-456789abcdef}\x`, false, `\\?\Volume{01234567-89ab-cdef-0123-456789abcdef}\x`},
		{"Hives/l", `C:\Windows`, false, `C:\Windows`},
		{"l", `D:\data`, true, `D:\data`},
	} {
		rp := winfile.NewLinkReparsePoint(c.target, c.mountPoint)
		b, err := rp.Encode()
		if err != nil {
			t.Fatal(err)
		}
		rp, err = winfile.DecodeReparsePoint(b)
		if err != nil {
			t.Fatal(err)
		}
		if got := linkTarget(rp, c.link); got != c.want {
			t.Errorf("%s -> %s (mount point %v): %q, want %q", c.link, c.target, c.mountPoint, got, c.want)
		}
	}
}
