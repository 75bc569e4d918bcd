//go:build unix

package winlayer

import "golang.org/x/sys/unix"

func lstatAt(dirFD int, base string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirFD, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, err
	}
	return &st, nil
}

// The file type tests take the mode as each system's stat has it (32 bits on
// Linux, 16 on the BSDs).
func isDirMode[M uint16 | uint32](m M) bool     { return uint32(m)&unix.S_IFMT == unix.S_IFDIR }
func isSymlinkMode[M uint16 | uint32](m M) bool { return uint32(m)&unix.S_IFMT == unix.S_IFLNK }
func isRegMode[M uint16 | uint32](m M) bool     { return uint32(m)&unix.S_IFMT == unix.S_IFREG }
