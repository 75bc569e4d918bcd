// Package ocilayer applies OCI image layers (uncompressed tar streams) onto
// Linux directories and produces them from overlayfs upper directories.
//
// # Apply
//
// Apply extracts a layer onto a root directory being assembled from several
// layers. It creates regular files, directories, symlinks, hard links,
// character and block devices and fifos, and applies uid/gid, mode bits
// (setuid, setgid and sticky included), extended attributes from PAX
// SCHILY.xattr.* records (the user, trusted and security namespaces, except
// overlayfs's own trusted.overlay.* and user.overlay.*), modification and
// access times. Directory times are set after all entries, children before
// parents, so that creating children does not disturb them.
//
// OCI whiteouts are honoured: an entry ".wh.NAME" removes NAME (and all below
// it) from the directory; ".wh..wh..opq" makes its directory opaque, removing
// everything below it that was not written by this layer, whether the layer's
// entries come before or after the marker. "From this layer" goes by the
// names the entries are written under: when the marker's directory is reached
// through a symlink, entries written to the same directory under its real name
// do not count. Other ".wh..wh." names are AUFS
// metadata and are ignored. Whiteout entries are never created on disk.
//
// When a name occurs twice the later entry wins: it replaces what is there,
// except that a directory entry over an existing directory only updates the
// directory's metadata and keeps its contents.
//
// Sparse files (GNU 'S' entries and PAX GNU.sparse 0.x and 1.0 records) are
// applied with their holes left as holes: the tar reader (pkg/tarstream, as
// archive/tar) hands the holes over as zeros, and runs of whole 64 KiB zero
// chunks are skipped rather than written.
// Their logical size is bounded like any file's (DefaultMaxFileSize, 128 GiB,
// or WithMaxFileSize), so a small layer cannot claim an unbounded file;
// reading the synthesised zeros costs time, not space.
//
// # Rules
//
// Every entry passes the Validator first, the same rules ext4 images (package
// pkg/ext4) and Diff's output follow, so a layer one path accepts every path
// accepts: no names leaving the root, no writes below a symlink, file or device
// of the same layer, no overlayfs xattrs (trusted.overlay.*, user.overlay.*),
// no malformed whiteouts (".wh.", ".wh..", ".wh..."), no empty symlink targets,
// no file over the maximum size. See Validator.
//
// # All or nothing
//
// Apply works in place: on failure the entries before the failing one stay
// applied (with their replacements and whiteouts), nothing from it on is, and
// nothing outside root is touched. ApplyNew builds a new tree in a staging
// directory beside its target and renames it into place only when every entry
// applied, so a failure, a cancellation or a killed process leaves the target as
// it was.
//
// # Confinement
//
// Every path is resolved under a descriptor of root with openat2(2) and
// RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS, and the final element is created,
// replaced or changed relative to its parent's descriptor without following
// it. Symlinks already in the tree, absolute ones included, therefore resolve
// as if root were "/": after "a -> /etc" from a lower layer, an entry
// "a/passwd" writes root/etc/passwd (or fails when root/etc does not exist),
// never the host's file (the Validator refuses it when the symlink is of the
// same layer). Hard-link targets and whiteouts are resolved the same way. Leading slashes in names are dropped; a name,
// hard-link target or whiteout that still leaves root after cleaning (such as
// "../x") is rejected with ErrInsecurePath rather than clamped, since no
// well-formed layer contains one.
//
// Parent descriptors are kept between entries, so the entries of one
// directory share one resolution; any removal (a replaced entry, a whiteout,
// an opaque marker) drops them all, so names after it resolve afresh. Regular
// files get their data in writes of up to 1 MiB and their owner, mode, xattrs
// and times through the open descriptor. Apply does not sync: callers that
// need durability call syncfs(2) or sync -f once afterwards. Writeback of
// files from 256 KiB is started (not waited for) as soon as their data is
// written, so that such a sync finds less left to write.
//
// # Diff
//
// Diff walks an overlayfs upper directory in byte-wise name order, each
// directory before its children, and writes a deterministic PAX tar: regular
// files, directories, symlinks, devices and fifos (hard links of any of them
// found by inode, the first name in walk order being the file), directories, symlinks, devices and fifos with mode, uid, gid,
// modification time and extended attributes; user and group names are left
// empty and access times are not recorded. Overlay whiteouts (character
// devices 0/0, or empty files with an overlay.whiteout xattr) become ".wh.NAME"
// entries; an opaque directory (trusted.overlay.opaque or user.overlay.opaque
// set to "y") is written followed by "DIR/.wh..wh..opq", an opaque upper root
// as a first entry ".wh..wh..opq". Other overlay xattrs are dropped. Every
// entry written passes the Validator and must mean what the upper holds: a
// real file named ".wh.x" would read as a whiteout, and fails with
// ErrUnsupported. Upper directories using metacopy or redirect_dir cannot be
// translated without the lower layers and fail with ErrUnsupported.
//
// # Errors
//
// Failures tied to an entry are *EntryError values naming the entry, the
// stream offset of its header and the operation; test their class with
// errors.Is against ErrInsecurePath, ErrInvalidEntry and ErrUnsupported, or
// against system errors such as fs.ErrPermission.
//
// # Memory
//
// File data is copied through one reused 32 KiB buffer. Apply remembers the
// names of the layer's entries (to implement opaque directories and
// last-wins directory times), so its memory grows with the number of entries,
// never with their sizes.
//
// # Platforms
//
// Apply and Diff are Linux-only (openat2 needs Linux 5.6); elsewhere they
// return an error matching ErrUnsupported. Xattrs of symlinks, devices and
// fifos are set through /proc/self/fd, which must be mounted.
package ocilayer
