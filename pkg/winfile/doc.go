// Package winfile reads and writes the portable encodings of Windows file
// metadata that container layers carry: file times and attributes, Win32
// backup streams, extended attributes, reparse points and security
// descriptors. It is pure Go, needs nothing from Windows, and builds on every
// platform. All integers are little-endian unless stated otherwise.
//
// # File information
//
// [Filetime] is a Windows FILETIME, 100 ns intervals since 1601-01-01 UTC.
// [NewFiletime] and [Filetime.Time] convert to and from time.Time without the
// int64-nanosecond overflow that limits naive conversions to 1678-2262:
// every FILETIME maps to a time.Time and back exactly.
//
// [BasicInfo] is FILE_BASIC_INFO, the four times and the attribute bits
// (Attr* constants) that an importer applies to each file. Its binary form is
// 40 bytes: CreationTime, LastAccessTime, LastWriteTime, ChangeTime,
// FileAttributes and 4 bytes of padding. When Windows sets basic information
// it treats a zero time and zero attributes as "leave unchanged".
// [AttributeString] renders attributes for display.
//
// # Backup streams
//
// A Win32 backup stream ([MS-BKUP]) is what BackupRead produces and
// BackupWrite consumes: the complete content of one file as a sequence of
// streams, each a 20-byte header (ID, attributes, 64-bit size, name size in
// bytes), a UTF-16LE name, and the payload. There is no padding between
// streams and no terminator. [BackupReader] and [BackupWriter] follow
// archive/tar: Next positions on a stream, the reader reads its payload,
// unread payload is skipped, io.EOF ends the sequence, and the writer checks
// each payload against its declared size. Payloads are streamed and never
// buffered.
//
// Stream IDs are the StreamData ... StreamGhostedFileExtents constants. IDs
// above those are passed through so that new stream types survive a read and
// rewrite; ID 0 (BACKUP_INVALID) is rejected. Only StreamAlternateData needs a
// name (NTFS spells it ":name:$DATA"); a name on another stream is kept.
//
// A StreamSparseBlock payload starts with an 8-byte offset of the range in
// the logical stream. [StreamHeader] keeps that offset in Offset and reports
// the range length alone in Size, while the wire size counts the offset too.
// BackupRead describes sparse files in one of these ways:
//
//   - size 0: no DATA stream, or DATA with Size 0 and no sparse blocks;
//   - no allocated range: DATA with Size 0, then one SPARSE_BLOCK with no data
//     whose Offset is the file size;
//   - one allocated range: DATA holding the whole content, no sparse blocks;
//   - several ranges: DATA with Size 0, one SPARSE_BLOCK per range in
//     increasing Offset order, then one with no data whose Offset is the
//     file size.
//
// Consumers treat a DATA stream with Size > 0 or without StreamAttrSparse as
// plain content; otherwise they fill the gaps between sparse blocks with
// zeros up to the final empty block. This package reports the blocks and
// leaves that assembly to the caller.
//
// The usual order is SECURITY_DATA, EA_DATA, REPARSE_DATA, DATA,
// ALTERNATE_DATA, with sparse blocks right after the data stream they belong
// to. The reader does not enforce an order.
//
// # Extended attributes
//
// A StreamEAData payload is a FILE_FULL_EA_INFORMATION chain: per entry a
// NextEntryOffset, flags, name length, value length, the name with a NUL
// terminator and the value, padded to 4 bytes. [DecodeExtendedAttributes] and
// [EncodeExtendedAttributes] convert it to and from [ExtendedAttribute]
// values. Windows compares EA names case-insensitively.
//
// # Reparse points
//
// A StreamReparseData payload is a reparse buffer: a tag, a data length, a
// reserved field, then tag-specific data. [ReparsePoint] decodes the
// substitute and print names of symlinks and mount points (junctions) and
// keeps every other tag, including the container isolation (WCI) tags, as
// opaque Data. [NewLinkReparsePoint] builds the buffer an importer writes for
// a symlink, with the NT path rules go-winio uses.
//
// # Security descriptors
//
// A StreamSecurityData payload is a self-relative SECURITY_DESCRIPTOR: a
// 20-byte header with control bits and offsets of the owner SID, group SID,
// SACL and DACL. [ValidateSecurityDescriptor] checks every offset and size in
// it, [SDDL] renders it as SDDL text for inspection, and [ParseSID] decodes
// a SID. The 20-byte descriptor 01 00 04 80 followed by 16 zero bytes has a
// NULL DACL and renders as "D:NO_ACCESS_CONTROL"; it grants everyone full
// access. This package does not parse SDDL back into binary.
//
// # Errors
//
// Every parser reports malformed input with a *[FormatError] that names the
// structure, the byte offset and the reason; all of them match
// [ErrInvalidFormat] with errors.Is, and the ones caused by input that ends
// too early also match io.ErrUnexpectedEOF. Encoders return a *FormatError
// too when a value cannot be represented, with the offset in the output.
// I/O errors from the underlying reader or writer are passed on wrapped, not
// as FormatErrors, so a caller can tell a hostile layer from a failing disk.
// [BackupWriter] misuse has its own sentinels: [ErrWriteTooLong],
// [ErrWriteTooShort] and [ErrWriteAfterClose].
//
// Parsers never allocate on the word of a size field alone: memory use is
// bounded by the size of the input actually read.
//
// # Limits
//
// Names in backup streams and reparse buffers must be valid UTF-16; NTFS
// allows unpaired surrogates in names, and such names are rejected rather than
// altered. The payloads of LINK, PROPERTY_DATA, TXFS_DATA and
// GHOSTED_FILE_EXTENTS streams are not interpreted.
//
// [MS-BKUP]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-bkup
package winfile
