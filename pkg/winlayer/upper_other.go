//go:build !linux

package winlayer

import (
	"io/fs"
	"os"
	"time"
)

// Only Linux has overlayfs, whose upper directories mark removals with device
// files and opaque directories with trusted extended attributes.
const upperSupported = false

func statUpper(path string) (upperStat, error) {
	return upperStat{}, &fs.PathError{Op: "stat", Path: path, Err: ErrUpperOnThisOS}
}

func openNoFollow(path string) (*os.File, error) { return os.Open(path) }

// fileTimes returns the modification time for both: the access and change times
// need the system's stat structure.
func fileTimes(fi fs.FileInfo) (atime, ctime time.Time) { return fi.ModTime(), fi.ModTime() }
