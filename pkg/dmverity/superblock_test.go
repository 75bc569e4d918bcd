package dmverity

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

func validSuperblock() *Superblock {
	return &Superblock{
		Version: 1, HashType: 1, Algorithm: "sha256",
		UUID:          [16]byte{0x89, 0x8b, 0xff, 0xda, 1, 2, 0x40, 3, 0x80, 4, 5, 6, 7, 8, 9, 10},
		DataBlockSize: 4096, HashBlockSize: 4096, DataBlocks: 17097,
		Salt: make([]byte, 32),
	}
}

func TestSuperblockRoundTrip(t *testing.T) {
	sb := validSuperblock()
	b, err := sb.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != SuperblockSize || string(b[:8]) != "verity\x00\x00" {
		t.Fatalf("MarshalBinary: %d bytes starting %q", len(b), b[:8])
	}
	// Fields at the offsets of cryptsetup's struct verity_sb.
	if binary.LittleEndian.Uint64(b[72:]) != 17097 || binary.LittleEndian.Uint16(b[80:]) != 32 || string(b[32:38]) != "sha256" {
		t.Errorf("fields not at their offsets: % x", b[:96])
	}
	got, err := ParseSuperblock(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, sb) {
		t.Errorf("ParseSuperblock(MarshalBinary(sb)) = %+v, want %+v", got, sb)
	}
	if got.UUIDString() != "898bffda-0102-4003-8004-05060708090a" {
		t.Errorf("UUIDString = %s", got.UUIDString())
	}
}

func TestParseSuperblockErrors(t *testing.T) {
	good, _ := validSuperblock().MarshalBinary()
	cases := []struct {
		name      string
		edit      func(b []byte) []byte
		structure string
		offset    int64
		unsupp    bool
	}{
		{"short", func(b []byte) []byte { return b[:100] }, "superblock", 0, false},
		{"signature", func(b []byte) []byte { b[5] = 'x'; return b }, "superblock signature", 0, false},
		{"version", func(b []byte) []byte { b[8] = 2; return b }, "superblock version", 8, true},
		{"hash type", func(b []byte) []byte { b[12] = 7; return b }, "superblock hash_type", 12, true},
		{"algorithm unterminated", func(b []byte) []byte { copy(b[32:64], bytes.Repeat([]byte("a"), 32)); return b }, "superblock algorithm", 32, false},
		{"algorithm empty", func(b []byte) []byte { clear(b[32:64]); return b }, "superblock algorithm", 32, false},
		{"data block size", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[64:], 4097); return b }, "superblock data_block_size", 64, false},
		{"hash block size", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[68:], 256); return b }, "superblock hash_block_size", 68, false},
		{"no data blocks", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[72:], 0); return b }, "superblock data_blocks", 72, false},
		{"data size overflow", func(b []byte) []byte { binary.LittleEndian.PutUint64(b[72:], 1<<62); return b }, "superblock data_blocks", 72, false},
		{"salt size", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[80:], 257); return b }, "superblock salt_size", 80, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.edit(bytes.Clone(good))
			_, err := ParseSuperblock(b)
			var fe *FormatError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("ParseSuperblock = %v, want a *FormatError", err)
			}
			if fe.Structure != tc.structure || fe.Offset != tc.offset {
				t.Errorf("error names %q at %d, want %q at %d", fe.Structure, fe.Offset, tc.structure, tc.offset)
			}
			if errors.Is(err, ErrUnsupported) != tc.unsupp {
				t.Errorf("errors.Is(ErrUnsupported) = %v, want %v", !tc.unsupp, tc.unsupp)
			}
			// ReadSuperblock reports offsets in the file.
			file := append(make([]byte, 8192), b...)
			_, err = ReadSuperblock(bytes.NewReader(file), 8192)
			if !errors.As(err, &fe) || fe.Offset != 8192+tc.offset {
				t.Errorf("ReadSuperblock at 8192 = %v, want offset %d", err, 8192+tc.offset)
			}
		})
	}
}

// FuzzParseSuperblock checks that whatever ParseSuperblock accepts encodes back
// to a superblock that parses to the same value and keeps every field it read.
func FuzzParseSuperblock(f *testing.F) {
	good, _ := validSuperblock().MarshalBinary()
	f.Add(good)
	nosalt := validSuperblock()
	nosalt.Salt, nosalt.HashType, nosalt.Algorithm = nil, 0, "sha1"
	b, _ := nosalt.MarshalBinary()
	f.Add(b)
	f.Add(good[:200])
	f.Add([]byte("verity\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sb, err := ParseSuperblock(b)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Offset < 0 || fe.Offset >= SuperblockSize {
				t.Fatalf("error %v is not a *FormatError with an offset inside the superblock", err)
			}
			return
		}
		enc, err := sb.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a parsed superblock: %v", err)
		}
		again, err := ParseSuperblock(enc)
		if err != nil || !reflect.DeepEqual(again, sb) {
			t.Fatalf("round trip: %v, %+v != %+v", err, again, sb)
		}
		// The meaningful bytes are kept; only padding and bytes after the salt
		// may differ.
		n := offSalt + len(sb.Salt)
		alg := offAlgorithm + len(sb.Algorithm) + 1
		for _, r := range [][2]int{{0, offAlgorithm}, {offAlgorithm, alg}, {offDataBlockSize, 82}, {offSalt, n}} {
			if !bytes.Equal(enc[r[0]:r[1]], b[r[0]:r[1]]) {
				t.Fatalf("bytes %d-%d changed in the round trip", r[0], r[1])
			}
		}
	})
}

// FuzzReadInfo reads a superblock and tree from arbitrary bytes: errors must be
// typed and allocation must not follow the size fields.
func FuzzReadInfo(f *testing.F) {
	good, _ := validSuperblock().MarshalBinary()
	small := validSuperblock()
	small.DataBlocks = 3
	sb3, _ := small.MarshalBinary()
	f.Add(append(append(good, make([]byte, BlockSize-SuperblockSize)...), make([]byte, 2*BlockSize)...))
	f.Add(append(append(sb3, make([]byte, BlockSize-SuperblockSize)...), make([]byte, BlockSize)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ReadInfo(bytes.NewReader(b), 0)
		if err != nil {
			if !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("ReadInfo error %v does not match ErrInvalidFormat", err)
			}
			return
		}
		if info.End() > int64(len(b)) || len(info.RootHash) != DigestSize {
			t.Fatalf("ReadInfo accepted a tree ending at %d in %d bytes", info.End(), len(b))
		}
	})
}
