// Package vhd reads and writes virtual hard disks in pure Go: the VHD format of
// Microsoft's "Virtual Hard Disk Image Format Specification" (2006) and the VHDX
// format of [MS-VHDX], each as fixed, dynamic and differencing disks.
//
// # Model
//
// [Open] detects the format and returns a [Disk], read and written with ReadAt and
// WriteAt like an [io.ReaderAt] and [io.WriterAt] over the virtual disk, with
// Size, Flush, Close and [Disk.Resize] (grow in place, shrink when nothing is
// lost). Unwritten blocks read as zeros; a differencing disk reads the sectors it
// has not written from its parent chain, opened read-only. [Create] makes a new
// VHD, [CreateVHDX] a new VHDX.
//
// A VHD is split into 512-byte sectors. Three disk types exist:
//
//   - Fixed: the file is the raw disk followed by a 512-byte footer. [AppendFixedFooter]
//     turns a raw image (for example an ext4 file system) into a fixed VHD.
//   - Dynamic: a copy of the footer at offset 0, a dynamic disk header at offset 512,
//     a block allocation table (BAT), then data blocks allocated on first write, and
//     the footer at the end. Unallocated blocks, and sectors whose bit in the
//     block's sector bitmap is 0, read as zeros. Blocks allocated here get a bitmap
//     of all ones, as qemu writes them.
//   - Differencing: a dynamic disk whose unwritten sectors come from a parent disk,
//     found through the parent locators in the header and checked against the
//     parent's unique ID.
//
// [ParseFooter] and [ParseDynamicHeader] decode the two on-disk structures, and the
// [Footer] and [DynamicHeader] types encode them with MarshalBinary.
//
// All integers in the format are big-endian; sector bitmaps are most significant
// bit first; checksums are the ones' complement of the byte sum.
//
// # Errors
//
// A file that does not follow the format gives a [*FormatError] naming the
// structure and the byte offset in the file. Every such error matches
// [ErrInvalidFormat] with errors.Is; more specific classes ([ErrChecksum],
// [ErrTruncated], [ErrUnsupported]) match as well. A differencing disk whose
// parent cannot be found gives an error matching [ErrParentNotFound]
// (and fs.ErrNotExist); a parent with another identity than the child records
// (the unique ID of a VHD, the DataWriteGuid of a VHDX) gives [ErrParentMismatch].
//
// # Sizes and qemu
//
// The footer records the virtual size in Current Size and a CHS geometry, which
// this package computes with the specification's algorithm (it rounds down).
// Readers differ in which they trust: Hyper-V uses Current Size, while qemu 7.2 uses
// the geometry unless the creator application is one of a few (among them "win ").
// [Create] therefore writes creator application "win " by default, as Windows
// does, so that every reader sees the same size; [CreateOptions] can change it.
//
// # Concurrency and durability
//
// A Disk serialises its own ReadAt and WriteAt calls. Block allocation writes the
// block, then the trailing footer, then the BAT entry, so that a process crash leaves
// at worst an unreferenced block. A VHD is not synced until [Disk.Flush] or
// [Disk.Close], so after a machine crash the kernel may have written these in another
// order; a VHDX (below) syncs on each block allocation instead. A parent disk must not
// be written while a child refers to it.
//
// # VHDX
//
// [ReadVHDXInfo] checks the file type identifier, chooses the current of the two
// headers (CRC-32C, sequence numbers), reads the region table (falling back to its
// second copy) and the metadata items (block size, virtual size, sector sizes of
// 512 or 4096 bytes, disk ID, fixed and differencing flags, parent locator),
// refusing unknown required regions and items. A Disk validates the BAT (states,
// reserved bits, blocks inside the file and overlapping nothing).
//
// Before the first write of a session both headers get new FileWriteGuid and
// DataWriteGuid and higher sequence numbers. New blocks are appended at the end
// of the file (a hole, so the file stays sparse), written and synced before the BAT
// entry that refers to them. A differencing disk copies on write at the logical
// sector granularity: a partly written block is PARTIALLY_PRESENT and its sectors
// are recorded in the chunk's sector bitmap block; the rest comes from the parent.
// Its parent locator holds parent_linkage (the parent's DataWriteGuid, so a
// written parent breaks its children, as on Windows), relative_path and
// absolute_win32_path; volume_path is read but not written (Linux has no volume
// GUIDs).
//
// A VHDX whose log is not empty is replayed when opened for writing: the active
// sequence of log entries is applied, the file synced and the LogGuid cleared. A
// read-only open refuses it with [ErrLogReplayNeeded] and writes nothing. Resize
// writes the metadata changes through the log, so a crash leaves the old disk or
// a log the next open replays. Block allocation does not use the log (BAT
// entries are written in place after the data is synced), so a crash can leave an
// unreferenced block but never a reference to unwritten data.
//
// # Limits
//
// The 511-byte footers of Virtual PC before 2004 are not recognised. A footer
// damaged at the end of a dynamic disk is not repaired from the copy at offset 0.
//
// A VHDX with a pending log is not replayed into memory for a read-only open; it
// is refused. Logs longer than 256 MiB are not replayed. Differencing disks are
// not resized (they have their parent's size); a shrunk fixed VHDX keeps the
// blocks past its new end in the file, unreferenced. A VHD parent must be a VHD
// and a VHDX parent a VHDX. New differencing VHDX files name their parent by
// relative_path and absolute_win32_path (a Linux path in Windows syntax, without
// a drive letter), not volume_path.
package vhd
