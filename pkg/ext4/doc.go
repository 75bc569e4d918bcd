// Package ext4 builds ext4 file system images from OCI layer tar streams, in one pass,
// in the compact read-only layout of hcsshim's tar2ext4.
//
// # Layout
//
// Images use 4096-byte blocks, 256-byte inodes, extents, no journal, no resize inode,
// no backups (sparse_super2 with none), no checksums and the read-only ro_compat flag,
// so the kernel refuses to mount them read-write. Block 0 holds the superblock, the
// group descriptor table follows (sized for the maximum disk size, WithMaximumDiskSize),
// then file data in tar order with each file's attribute block, long symlink target
// and extent tree blocks beside it, then the directories, the inode table of all groups
// and the bitmaps. Inodes are numbered in the order entries first appear (root 2,
// lost+found 11). This is compactext4's allocation algorithm, so that one writer serves
// both modes below.
//
// # Native and compatibility modes
//
// WithHcsshimCompat reproduces hcsshim v0.13.0's tar2ext4 byte for byte, with its
// defects, for users whose dm-verity root hashes are pinned in policies. Native mode
// (the default) keeps the layout and fixes the defects:
//
//   - the inode bitmap padding bits are set, so e2fsck -fn passes;
//   - duplicate names resolve last-wins whatever the types (a file given twice with
//     data, a file over a directory, a whiteout over a file of the same layer): the
//     replaced inode and its blocks are freed, and freed blocks are zeroed;
//   - runs of all-zero blocks, such as the holes of GNU and PAX sparse files, are
//     stored as holes (extent trees of any depth);
//   - names that leave the root ("..") are refused with ErrInsecurePath, and an entry
//     below a non-directory (a symbolic link, say) with ErrNotDir;
//   - attribute blocks are sorted as the kernel's lookup requires;
//   - the UUID and directory hash seed are derived from the input (SHA-256 of the
//     entries as applied, a CRC-32C of the file data, the options), so the same tar
//     gives the same bytes, and different contents different UUIDs;
//   - attribute values too large for the inode and the attribute block go to inodes
//     of their own (the ea_inode feature, set only when used; Linux 4.13 and later
//     mount such images), up to XATTR_SIZE_MAX (64 KiB) each;
//   - directories implied by deeper entries but never given in the tar (and the root,
//     without a "./" entry) get mode 0755, owner 0:0 and, as all four times, the latest
//     modification time of the tar's entries (0 for a tar without times). compactext4
//     copies the parent's attributes instead.
//
// Both modes are deterministic: no wall clock, no randomness.
//
// # Tar mapping
//
// Regular files (also GNU sparse and contiguous entries), directories, symbolic links
// (targets of up to 59 bytes in the inode), hard links (also to symbolic links; the
// target must come earlier in the tar), char and block devices, FIFOs and PAX
// "SCHILY.xattr." attributes (native mode also reads libarchive's "LIBARCHIVE.xattr."
// records). Native mode skips PAX global headers and refuses other entry types with
// ErrUnsupported; compactext4 turns both into regular files. Attributes go in the
// inode while they fit (96 bytes of entries and values) and then in one attribute
// block (4060 bytes); in compatibility mode that is all (one value up to about
// 4 KiB), native mode puts larger values in inodes of their own. WithInlineData keeps
// files of up to 136 bytes in their inode. WithConvertWhiteouts turns OCI whiteouts
// into overlayfs ones; in native mode, a whiteout followed by entries below the same
// name (or by a directory of that name) becomes an opaque directory, as that is what
// the layer means in overlay form. Native mode writes times before 1970 in ext4's
// encoding; compatibility mode keeps compactext4's, which corrupts them.
//
// Before anything else every entry passes the rules of an OCI Linux layer
// (pkg/ocilayer's Validator), in both modes, so an image accepts what ocilayer.Apply
// accepts: names that leave the root, writes below a symlink, file or device of the
// layer, hard links to missing or later targets, overlayfs xattrs (trusted.overlay.*
// and user.overlay.*: they would make directories opaque or redirect them in a union),
// malformed whiteouts (".wh.", ".wh..", ".wh..."; without WithConvertWhiteouts well
// formed ones are stored as plain files, as tar2ext4 does) and empty symlink targets
// are refused. Its errors match both the ocilayer class and this package's.
//
// Files may be up to 128 GiB (WithMaximumFileSize lowers that). Holes count: the
// tar reader (pkg/tarstream, as archive/tar) hands sparse files over with their
// holes as zeros, so a sparse file of n bytes costs reading n bytes of zeros,
// none of which is written.
//
// # Errors
//
// Build returns *Error, naming the operation, the entry and the offset of its header
// in the tar stream; the class is one of the Err variables (errors.Is). On failure the
// output is truncated to zero.
//
// # Memory
//
// File data is read from the tar straight into an output buffer (growing to 4 MiB) and
// written with one WriteAt per buffer; on Linux, writeback of each written buffer is
// started at once (sync_file_range), so that a caller's final fsync finds little left
// to write. Memory grows with the number of entries (an inode of 144 bytes,
// its extents and its directory entry, plus attributes where there are any),
// not with file sizes.
package ext4
