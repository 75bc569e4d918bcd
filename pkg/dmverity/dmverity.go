package dmverity

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

// Algorithm is the hash algorithm of every tree this package builds.
const Algorithm = "sha256"

// uuidNamespace is the RFC 4122 namespace of the derived superblock UUIDs. Its
// value is arbitrary but fixed: changing it changes every image.
var uuidNamespace = guid.GUID{Data1: 0x898bffda, Data2: 0x0916, Data3: 0x4bd0,
	Data4: [8]byte{0xae, 0xfb, 0x22, 0x3a, 0xfc, 0x50, 0xa8, 0x6d}}

// hcsshimSalt is the salt hcsshim always uses: 32 zero bytes (a real salt, not
// "no salt").
var hcsshimSalt = make([]byte, 32)

// Params choose the salt and UUID of a tree. The zero value gives hcsshim's
// parameters with a deterministic UUID. The algorithm (sha256), hash type (1)
// and block sizes (4096) are fixed.
type Params struct {
	// Salt is hashed before every block. nil means hcsshim's salt, 32 zero
	// bytes; at most MaxSaltSize bytes.
	Salt []byte
	// NoSalt hashes without a salt (veritysetup --salt=-). Salt must be nil.
	NoSalt bool
	// UUID is written in the superblock, in RFC 4122 byte order. The zero value
	// derives it from the root hash, the salt and the data size, so the same data
	// always gives the same superblock.
	UUID [16]byte
	// RandomUUID writes a random UUID, as hcsshim does. UUID must be zero.
	RandomUUID bool
	// Hcsshim refuses every parameter hcsshim's tar2ext4 would not use (a salt
	// other than 32 zero bytes, NoSalt), so that the superblock and the tree
	// equal hcsshim's field for field except the UUID, and the root hash equals
	// hcsshim's. Set UUID as well to reproduce a given hcsshim image byte for byte.
	// It also keeps hcsshim's tree for a single data block: one level-0 block
	// whose digest is the root, where dm-verity (and the default here) has no tree
	// and takes the data block's own digest as the root; the kernel and
	// veritysetup reject hcsshim's form, which no ext4 image (always more than
	// one block) ever hits.
	Hcsshim bool
	// Workers is the number of hashing goroutines; 0 uses GOMAXPROCS (at most 8).
	Workers int
}

func (p Params) salt() ([]byte, error) {
	switch {
	case p.NoSalt && p.Salt != nil:
		return nil, fmt.Errorf("%w: both Salt and NoSalt are set", ErrInvalidParams)
	case p.RandomUUID && p.UUID != [16]byte{}:
		return nil, fmt.Errorf("%w: both UUID and RandomUUID are set", ErrInvalidParams)
	case len(p.Salt) > MaxSaltSize:
		return nil, fmt.Errorf("%w: salt of %d bytes, at most %d", ErrInvalidParams, len(p.Salt), MaxSaltSize)
	case p.Hcsshim && (p.NoSalt || p.Salt != nil && !bytes.Equal(p.Salt, hcsshimSalt)):
		return nil, fmt.Errorf("%w: hcsshim compatibility needs its salt of 32 zero bytes", ErrInvalidParams)
	case p.NoSalt:
		return []byte{}, nil
	case p.Salt == nil:
		return bytes.Clone(hcsshimSalt), nil
	}
	return bytes.Clone(p.Salt), nil
}

// Info describes a built tree: what dm-verity and veritysetup need to use it.
type Info struct {
	// RootHash is the SHA-256 root of the tree. It is not stored in the file.
	RootHash []byte
	// Salt is the salt every block was hashed with (may be empty).
	Salt []byte
	// UUID is the superblock's UUID, RFC 4122 byte order.
	UUID [16]byte
	// Algorithm is "sha256"; HashType is 1 (salt before the block).
	Algorithm string
	HashType  uint32
	// DataBlockSize and HashBlockSize are both BlockSize.
	DataBlockSize uint32
	HashBlockSize uint32
	// DataSize is the number of data bytes hashed, DataBlocks = DataSize/4096.
	DataSize   int64
	DataBlocks int64
	// SuperblockOffset is the byte offset of the superblock in the hash file
	// (veritysetup's --hash-offset), or -1 when there is none.
	SuperblockOffset int64
	// HashOffset is the byte offset of the tree (its top block) in the hash file:
	// SuperblockOffset + 4096 with a superblock, veritysetup's --hash-offset with
	// --no-superblock. HashOffset/4096 is the dm table's hash_start_block.
	HashOffset int64
	// TreeSize is the size of the tree in bytes, superblock excluded.
	TreeSize int64
	// Levels holds the number of hash blocks of each level; Levels[0] hashes the
	// data and the last entry, 1, is the top block.
	Levels []int64
}

// RootHashHex returns the root hash in hexadecimal, as veritysetup prints it.
func (i *Info) RootHashHex() string { return hex.EncodeToString(i.RootHash) }

// SaltHex returns the salt in hexadecimal, or "-" for no salt, as veritysetup
// and the dm-verity table take it.
func (i *Info) SaltHex() string {
	if len(i.Salt) == 0 {
		return "-"
	}
	return hex.EncodeToString(i.Salt)
}

// End returns the offset just after the tree in the hash file.
func (i *Info) End() int64 { return i.HashOffset + i.TreeSize }

// Superblock returns the superblock that describes the tree.
func (i *Info) Superblock() *Superblock {
	return &Superblock{
		Version:       1,
		HashType:      i.HashType,
		UUID:          i.UUID,
		Algorithm:     i.Algorithm,
		DataBlockSize: i.DataBlockSize,
		HashBlockSize: i.HashBlockSize,
		DataBlocks:    uint64(i.DataBlocks),
		Salt:          bytes.Clone(i.Salt),
	}
}

// Table returns the device-mapper table line of a read-only verity device over
// dataDev with its tree on hashDev (the same device for Append's layout), as
// `dmsetup create --table` and the kernel's dm-mod.create take it:
//
//	0 <sectors> verity 1 <dataDev> <hashDev> 4096 4096 <blocks> <hash start> sha256 <root> <salt>
func (i *Info) Table(dataDev, hashDev string) string {
	return fmt.Sprintf("0 %d verity %d %s %s %d %d %d %d %s %s %s",
		i.DataSize/512, i.HashType, dataDev, hashDev, i.DataBlockSize, i.HashBlockSize,
		i.DataBlocks, i.HashOffset/int64(i.HashBlockSize), i.Algorithm, i.RootHashHex(), i.SaltHex())
}

func checkSize(dataSize int64) error {
	if dataSize <= 0 || dataSize%BlockSize != 0 {
		return fmt.Errorf("%w: data size %d is not a positive multiple of %d", ErrInvalidParams, dataSize, BlockSize)
	}
	return nil
}

// newInfo fills the parts of an Info known before hashing.
func newInfo(dataSize int64, salt []byte, lay layout) *Info {
	return &Info{
		Salt:             salt,
		Algorithm:        Algorithm,
		HashType:         1,
		DataBlockSize:    BlockSize,
		HashBlockSize:    BlockSize,
		DataSize:         dataSize,
		DataBlocks:       dataSize / BlockSize,
		SuperblockOffset: -1,
		TreeSize:         lay.size,
		Levels:           append([]int64(nil), lay.blocks...),
	}
}

// setUUID fills info.UUID once the root hash is known.
func (i *Info) setUUID(p Params) error {
	switch {
	case p.UUID != [16]byte{}:
		i.UUID = p.UUID
	case p.RandomUUID:
		if _, err := rand.Read(i.UUID[:]); err != nil {
			return fmt.Errorf("dmverity: random UUID: %w", err)
		}
	default:
		name := make([]byte, 0, len(i.RootHash)+8+len(i.Salt))
		name = append(name, i.RootHash...)
		name = binary.BigEndian.AppendUint64(name, uint64(i.DataBlocks))
		name = append(name, i.Salt...)
		i.UUID = guid.NewV5(uuidNamespace, name).ToArray()
	}
	return nil
}

// Append builds the dm-verity tree of the first dataSize bytes of f and writes
// the superblock at offset dataSize and the tree right after it (offset
// dataSize+4096), the layout of hcsshim's tar2ext4 and of `veritysetup format`
// with --hash-offset=dataSize on the same file. dataSize must be a positive
// multiple of 4096 and f at least that long; bytes of f after dataSize are
// replaced, and f is truncated to the end of the tree when it is a regular file.
// f's offset is left at the end of the tree, where a VHD footer goes.
//
// The data is read sequentially, once; memory stays at a few MiB.
func Append(f *os.File, dataSize int64, p Params) (*Info, error) {
	return AppendContext(context.Background(), f, dataSize, p)
}

// AppendContext is Append with a context, checked between chunks of 1 MiB.
func AppendContext(ctx context.Context, f *os.File, dataSize int64, p Params) (*Info, error) {
	return AppendLevel0(ctx, f, dataSize, p, nil)
}

// AppendLevel0 is AppendContext taking the digests of the data blocks from l,
// which saw the data as it was written to f: only the blocks l does not know (the
// rewritten ones, those past its limit) are read back. The tree and superblock
// are the same bytes AppendContext writes. l must use p's salt; nil l reads all.
func AppendLevel0(ctx context.Context, f *os.File, dataSize int64, p Params, l *Level0) (*Info, error) {
	salt, err := p.salt()
	if err != nil {
		return nil, err
	}
	if err := checkSize(dataSize); err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("dmverity: %w", err)
	}
	regular := st.Mode().IsRegular()
	size := st.Size()
	if !regular {
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return nil, fmt.Errorf("dmverity: size of %s: %w", f.Name(), err)
		}
	}
	if size < dataSize {
		return nil, fmt.Errorf("%w: %s holds %d bytes, not %d", ErrShortData, f.Name(), size, dataSize)
	}
	lay := newLayout(dataSize/BlockSize, p.Hcsshim)
	info := newInfo(dataSize, salt, lay)
	info.SuperblockOffset = dataSize
	info.HashOffset = dataSize + BlockSize
	if !regular && size < info.End() {
		return nil, fmt.Errorf("%w: device %s holds %d bytes, the data and its tree need %d", ErrInvalidParams, f.Name(), size, info.End())
	}

	b := newBuilder(lay, salt, p.Workers, writeSink(f, info.HashOffset, lay))
	if l != nil {
		if !l.sameSalt(salt) {
			return nil, fmt.Errorf("%w: the level-0 digests were made with another salt", ErrInvalidParams)
		}
		if b.known, b.stale, err = l.known(dataSize); err != nil {
			return nil, err
		}
		b.pre, b.ra = l, f
	}
	if info.RootHash, err = b.run(ctx, io.NewSectionReader(f, 0, dataSize), dataSize); err != nil {
		return nil, err
	}
	if err := info.setUUID(p); err != nil {
		return nil, err
	}
	sb, err := info.Superblock().MarshalBinary()
	if err != nil {
		return nil, err
	}
	sb = append(sb, make([]byte, BlockSize-SuperblockSize)...)
	if _, err := f.WriteAt(sb, info.SuperblockOffset); err != nil {
		return nil, fmt.Errorf("dmverity: writing superblock: %w", err)
	}
	if regular {
		if err := f.Truncate(info.End()); err != nil {
			return nil, fmt.Errorf("dmverity: %w", err)
		}
	}
	if _, err := f.Seek(info.End(), io.SeekStart); err != nil {
		return nil, fmt.Errorf("dmverity: %w", err)
	}
	return info, nil
}

// writeSink writes each hash block at its place in a tree that starts at base.
func writeSink(w io.WriterAt, base int64, lay layout) sink {
	return func(level int, index int64, blocks []byte) error {
		off := base + lay.offset[level] + index*BlockSize
		if _, err := w.WriteAt(blocks, off); err != nil {
			return fmt.Errorf("dmverity: writing hash level %d at offset %d: %w", level, off, err)
		}
		return nil
	}
}

// Compute builds the dm-verity tree of dataSize bytes read from r. When tree is
// not nil the tree is written to it from offset 0 with no superblock (the
// layout of `veritysetup format --no-superblock`, hash offset 0); when it is
// nil only the root hash is computed. The Info's UUID is filled as Append would
// write it, for callers that write Info.Superblock() themselves.
func Compute(ctx context.Context, r io.Reader, dataSize int64, p Params, tree io.WriterAt) (*Info, error) {
	salt, err := p.salt()
	if err != nil {
		return nil, err
	}
	if err := checkSize(dataSize); err != nil {
		return nil, err
	}
	lay := newLayout(dataSize/BlockSize, p.Hcsshim)
	info := newInfo(dataSize, salt, lay)
	var out sink
	if tree != nil {
		out = writeSink(tree, 0, lay)
	}
	if info.RootHash, err = newBuilder(lay, salt, p.Workers, out).run(ctx, r, dataSize); err != nil {
		return nil, err
	}
	if err := info.setUUID(p); err != nil {
		return nil, err
	}
	return info, nil
}

// ReadInfo reads the superblock at offset sbOffset of r and the tree's top
// block after it, and returns the tree's description with its root hash
// recomputed from that block (as hcsshim's ReadDMVerityInfo does). It checks
// that r is long enough for the whole tree but does not verify it; see Verify.
// For a single data block there is no tree and the root is that block's digest,
// read from offset 0 of r as Append lays it out.
// Trees with another algorithm, hash type or block size give ErrUnsupported.
func ReadInfo(r io.ReaderAt, sbOffset int64) (*Info, error) {
	sb, err := ReadSuperblock(r, sbOffset)
	if err != nil {
		return nil, err
	}
	if sb.Algorithm != Algorithm || sb.HashType != 1 || sb.DataBlockSize != BlockSize || sb.HashBlockSize != BlockSize {
		return nil, &FormatError{Structure: "superblock", Offset: sbOffset,
			Err: fmt.Errorf("%s, hash type %d, blocks %d/%d: %w (only sha256, type 1, 4096/4096)",
				sb.Algorithm, sb.HashType, sb.DataBlockSize, sb.HashBlockSize, ErrUnsupported)}
	}
	dataSize := int64(sb.DataBlocks) * BlockSize
	lay := newLayout(int64(sb.DataBlocks), false)
	info := newInfo(dataSize, sb.Salt, lay)
	info.UUID = sb.UUID
	info.SuperblockOffset = sbOffset
	info.HashOffset = sbOffset + BlockSize
	// The root is the digest of the top block, or of the data block itself when
	// there is only one (then there is no tree and the data starts at offset 0).
	top, where, at := make([]byte, BlockSize), "hash tree top block", info.HashOffset
	if len(lay.blocks) == 0 {
		where, at = "data block 0", 0
	}
	if err := readFull(r, top, at, where); err != nil {
		return nil, err
	}
	if lay.size > 0 {
		var last [1]byte
		if err := readFull(r, last[:], info.End()-1, "hash tree end"); err != nil {
			return nil, err
		}
	}
	d := make([]byte, 0, DigestSize)
	hashBlock(newHash(), info.Salt, top, d)
	info.RootHash = d[:DigestSize]
	return info, nil
}

func readFull(r io.ReaderAt, b []byte, off int64, what string) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return &FormatError{Structure: what, Offset: off, Err: fmt.Errorf("reading %d bytes, got %d: %w", len(b), n, err)}
}
