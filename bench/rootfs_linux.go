package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// writeTreeTar writes the tree at root as a deterministic tar: entries in lexical
// order, numeric owners only, times in whole seconds, extended attributes as PAX
// SCHILY.xattr records, a second name of a file as a hard link. It returns the
// number of device and fifo entries.
func writeTreeTar(root string, w io.Writer) (int, error) {
	tw := tar.NewWriter(w)
	seen := map[[2]uint64]string{}
	devices := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: path, Err: err}
		}
		h := &tar.Header{
			Name:    filepath.ToSlash(rel),
			Mode:    int64(st.Mode & 0o7777),
			Uid:     int(st.Uid),
			Gid:     int(st.Gid),
			ModTime: time.Unix(st.Mtim.Sec, 0),
			Format:  tar.FormatPAX,
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		case unix.S_IFLNK:
			h.Typeflag = tar.TypeSymlink
			if h.Linkname, err = os.Readlink(path); err != nil {
				return err
			}
		case unix.S_IFREG:
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if first, ok := seen[key]; ok && st.Nlink > 1 {
				h.Typeflag, h.Linkname = tar.TypeLink, first
			} else {
				h.Typeflag, h.Size = tar.TypeReg, st.Size
				if st.Nlink > 1 {
					seen[key] = h.Name
				}
			}
		case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
			h.Typeflag = map[uint32]byte{unix.S_IFCHR: tar.TypeChar, unix.S_IFBLK: tar.TypeBlock, unix.S_IFIFO: tar.TypeFifo}[st.Mode&unix.S_IFMT]
			h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
			devices++
		default:
			return nil // sockets have no tar form
		}
		if err := addXattrs(path, h); err != nil {
			return err
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.CopyN(tw, f, h.Size)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return devices, tw.Close()
}

// addXattrs adds the extended attributes of path to h as PAX records, in name order.
func addXattrs(path string, h *tar.Header) error {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(path, buf)
	if errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	if err != nil {
		return &fs.PathError{Op: "listxattr", Path: path, Err: err}
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(path, name, val)
		if err != nil {
			return &fs.PathError{Op: "getxattr " + name, Path: path, Err: err}
		}
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+name] = string(val[:m])
	}
	return nil
}

// compareTrees compares the trees a (the peer's) and b (ours) entry by entry: type,
// permissions, owner, size, link target, modification time (seconds) and extended
// attributes, and says how many entries matched or which differ.
func compareTrees(a, b string) string {
	type entry struct {
		st     unix.Stat_t
		link   string
		xattrs string
	}
	read := func(root string) (map[string]entry, error) {
		m := map[string]entry{}
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			var e entry
			if err := unix.Lstat(path, &e.st); err != nil {
				return err
			}
			if e.st.Mode&unix.S_IFMT == unix.S_IFLNK {
				e.link, _ = os.Readlink(path)
			}
			h := &tar.Header{}
			if err := addXattrs(path, h); err != nil {
				return err
			}
			keys := make([]string, 0, len(h.PAXRecords))
			for k, v := range h.PAXRecords {
				keys = append(keys, k+"="+v)
			}
			slices.Sort(keys)
			e.xattrs = strings.Join(keys, ";")
			m[rel] = e
			return nil
		})
		return m, err
	}
	ma, err := read(a)
	if err != nil {
		return "cannot read the peer's tree: " + err.Error()
	}
	mb, err := read(b)
	if err != nil {
		return "cannot read ours: " + err.Error()
	}
	var diffs []string
	for name, ea := range ma {
		eb, ok := mb[name]
		if !ok {
			diffs = append(diffs, name+": missing in ours")
			continue
		}
		var what []string
		if ea.st.Mode != eb.st.Mode {
			what = append(what, fmt.Sprintf("mode %o vs %o", ea.st.Mode, eb.st.Mode))
		}
		if ea.st.Uid != eb.st.Uid || ea.st.Gid != eb.st.Gid {
			what = append(what, "owner")
		}
		if ea.st.Mode&unix.S_IFMT == unix.S_IFREG && ea.st.Size != eb.st.Size {
			what = append(what, "size")
		}
		if ea.st.Nlink != eb.st.Nlink && ea.st.Mode&unix.S_IFMT != unix.S_IFDIR {
			what = append(what, "link count")
		}
		if ea.link != eb.link {
			what = append(what, "symlink target")
		}
		if name != "." && ea.st.Mtim.Sec != eb.st.Mtim.Sec {
			what = append(what, "mtime")
		}
		if ea.xattrs != eb.xattrs {
			what = append(what, "xattrs")
		}
		if len(what) > 0 {
			diffs = append(diffs, name+": "+strings.Join(what, ", "))
		}
	}
	for name := range mb {
		if _, ok := ma[name]; !ok {
			diffs = append(diffs, name+": only in ours")
		}
	}
	if len(diffs) == 0 {
		return fmt.Sprintf("identical, %d entries (type, mode, owner, size, links, symlink targets, mtime, xattrs)", len(ma))
	}
	slices.Sort(diffs)
	return fmt.Sprintf("%d of %d entries differ, first: %s", len(diffs), len(ma), strings.Join(diffs[:min(3, len(diffs))], "; "))
}
