// Package cimview shows a CIM image (package pkg/cimfs) as a read-only POSIX file
// system tree, and serves it through FUSE as the fusefs kind "cim".
//
// The logic lives in View, which needs no kernel: Lookup, ReadDir, Attr,
// Readlink, ReadAt and the extended attribute calls work on any OS and are
// what the fuzz target drives. The go-fuse nodes in fuse_linux.go are thin
// wrappers over it.
//
// # What the tree shows
//
//   - Files and directories with the image's stored names. Lookups are
//     case-insensitive, as on Windows: "FILES/windows" finds "Files/Windows".
//     A forked image is shown as its whole merged tree, with the names it
//     removed absent (the reader already resolves forks).
//   - Inode numbers are the CIM file IDs (the root directory is inode 1; if the
//     root's file ID is not 1, the file with ID 1 gets the root's ID instead),
//     so hard links share an inode number, and numbers are the same on every
//     mount of the same image. st_nlink counts the names of a file; a
//     directory has 2 plus its subdirectories.
//   - Sizes are the unnamed data stream's length (directories 0). mtime is
//     LastWriteTime, atime LastAccessTime, ctime ChangeTime, and the birth time
//     (statx STATX_BTIME) CreationTime, all to the 100 ns of the FILETIME.
//   - Modes: Windows has none, so directories are 0755 and files 0644, without
//     the write bits when FILE_ATTRIBUTE_READONLY is set; owner and group are 0.
//   - Symbolic links and mount points (junctions) become Linux symlinks; every
//     other reparse point is shown as the plain file or directory it is set
//     on, with its buffer in user.hcs.reparse.
//
// # Symlink targets
//
// A relative Windows link (SYMLINK_FLAG_RELATIVE, target not starting with
// '\') keeps its target with '\' turned into '/': `..\Windows` becomes
// "../Windows". An absolute target — a drive path such as `\??\C:\ProgramData`
// or `C:\ProgramData`, or a rooted path `\ProgramData` — names a path on the
// container's system drive, which in a layer is the Files directory (or
// UtilityVM/Files for links under it), so it becomes a relative link to that
// place inside the mount: a junction Files/special/junction to
// `C:\ProgramData` reads "../ProgramData". ".." components cannot climb above
// that root. Targets that name no such place (UNC paths, volume GUID paths,
// links outside Files/ and UtilityVM/Files/) are kept as the Windows print
// name, unchanged: a dangling link that shows where it pointed. Links resolve
// case-insensitively like every lookup. A symlink with several names (a hard
// link to a reparse point) is translated from the first name it was found at.
//
// # Extended attributes
//
// The Windows metadata of each file is in the "user" namespace, values binary
// as Windows stores them (the form ntfs-3g's system.ntfs_* attributes use):
//
//	user.hcs.attributes  4 bytes, little-endian FILE_ATTRIBUTE_* value
//	user.hcs.times       32 bytes, four little-endian FILETIMEs in
//	                     FILE_BASIC_INFO order: creation, last access,
//	                     last write, change
//	user.hcs.sd          the self-relative security descriptor (if any)
//	user.hcs.ea          the FILE_FULL_EA_INFORMATION chain (if any)
//	user.hcs.reparse     the complete reparse buffer, 8-byte header included
//	                     (if any)
//	user.hcs.ads.<name>  the content of the alternate data stream <name>
//
// Linux limits a value to 64 KiB (XATTR_SIZE_MAX), a name to 255 bytes and a
// file's name list to 64 KiB: getxattr of a larger stream fails with E2BIG
// (its size is still reported when asked with a zero-length buffer), and a
// stream whose attribute name would exceed 255 bytes is left out of the list.
// Every stream, whatever its size, is also readable as a file: looking up
// "<file>:<stream>" (a name Windows cannot have otherwise) opens it, as
// Windows does; such names are not listed by readdir.
//
// # Caching and errors
//
// The image is immutable, so the kernel may keep everything it learns:
// entries and attributes for an hour (fusefs's defaults), file pages across
// opens (the server answers the first OPEN with ENOSYS, FUSE's "no open"
// mode, after which opens and closes never reach it and pages are kept as with
// FOPEN_KEEP_CACHE; FLUSH likewise), and directory listings (OPENDIR is
// answered the same way, so listings are cached with FOPEN_CACHE_DIR and a walk
// of a tree already listed never reaches the server).
// Reads of stored data are spliced from the region files without a copy
// through the server. Requests are served concurrently. A structure that breaks the format gives EIO
// for the operation that reached it (the helper logs the reader's error,
// naming the object and offset); the rest of the tree stays readable.
package cimview

// Kind is the fusefs kind that serves a CIM: Request.Source is the .cim file.
const Kind = "cim"
