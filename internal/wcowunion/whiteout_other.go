//go:build !unix

package wcowunion

import (
	"errors"
	"fmt"
	"os"
)

// mkWhiteout fails: overlay whiteouts are device files, which this system
// cannot make (and overlayfs is Linux's).
func mkWhiteout(p string) error {
	return &os.PathError{Op: "mknod", Path: p, Err: fmt.Errorf("overlay whiteouts need Linux: %w", errors.ErrUnsupported)}
}
