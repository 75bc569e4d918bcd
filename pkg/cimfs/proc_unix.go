//go:build unix

package cimfs

import (
	"bytes"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// processMayExist reports whether process pid may still run: kill(pid, 0)
// says ESRCH only when it does not. A zombie (a dead process its parent has not
// reaped yet, which is what a killed writer is until then) does not run: on
// Linux its /proc/<pid>/stat state is Z.
func processMayExist(pid int) bool {
	if unix.Kill(pid, 0) == unix.ESRCH {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // not Linux, or cannot tell
	}
	// The state follows the command name, which is in parentheses and may hold
	// any byte: it is the field after the last ')'.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}
