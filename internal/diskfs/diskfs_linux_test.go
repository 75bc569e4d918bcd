package diskfs

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestFormatErrors(t *testing.T) {
	if err := Format(context.Background(), "/dev/null", FormatOptions{Filesystem: "xfs"}); err == nil {
		t.Error("formatting with an unknown file system succeeded")
	}
	if err := Format(context.Background(), filepath.Join(t.TempDir(), "missing"), FormatOptions{}); !errors.Is(err, ErrTool) {
		t.Errorf("mkfs on a missing device: %v", err)
	}
}

func TestProbe(t *testing.T) {
	b := make([]byte, 2048)
	if probe(b) != None {
		t.Error("zeros probed as a file system")
	}
	b[1024+56], b[1024+57] = 0x53, 0xef
	if probe(b) != Ext4 {
		t.Error("ext4 magic not found")
	}
	copy(b[3:], "NTFS    ")
	if probe(b) != NTFS {
		t.Error("NTFS OEM ID not found")
	}
	if probe(b[:10]) != None {
		t.Error("short buffer")
	}
}
