// Package cimfs writes and reads CimFS ("composite image") file systems, the
// read-only images Windows uses for container layers, in pure Go.
//
// # Files
//
// An image is a small .cim file naming region sets, plus region files
// region_<guid>_<n> that hold every object and object ID files objectid_<guid>_<n>
// that list the objects for deduplication, all in one directory. Objects are
// addressed by a 64-bit RegionOffset: a 16-bit index into the combined region list
// (the parents' sets oldest first, then the image's own set) and a 48-bit byte
// offset. The Filesystem object points at the upcase table, the file table
// directory and the root directory. File records (FileIDs are 1-based, 1024 per
// table) carry the attribute flags, the four FILETIMEs, the default stream (file
// data, a directory's link table or a PE image), and offsets of the security
// descriptor, extended attributes, reparse buffer and alternate stream table.
// Directories and stream tables are link tables sorted by upper-cased name under
// the image's upcase table; lookups binary-search them case-insensitively.
//
// The layout follows the public Microsoft readers of format 1.0 and 2.0 (see the
// project's CimFS reference). This package writes version 2.0 and reads 1.0 to 3.0.
//
// # What the writer chooses
//
// Where the public sources leave a choice open, the writer does this:
//
//   - Each image has three regions: 0 metadata (8-byte alignment), 1 data of files
//     of 32 KiB or more (4096-byte alignment), 2 data of smaller files (8-byte
//     alignment); region header types are 0, 1 and 2.
//   - Every data stream, security descriptor, extended attribute buffer, reparse
//     buffer and the upcase table is stored once per content: its object ID is its
//     length and the first 24 bytes of its SHA-256, and an identical object in the
//     image or in any ancestor is referenced instead of written again. Object ID
//     tables are sorted by offset. These IDs are this package's own; they make no
//     claim to match Windows'.
//   - The upcase table maps each BMP code unit through Unicode simple upper-casing
//     (unicode.ToUpper), keeping units whose mapping leaves the BMP.
//   - Alternate stream tables are stored with a uint32 byte count before the link
//     table (the form the public reader parses), the table itself 8-byte aligned;
//     the reader accepts both that and the unprefixed form.
//   - A sparse file whose data is all zeros is stored with the stream's sparse bit
//     and no data; other sparse files are stored densely with Flags bit 4.
//   - Files without a security descriptor have a null SdOffset.
//   - Directories report size 0.
//
// # Extensions
//
// To keep what an OCI Windows layer carries but the public record cannot, records
// are 104 bytes (EntrySize 104; the public readers copy only the part they know):
// bytes 96-99 hold the full FILE_ATTRIBUTE_* value, bytes 100-101 flags (0x1
// extension valid, 0x2 no unnamed data stream, 0x4 record added by this image rather
// than inherited). After the parent region sets the .cim file carries a 32-byte
// block: "hcxcim01", the RegionOffset and byte length of the removal list (a uint32
// count, then per path a uint16 length and UTF-16LE '\'-separated path). Readers
// without the extension see a valid image; this package trusts the extension fields
// only when the block is present and EntrySize is 104. WithoutExtensions writes the
// public 96-byte records and no block.
//
// # Determinism
//
// The region set GUID is a version-5 GUID of the image's name, an optional seed
// (WithSeed), the parents' set GUIDs, the object ID tables and the metadata region,
// so the same input written under the same name gives byte-identical files, and
// images with other content or names never share region file names. WithRegionSetID
// sets the GUID explicitly.
//
// # Forks
//
// Create with a parent image forks it: the new image's header lists every ancestor
// region set, its tree is the parent's tree changed by the writer's calls, and its
// objects reference the ancestors' regions wherever content matches. Reading a
// fork therefore needs no merging: Open shows the union with removed names absent.
// A hard link that a fork adds to a file it inherits is stored as a copy of that
// file's record, referencing the same data: the parent's file keeps its record, and
// the new name has metadata of its own, as in a layer folder.
//
// # Memory
//
// The writer's memory does not grow with the image: file records, names, the
// name index, the deduplication table and the object ID lists go to files in the
// staging folder (fixed-size records, and open-addressing hash tables keyed by
// SHA-256 prefixes of the directory and upcased name, or of the content), read
// and written through an 8 MiB page cache. Close numbers the files depth-first
// reading each directory's names back and sorting them, so it holds one
// directory's listing per level of the path being walked. What still grows: the
// removal list and the links to inherited files (kept for the extension block),
// and a fork's reading of its parent's object ID files.
//
// # Reading and verifying
//
// Open checks the headers; every later read checks the bounds of what it reads, so
// a corrupt image gives a *FormatError naming the file, the structure and the
// offset, never a panic. Verify walks everything. An Image is safe for concurrent
// use; File is an io.ReaderAt per stream.
//
// # Not supported
//
// Writing PE image streams (files are stored plainly; PE streams written by Windows
// are read), block, merged and verified CIMs (their layouts are not public), and
// tombstones or merge links of merged CIMs.
package cimfs
