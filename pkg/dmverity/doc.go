// Package dmverity builds, reads and checks dm-verity hash trees in the on-disk
// layout of the Linux kernel's dm-verity target and cryptsetup's veritysetup, as
// hcsshim's tar2ext4 appends them to ext4 layer images.
//
// # Model
//
// The data is split into 4096-byte blocks. Level 0 of the tree holds the SHA-256
// digest of every data block, each computed as SHA-256(salt ‖ block) (hash type 1),
// packed 128 to a 4096-byte hash block, the last block zero padded. Level n+1
// hashes the blocks of level n the same way, up to a level of a single block. The
// root hash is SHA-256(salt ‖ that block); it is not stored in the file. Levels
// are stored top first, so the single top block comes first and level 0 last.
//
// [Append] writes that tree after the data in the same file, preceded by the
// 512-byte verity superblock padded to 4096 bytes:
//
//	offset 0           data (dataSize bytes, a multiple of 4096)
//	offset dataSize    superblock ("verity\0\0", version 1, hash type 1, ...)
//	dataSize + 4096    hash tree, top level first
//
// This is the layout of hcsshim's tar2ext4 with AppendDMVerity and of
// `veritysetup format DATA DATA --hash-offset=dataSize`; a fixed VHD footer, if
// any, is appended after it by the caller. [Compute] hashes any reader and either
// returns only the root hash or writes the bare tree (no superblock) to a
// separate [io.WriterAt], as `veritysetup format --no-superblock` does.
//
// # Determinism and hcsshim
//
// The zero [Params] give hcsshim's parameters: sha256, 4096-byte data and hash
// blocks, hash type 1 and a 32-byte all-zero salt, so root hashes equal the ones
// hcsshim computes (and confidential-container policies pin). hcsshim writes a
// random superblock UUID, which makes its images differ run to run
// (hcsshim#2574); here the UUID is derived from the root hash, salt and size
// (an RFC 4122 version 5 UUID), so the same data always gives the same bytes.
// Params.UUID sets a given UUID (for example the one read from an hcsshim image
// with [ReadSuperblock], which reproduces that image byte for byte) and
// Params.RandomUUID asks for hcsshim's random one. Params.Hcsshim refuses any
// parameter hcsshim would not use.
//
// # Memory and speed
//
// The data is read once, sequentially, in 1 MiB chunks. A reader goroutine fills
// the chunks while worker goroutines hash them, and every level of the tree is
// built in the same pass: a level keeps only the hash block it is filling, and
// each finished block is written straight to its final place in the file. Memory
// is therefore a few MiB whatever the data size, and nothing is read back.
//
// A producer that writes the data itself can spare even that one read: a
// [Level0] hashes the data blocks as they are written (pkg/ext4's Build reports
// its writes to it through ext4.WithWriteObserver), while the producer's buffer
// is still in the CPU cache, and [AppendLevel0] then reads back only the blocks
// patched after being written (for ext4: superblock, group descriptors,
// attribute blocks, freed blocks). Hashing each buffer at once, split between
// goroutines, measured cheaper than hashing it on another goroutine while the
// producer fills a second buffer. The
// digests (32 bytes per data block) of the last 128 MiB of data stay in memory,
// older ones spill to an unlinked temporary file; blocks past the limit
// ([DefaultLevel0Limit] unless given) are read back. The tree is the same either way.
//
// # Errors
//
// A superblock that does not follow the format gives a [*FormatError] naming the
// field and its byte offset; every such error matches [ErrInvalidFormat]. Bad
// arguments (a size that is not a positive multiple of 4096, data shorter than
// the size) match [ErrInvalidParams] or [ErrShortData] and are reported before
// anything is written. [Verify] reports a block whose digest disagrees with the
// tree as a [*VerifyError] with the data block index, matching [ErrMismatch].
//
// # Durability
//
// Append writes with WriteAt and truncates the file to the end of the tree; it
// does not sync. A caller that needs the result on stable storage calls Sync, and
// one that must never expose a half-written image builds it in a temporary file
// and renames it into place. If Append fails after validation, the bytes after
// dataSize are unspecified; the data itself is never written.
package dmverity
