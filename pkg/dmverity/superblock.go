package dmverity

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

// SuperblockSize is the size of the on-disk verity superblock. In a file it is
// followed by zeros up to the hash block size.
const SuperblockSize = 512

// MaxSaltSize is the largest salt the superblock can hold.
const MaxSaltSize = 256

// signature is the first 8 bytes of every verity superblock.
var signature = [8]byte{'v', 'e', 'r', 'i', 't', 'y', 0, 0}

// Field offsets of the superblock (cryptsetup lib/verity/verity.c, struct
// verity_sb), all integers little-endian.
const (
	offSignature     = 0
	offVersion       = 8
	offHashType      = 12
	offUUID          = 16
	offAlgorithm     = 32
	offDataBlockSize = 64
	offHashBlockSize = 68
	offDataBlocks    = 72
	offSaltSize      = 80
	offSalt          = 88
	algorithmSize    = 32
)

// Superblock is the decoded dm-verity superblock that veritysetup and hcsshim
// write in front of a hash tree.
type Superblock struct {
	// Version is the superblock version; 1 is the only one defined.
	Version uint32
	// HashType is 1 for the normal format (salt hashed before each block) and 0
	// for the Chrome OS one (salt after).
	HashType uint32
	// UUID identifies the hash device, in RFC 4122 byte order.
	UUID [16]byte
	// Algorithm is the hash algorithm's name as the kernel knows it ("sha256").
	Algorithm string
	// DataBlockSize and HashBlockSize are powers of two from 512 to 512 KiB.
	DataBlockSize uint32
	HashBlockSize uint32
	// DataBlocks is the number of data blocks the tree covers.
	DataBlocks uint64
	// Salt is hashed with every block; at most MaxSaltSize bytes.
	Salt []byte
}

// UUIDString returns the UUID as veritysetup prints it (lower case 8-4-4-4-12).
func (s *Superblock) UUIDString() string { return guid.FromArray(s.UUID).String() }

// blockSizeOK is cryptsetup's rule for both block sizes.
func blockSizeOK(n uint32) bool {
	return n >= 512 && n <= 512*1024 && n&(n-1) == 0
}

// MarshalBinary encodes s as the 512-byte on-disk superblock. It fails with
// ErrInvalidParams on a superblock ParseSuperblock would reject.
func (s *Superblock) MarshalBinary() ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	b := make([]byte, SuperblockSize)
	copy(b[offSignature:], signature[:])
	binary.LittleEndian.PutUint32(b[offVersion:], s.Version)
	binary.LittleEndian.PutUint32(b[offHashType:], s.HashType)
	copy(b[offUUID:], s.UUID[:])
	copy(b[offAlgorithm:offAlgorithm+algorithmSize], s.Algorithm)
	binary.LittleEndian.PutUint32(b[offDataBlockSize:], s.DataBlockSize)
	binary.LittleEndian.PutUint32(b[offHashBlockSize:], s.HashBlockSize)
	binary.LittleEndian.PutUint64(b[offDataBlocks:], s.DataBlocks)
	binary.LittleEndian.PutUint16(b[offSaltSize:], uint16(len(s.Salt)))
	copy(b[offSalt:], s.Salt)
	return b, nil
}

func (s *Superblock) check() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: superblock %s: %s", ErrInvalidParams, field, fmt.Sprintf(format, args...))
	}
	switch {
	case s.Version != 1:
		return bad("version", "%d, want 1", s.Version)
	case s.HashType > 1:
		return bad("hash_type", "%d, want 0 or 1", s.HashType)
	case !algorithmOK(s.Algorithm):
		return bad("algorithm", "%q is not a hash name of 1 to 31 lower case letters, digits or dashes", s.Algorithm)
	case !blockSizeOK(s.DataBlockSize):
		return bad("data_block_size", "%d is not a power of two from 512 to 524288", s.DataBlockSize)
	case !blockSizeOK(s.HashBlockSize):
		return bad("hash_block_size", "%d is not a power of two from 512 to 524288", s.HashBlockSize)
	case s.DataBlocks == 0 || s.DataBlocks > math.MaxInt64/uint64(s.DataBlockSize):
		return bad("data_blocks", "%d blocks of %d bytes do not make a data size from 1 to 2^63-1", s.DataBlocks, s.DataBlockSize)
	case len(s.Salt) > MaxSaltSize:
		return bad("salt_size", "%d bytes, at most %d", len(s.Salt), MaxSaltSize)
	}
	return nil
}

func algorithmOK(a string) bool {
	if len(a) == 0 || len(a) >= algorithmSize {
		return false
	}
	for _, c := range []byte(a) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ParseSuperblock decodes the first 512 bytes of b as a verity superblock and
// checks every field as veritysetup does: the signature, version 1, hash type 0
// or 1, a NUL-terminated algorithm name, block sizes that are powers of two from
// 512 to 512 KiB, a data size that fits in 63 bits and a salt of at most 256
// bytes. Errors are *FormatError values whose Offset is relative to b. The padding
// bytes are not checked, as veritysetup does not check them either.
func ParseSuperblock(b []byte) (*Superblock, error) {
	return parseSuperblock(b, 0)
}

// ReadSuperblock reads and decodes the superblock at byte offset off of r; error
// offsets are offsets in r.
func ReadSuperblock(r io.ReaderAt, off int64) (*Superblock, error) {
	if off < 0 {
		return nil, fmt.Errorf("%w: negative superblock offset %d", ErrInvalidParams, off)
	}
	b := make([]byte, SuperblockSize)
	n, err := r.ReadAt(b, off)
	if n < SuperblockSize {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, &FormatError{Structure: "superblock", Offset: off,
			Err: fmt.Errorf("reading %d bytes, got %d: %w", SuperblockSize, n, err)}
	}
	return parseSuperblock(b, off)
}

func parseSuperblock(b []byte, base int64) (*Superblock, error) {
	if len(b) < SuperblockSize {
		return nil, formatErrf("superblock", base, "%d bytes, want %d: %w", len(b), SuperblockSize, io.ErrUnexpectedEOF)
	}
	at := func(o int) int64 { return base + int64(o) }
	if !bytes.Equal(b[offSignature:offSignature+8], signature[:]) {
		return nil, formatErrf("superblock signature", at(offSignature), "%q is not \"verity\\x00\\x00\"", b[offSignature:offSignature+8])
	}
	s := &Superblock{
		Version:       binary.LittleEndian.Uint32(b[offVersion:]),
		HashType:      binary.LittleEndian.Uint32(b[offHashType:]),
		DataBlockSize: binary.LittleEndian.Uint32(b[offDataBlockSize:]),
		HashBlockSize: binary.LittleEndian.Uint32(b[offHashBlockSize:]),
		DataBlocks:    binary.LittleEndian.Uint64(b[offDataBlocks:]),
	}
	copy(s.UUID[:], b[offUUID:])
	if s.Version != 1 {
		return nil, formatErrf("superblock version", at(offVersion), "version %d: %w", s.Version, ErrUnsupported)
	}
	if s.HashType > 1 {
		return nil, formatErrf("superblock hash_type", at(offHashType), "hash type %d: %w", s.HashType, ErrUnsupported)
	}
	alg := b[offAlgorithm : offAlgorithm+algorithmSize]
	end := bytes.IndexByte(alg, 0)
	if end < 0 {
		return nil, formatErrf("superblock algorithm", at(offAlgorithm), "name not NUL-terminated within %d bytes", algorithmSize)
	}
	s.Algorithm = string(alg[:end])
	if !algorithmOK(s.Algorithm) {
		return nil, formatErrf("superblock algorithm", at(offAlgorithm), "%q is not a hash algorithm name", s.Algorithm)
	}
	if !blockSizeOK(s.DataBlockSize) {
		return nil, formatErrf("superblock data_block_size", at(offDataBlockSize), "%d is not a power of two from 512 to 524288", s.DataBlockSize)
	}
	if !blockSizeOK(s.HashBlockSize) {
		return nil, formatErrf("superblock hash_block_size", at(offHashBlockSize), "%d is not a power of two from 512 to 524288", s.HashBlockSize)
	}
	if s.DataBlocks == 0 || s.DataBlocks > math.MaxInt64/uint64(s.DataBlockSize) {
		return nil, formatErrf("superblock data_blocks", at(offDataBlocks), "%d blocks of %d bytes do not make a data size from 1 to 2^63-1", s.DataBlocks, s.DataBlockSize)
	}
	saltSize := binary.LittleEndian.Uint16(b[offSaltSize:])
	if saltSize > MaxSaltSize {
		return nil, formatErrf("superblock salt_size", at(offSaltSize), "%d bytes, at most %d", saltSize, MaxSaltSize)
	}
	s.Salt = bytes.Clone(b[offSalt : offSalt+int(saltSize)])
	return s, nil
}
