package winfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"
)

// backupSeeds are valid backup streams plus a few near misses.
func backupSeeds(t testing.TB) [][]byte {
	golden := unhex(t, goldenStream)
	return [][]byte{
		golden,
		golden[:len(golden)-3],
		rawStream(1, 0, 5, "", []byte("hello")),
		rawStream(12, 0, 2, "", []byte("zz")),
		rawStream(4, 0, 0, ":résumé 𝄞:$DATA"),
		cat(rawStream(1, StreamAttrSparse, 0, ""), rawStream(9, StreamAttrSparse, 10, "", le64(0), []byte("ab")), rawStream(9, StreamAttrSparse, 8, "", le64(4096))),
		cat(le32(4), le32(0), le64(0), le32(2), le16(0xd800)),
		rawStream(1, 0, MaxStreamSize, ""),
		{},
	}
}

// maxBackupFuzzInput bounds FuzzBackupReader inputs. It is large enough to
// reach every path, including the largest WriteTo buffer (32 KiB). Larger
// inputs reach no new code, and the fuzzing engine's minimiser, whose cost
// grows with the square of the input size, would spend the run on them. The
// size limits themselves are covered by unit tests. Keep seeds small for the
// same reason.
const maxBackupFuzzInput = 40 << 10

// FuzzBackupReader reads any input and, when the whole input is a valid
// backup stream, rewrites it with BackupWriter: the output must be identical.
func FuzzBackupReader(f *testing.F) {
	for _, s := range backupSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxBackupFuzzInput {
			t.Skip("input larger than maxBackupFuzzInput")
		}
		br := NewBackupReader(bytes.NewReader(data))
		var out bytes.Buffer
		bw := NewBackupWriter(&out)
		for {
			h, err := br.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidFormat) {
					t.Fatalf("Next: %v is not a format error", err)
				}
				return
			}
			if err := bw.WriteHeader(h); err != nil {
				t.Fatalf("WriteHeader(%+v) of a header the reader accepted: %v", h, err)
			}
			if _, err := io.Copy(bw, br); err != nil {
				if !errors.Is(err, ErrInvalidFormat) || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("payload: %v is not a truncation error", err)
				}
				return
			}
		}
		if err := bw.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("rewrite differs:\n in  %x\n out %x", data, out.Bytes())
		}
	})
}

// FuzzDecodeExtendedAttributes checks decode -> encode -> decode.
func FuzzDecodeExtendedAttributes(f *testing.F) {
	golden, _ := EncodeExtendedAttributes([]ExtendedAttribute{
		{Name: "TEST", Value: []byte("hi")},
		{Name: "$KERNEL.PURGE.X", Value: []byte{1, 2, 3, 4}, Flags: FileNeedEA},
		{Name: "E"},
	})
	f.Add(golden)
	f.Add(golden[:len(golden)-2])
	f.Add([]byte{})
	f.Add(cat(le32(11), []byte{0, 1}, le16(1), []byte("a\x00v"), le32(0), []byte{0, 1}, le16(0), []byte("b\x00")))
	f.Add(cat(le32(8), []byte{0, 1}, le16(1), []byte("a\x00v"), make([]byte, 12)))
	f.Fuzz(func(t *testing.T, data []byte) {
		eas, err := DecodeExtendedAttributes(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("%v is not a format error", err)
			}
			return
		}
		if len(eas) > len(data)/10 {
			t.Fatalf("%d EAs from %d bytes", len(eas), len(data))
		}
		enc, err := EncodeExtendedAttributes(eas)
		if err != nil {
			t.Fatalf("Encode of decoded EAs: %v", err)
		}
		if len(enc)%4 != 0 {
			t.Fatalf("encoded length %d is not a multiple of 4", len(enc))
		}
		back, err := DecodeExtendedAttributes(enc)
		if err != nil {
			t.Fatalf("decode of encoding: %v", err)
		}
		if !equalEAs(back, eas) {
			t.Fatalf("decode(encode(decode(x))) = %+v, want %+v", back, eas)
		}
	})
}

// isCanonicalReparse reports whether b has exactly the layout Encode
// produces, judged from the bytes alone.
func isCanonicalReparse(b []byte) bool {
	if len(b) < ReparseHeaderSize || binary.LittleEndian.Uint16(b[6:]) != 0 {
		return false
	}
	tag := binary.LittleEndian.Uint32(b)
	dataLen := int(binary.LittleEndian.Uint16(b[4:]))
	if len(b) != ReparseHeaderSize+dataLen {
		return false
	}
	if tag != ReparseTagSymlink && tag != ReparseTagMountPoint {
		return true
	}
	fixed := linkFixedSize(tag)
	if dataLen < fixed {
		return false
	}
	subOff := int(binary.LittleEndian.Uint16(b[8:]))
	subLen := int(binary.LittleEndian.Uint16(b[10:]))
	prOff := int(binary.LittleEndian.Uint16(b[12:]))
	prLen := int(binary.LittleEndian.Uint16(b[14:]))
	path := b[ReparseHeaderSize+fixed:]
	return subOff == 0 && prOff == subLen+2 && len(path) == subLen+2+prLen+2 &&
		path[subLen] == 0 && path[subLen+1] == 0 && path[len(path)-2] == 0 && path[len(path)-1] == 0
}

// FuzzDecodeReparsePoint checks that canonical buffers re-encode to the same
// bytes and that decode(encode(decode(x))) == decode(x) for every decodable x.
func FuzzDecodeReparsePoint(f *testing.F) {
	f.Add(unhex(f, goldenSymlink))
	f.Add(unhex(f, goldenMountPoint))
	for _, rp := range []*ReparsePoint{
		NewLinkReparsePoint(`..\x`, false),
		NewLinkReparsePoint(`\\server\share`, true),
		{Tag: ReparseTagWCI, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0}},
		{Tag: 0x00001234, Data: make([]byte, 20)},
	} {
		b, err := rp.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0c, 0, 0, 0xa0, 0x10, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		rp, err := DecodeReparsePoint(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("%v is not a format error", err)
			}
			return
		}
		// Names may overlap, and UTF-8 takes at most 1.5 times the bytes of
		// UTF-16, so the decoded form is at most 3 times the input.
		if len(rp.Data)+len(rp.SubstituteName)+len(rp.PrintName) > 3*len(data) {
			t.Fatalf("decoded %+v is out of proportion to %d input bytes", rp, len(data))
		}
		enc, err := rp.Encode()
		if err != nil {
			// Only overlapping link names can need more room than the
			// input had.
			subLen, _ := utf16Len(rp.SubstituteName)
			prLen, _ := utf16Len(rp.PrintName)
			if rp.IsSymlinkOrMountPoint() && linkFixedSize(rp.Tag)+subLen+prLen+4 > MaxReparseDataLength {
				return
			}
			t.Fatalf("Encode of decoded %+v: %v", rp, err)
		}
		if isCanonicalReparse(data) && !bytes.Equal(enc, data) {
			t.Fatalf("canonical input re-encodes differently:\n in  %x\n out %x", data, enc)
		}
		back, err := DecodeReparsePoint(enc)
		if err != nil {
			t.Fatalf("decode of encoding %x: %v", enc, err)
		}
		if !reflect.DeepEqual(back, rp) {
			t.Fatalf("decode(encode(decode(x))) = %+v, want %+v", back, rp)
		}
	})
}

// FuzzValidateSecurityDescriptor checks that every descriptor that validates
// can be rendered, and that SDDL fails exactly when validation does.
func FuzzValidateSecurityDescriptor(f *testing.F) {
	f.Add(nullSD)
	f.Add(sdB(sdDACLPresent|sdDACLProtected|sdDACLAutoInherited, sidBA, sidSY, nil, aclB(2,
		aceB(aceAccessAllowed, 0xb, 0x10000000, sidCO),
		aceB(aceAccessAllowed, 0, 0x1F01FF, sidSY),
		aceB(aceAccessAllowed, 0, 0x1200a9, sidBU))))
	f.Add(sdB(sdSACLPresent, nil, nil, aclB(2,
		aceB(aceSystemAudit, 0xc0, 0x1F01FF, sidWD),
		aceB(aceSystemMandatoryLabel, 0, 1, sidLW)), nil))
	f.Add(sdB(sdDACLPresent, sidTI, nil, nil, aclB(4,
		aceB(aceAccessAllowedObject, 0x2, 0x30, le32(3), make([]byte, 32), sidAU),
		aceB(aceAccessAllowedCallback, 0, 0x1200A0, sidWD, []byte("artx")),
		cat([]byte{aceAccessAllowedCompound, 0}, le16(8), []byte{1, 2, 3, 4}))))
	f.Fuzz(func(t *testing.T, data []byte) {
		verr := ValidateSecurityDescriptor(data)
		s, serr := SDDL(data)
		if verr != nil {
			if !errors.Is(verr, ErrInvalidFormat) {
				t.Fatalf("%v is not a format error", verr)
			}
			if serr == nil || serr.Error() != verr.Error() {
				t.Fatalf("SDDL error %v, validation error %v", serr, verr)
			}
			return
		}
		if serr != nil {
			t.Fatalf("valid descriptor: SDDL: %v", serr)
		}
		// At most ~100 characters per 4 input bytes (one ACE or one SID
		// sub-authority), plus the fixed parts.
		if len(s) > 64+100*len(data) {
			t.Fatalf("SDDL of %d bytes is %d characters", len(data), len(s))
		}
	})
}
