// Package tarstream reads tar streams in the shapes container layers use, with
// what layer importers need beside the entries: the byte offset of every
// entry's headers and data, and, when the stream is a regular file, where an
// entry's data lies in it so the kernel can copy it (copy_file_range).
//
// # Reader
//
// Reader decodes every header itself, from its own 256 KiB buffer: ustar and
// V7 headers, star and GNU header variants (base-256 numbers, GNU atime and
// ctime), PAX extended and global headers (every record kept in PAXRecords,
// MSWINDOWS.* and LIBARCHIVE.* included, SCHILY.xattr.* also in Xattrs), GNU
// long names and long links, and sparse files: old GNU ('S' entries with
// extension blocks) and PAX GNU.sparse formats 0.0, 0.1 and 1.0, whose holes
// read as zeros. It follows archive/tar's rules field by field, so a stream
// gives the same entries, the same contents and an error at the same entry as
// with archive/tar; a differential test and fuzz target (FuzzReader, seeded
// with tars GNU tar wrote in each of these formats) check it. Entries are
// archive/tar Header values, so code written against archive/tar (validators,
// converters) takes them unchanged. Memory is bounded: an extension header is
// held only up to 1 MiB and a sparse map up to 2^20 fragments, as archive/tar
// allows.
//
// When the source is an *os.File open on a regular file, the Reader reads it
// with pread from the offset it had (leaving the file offset alone), skips
// unread data by offset instead of reading it, and DataSection gives the file
// range of the current entry's data (any entry but a sparse one); a caller that
// copies that range itself says so with Skip.
//
// Errors tied to an entry are *Error values naming the entry and the byte
// offset of the header block or data where the stream went wrong; they wrap
// archive/tar's errors (tar.ErrHeader, tar.ErrFieldTooLong) or io errors
// (io.ErrUnexpectedEOF), so errors.Is keeps working. Errors are sticky. A
// source that fails (rather than ends) anywhere, even in an entry's padding,
// fails the stream with its error, as in archive/tar; only io.EOF ends it early
// there. Callers whose own errors name the entry and offset take the bare cause
// with Cause, or read data through Plain.
//
// The Windows layer import, the CIM build, the OCI layer apply, tar2ext4 and
// layer inspection read their tars with it; Writer writes the exports.
package tarstream
