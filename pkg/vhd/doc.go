// Package vhd reads and writes Virtual Hard Disk (VHD) images, the format of
// Microsoft's "Virtual Hard Disk Image Format Specification" (2006), in pure Go.
//
// # Model
//
// A VHD is a virtual disk of a fixed size, split into 512-byte sectors. Three
// disk types exist:
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
// [Create] makes a new disk of any type, [Open] opens an existing one, and a [Disk]
// is read and written with ReadAt and WriteAt like an [io.ReaderAt] and
// [io.WriterAt] over the virtual disk. [ParseFooter] and [ParseDynamicHeader]
// decode the two on-disk structures, and the [Footer] and [DynamicHeader] types
// encode them with MarshalBinary.
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
// (and fs.ErrNotExist); a parent with another unique ID gives [ErrParentMismatch].
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
// VHDX support has started with reading: [ReadVHDXInfo] checks the file type
// identifier, chooses the current of the two headers (CRC-32C, sequence numbers),
// reads the region table (falling back to its second copy) and the metadata items
// (block size, virtual size, sector sizes, disk ID, fixed and differencing flags),
// refusing unknown required regions and items. [OpenVHDX] reads and writes the
// virtual disk of a fixed or dynamic VHDX through its BAT: before the first write
// both headers get new write GUIDs and higher sequence numbers, and new blocks are
// appended at the end of the file, data before BAT entry. BAT entries are written
// in place, not through the log, so a crash can leave a block that is not yet
// referenced but never a reference to an unwritten block. [CreateVHDX] writes a
// new, empty dynamic VHDX (Windows layout: log at 1 MiB, metadata at 2 MiB, BAT at
// 3 MiB), such as a blank scratch disk. Differencing VHDX and log replay are not
// implemented yet; such files are refused with ErrUnsupported.
//
// # Limits
//
// The 511-byte footers of Virtual PC before 2004 are not recognised. A footer
// damaged at the end of a dynamic disk is not repaired from the copy at offset 0.
package vhd
