package diskfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Grow grows the file system on device to the size of the device. mounted
// says whether it is mounted: ext4 then grows online (resize2fs asks the
// kernel, which wants CAP_SYS_RESOURCE: ErrOnlineNotPermitted without it);
// unmounted ext4 is checked with e2fsck first, as resize2fs requires. NTFS
// grows only unmounted (ErrOfflineOnly).
func Grow(ctx context.Context, device string, mounted bool) error {
	fsys, err := Probe(device)
	if err != nil {
		return err
	}
	switch fsys {
	case Ext4:
		if mounted && !capabilityCheck(unix.CAP_SYS_RESOURCE) {
			return fmt.Errorf("diskfs: growing %s: %w", device, ErrOnlineNotPermitted)
		}
		if !mounted {
			// -p repairs what is safe; exit codes 1 and 2 mean "fixed".
			if err := runTool(ctx, "e2fsprogs", "e2fsck", "-f", "-p", device); err != nil {
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() > 2 {
					return err
				}
			}
		}
		err := runTool(ctx, "e2fsprogs", "resize2fs", device)
		if mounted && err != nil && strings.Contains(err.Error(), "Permission denied to resize") {
			// The capability is in effect but not in the initial user
			// namespace, where the kernel looks for it.
			return fmt.Errorf("diskfs: growing %s: %w: %w", device, ErrOnlineNotPermitted, err)
		}
		return err
	case NTFS:
		if mounted {
			return fmt.Errorf("diskfs: growing %s: %w", device, ErrOfflineOnly)
		}
		return runTool(ctx, "ntfs-3g", "ntfsresize", "--force", "--no-progress-bar", device)
	}
	return fmt.Errorf("diskfs: growing %s: %w", device, ErrUnknownFilesystem)
}

// capabilityCheck is hasCapability; tests replace it to reach the kernel's
// own refusal.
var capabilityCheck = hasCapability

// hasCapability reports whether the process has capability c in effect.
func hasCapability(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<uint(c)) != 0
		}
	}
	return false
}
