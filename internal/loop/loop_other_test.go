//go:build !linux

package loop

import (
	"errors"
	"testing"
)

func TestUnsupported(t *testing.T) {
	if _, err := Attach("disk.img", Options{}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Attach = %v, want errors.ErrUnsupported", err)
	}
	if _, err := Find("disk.img"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Find = %v, want errors.ErrUnsupported", err)
	}
	if err := DetachPath("/dev/loop0"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("DetachPath = %v, want errors.ErrUnsupported", err)
	}
}
