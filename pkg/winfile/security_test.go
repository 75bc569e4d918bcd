package winfile

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

// sidB builds a binary SID from its authority and sub-authorities.
func sidB(auth uint64, subs ...uint32) []byte {
	a := binary.BigEndian.AppendUint64(nil, auth)
	b := append([]byte{1, byte(len(subs))}, a[2:]...)
	for _, s := range subs {
		b = append(b, le32(s)...)
	}
	return b
}

// aceB builds an ACE of a mask-and-SID type; body parts follow the mask.
func aceB(typ, flags uint8, mask uint32, body ...[]byte) []byte {
	rest := cat(le32(mask), cat(body...))
	for len(rest)%4 != 0 {
		rest = append(rest, 0)
	}
	return cat([]byte{typ, flags}, le16(uint16(4+len(rest))), rest)
}

// aclB builds an ACL holding aces.
func aclB(rev uint8, aces ...[]byte) []byte {
	body := cat(aces...)
	return cat([]byte{rev, 0}, le16(uint16(8+len(body))), le16(uint16(len(aces))), le16(0), body)
}

// sdB builds a self-relative descriptor, laying out the parts after the
// header in the order Windows uses (SACL, DACL, owner, group). Nil parts get
// offset 0. control is used as given plus SELF_RELATIVE.
func sdB(control uint16, owner, group, sacl, dacl []byte) []byte {
	b := make([]byte, sdHeaderSize)
	b[0] = 1
	binary.LittleEndian.PutUint16(b[2:], control|sdSelfRelative)
	for _, p := range []struct {
		field int
		data  []byte
	}{{12, sacl}, {16, dacl}, {4, owner}, {8, group}} {
		if p.data != nil {
			binary.LittleEndian.PutUint32(b[p.field:], uint32(len(b)))
			b = append(b, p.data...)
		}
	}
	return b
}

func guidBytes(t *testing.T, s string) []byte {
	t.Helper()
	g, err := guid.FromString(s)
	if err != nil {
		t.Fatal(err)
	}
	a := g.ToWindowsArray()
	return a[:]
}

var (
	sidSY = sidB(5, 18)
	sidBA = sidB(5, 32, 544)
	sidBU = sidB(5, 32, 545)
	sidCO = sidB(3, 0)
	sidWD = sidB(1, 0)
	sidAU = sidB(5, 11)
	sidLW = sidB(16, 4096)
	sidTI = sidB(5, 80, 956008885, 3418522649, 1831038044, 1853292631, 2271478464)
)

func TestSDDL(t *testing.T) {
	const (
		dp = sdDACLPresent
		sp = sdSACLPresent
	)
	objGUID := "bf967a7f-0de6-11d0-a285-00aa003049e2"
	inhGUID := "4828cc14-1437-45bc-9b07-ad6f015e5f28"
	tests := []struct {
		name string
		sd   []byte
		want string
	}{
		{
			"typical directory",
			sdB(dp|sdDACLProtected|sdDACLAutoInherited, sidBA, sidSY, nil, aclB(2,
				aceB(aceAccessAllowed, 0x1|0x2|0x8, 0x10000000, sidCO),
				aceB(aceAccessAllowed, 0, 0x1F01FF, sidSY),
				aceB(aceAccessAllowed, 0, 0x1200a9, sidBU))),
			"O:BAG:SYD:PAI(A;OICIIO;GA;;;CO)(A;;FA;;;SY)(A;;0x1200a9;;;BU)",
		},
		{"null DACL", nullSD, "D:NO_ACCESS_CONTROL"},
		{"empty descriptor", sdB(0, nil, nil, nil, nil), ""},
		{"empty DACL", sdB(dp, nil, nil, nil, aclB(2)), "D:"},
		{
			"trusted installer with inherited ACEs",
			sdB(dp|sdDACLAutoInherited, sidTI, sidSY, nil, aclB(2,
				aceB(aceAccessAllowed, 0x10, 0x1F01FF, sidSY),
				aceB(aceAccessAllowed, 0x1|0x2|0x8|0x10, 0x10000000, sidBA),
				aceB(aceAccessDenied, 0, 0x120116, sidWD))),
			"O:S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464G:SYD:AI(A;ID;FA;;;SY)(A;OICIIOID;GA;;;BA)(D;;FW;;;WD)",
		},
		{
			"SACL with audit and label",
			sdB(sp|sdSACLProtected|sdSACLAutoInherited, nil, nil, aclB(2,
				aceB(aceSystemAudit, 0x40|0x80, 0x1F01FF, sidWD),
				aceB(aceSystemMandatoryLabel, 0, 0x3, sidLW)), nil),
			"S:PAI(AU;SAFA;FA;;;WD)(ML;;NWNR;;;LW)",
		},
		{"null SACL", sdB(sp, nil, nil, nil, nil), "S:NO_ACCESS_CONTROL"},
		{"flags without ACL", sdB(sdDACLAutoInheritRq|sdDACLProtected, nil, nil, nil, nil), "D:PAR"},
		{"all DACL flags on null DACL", sdB(dp|sdDACLProtected|sdDACLAutoInheritRq|sdDACLAutoInherited, nil, nil, nil, nil), "D:PARAINO_ACCESS_CONTROL"},
		{
			"rights spellings",
			sdB(dp, nil, nil, nil, aclB(2,
				aceB(aceAccessAllowed, 0, 0xA0000000, sidWD),
				aceB(aceAccessAllowed, 0, 0x00020000, sidWD),
				aceB(aceAccessAllowed, 0, 0x000F0000, sidWD),
				aceB(aceAccessAllowed, 0, 0, sidWD),
				aceB(aceAccessAllowed, 0, 0x1301bf, sidWD),
				aceB(aceAccessAllowed, 0, 0x120089, sidWD),
				aceB(aceAccessAllowed, 0, 0x1200A0, sidWD),
				aceB(aceAccessAllowed, 0, 0x3, sidWD),
				aceB(aceSystemMandatoryLabel, 0, 0x8, sidWD))),
			"D:(A;;GXGR;;;WD)(A;;RC;;;WD)(A;;SDRCWDWO;;;WD)(A;;0x0;;;WD)(A;;0x1301bf;;;WD)(A;;FR;;;WD)(A;;FX;;;WD)(A;;CCDC;;;WD)(ML;;0x8;;;WD)",
		},
		{
			"object ACEs",
			sdB(dp, nil, nil, nil, aclB(4,
				aceB(aceAccessAllowedObject, 0x2, 0x30, le32(3), guidBytes(t, objGUID), guidBytes(t, inhGUID), sidAU),
				aceB(aceAccessDeniedObject, 0, 0x100, le32(2), guidBytes(t, inhGUID), sidAU),
				aceB(aceSystemAuditObject, 0x40, 0x10, le32(0), sidAU))),
			"D:(OA;CI;RPWP;" + objGUID + ";" + inhGUID + ";AU)(OD;;CR;;" + inhGUID + ";AU)(OU;SA;RP;;;AU)",
		},
		{
			"callback ACE keeps its condition as hex",
			sdB(dp, nil, nil, nil, aclB(2, aceB(aceAccessAllowedCallback, 0, 0x1200A0, sidWD, []byte("artx"), []byte{0, 0, 0, 0}))),
			"D:(XA;;FX;;;WD;#6172747800000000)",
		},
		{
			"types without SDDL names",
			sdB(dp, nil, nil, nil, aclB(2,
				cat([]byte{aceAccessAllowedCompound, 0}, le16(8), []byte{1, 2, 3, 4}),
				cat([]byte{0x30, 0x2}, le16(4)),
				aceB(aceAccessDeniedCallbackObject, 0, 0x1, le32(0), sidWD))),
			"D:(0x4;;;;;;#01020304)(0x30;CI;;;;)(0xc;;CC;;;WD)",
		},
		{
			"flag without SDDL name",
			sdB(dp, nil, nil, nil, aclB(2, aceB(aceAccessAllowed, 0x21, 0x1F01FF, sidSY))),
			"D:(A;0x21;FA;;;SY)",
		},
		{"large authority", sdB(0, sidB(0x123456789ABC, 7), nil, nil, nil), "O:S-1-0x123456789ABC-7"},
		{"group only", sdB(0, nil, sidB(5, 21, 1, 2, 3, 513), nil, nil), "G:S-1-5-21-1-2-3-513"},
		{"SID without sub-authorities", sdB(0, sidB(5), nil, nil, nil), "O:S-1-5"},
		{
			"ACL revision 3 and free space after the ACEs",
			sdB(dp, nil, nil, nil, func() []byte {
				a := aclB(3, aceB(aceAccessAllowed, 0, 0x1F01FF, sidSY))
				binary.LittleEndian.PutUint16(a[2:], uint16(len(a)+8))
				return append(a, make([]byte, 8)...)
			}()),
			"D:(A;;FA;;;SY)",
		},
		{
			"DACL offset ignored when not present",
			func() []byte {
				b := sdB(0, sidSY, nil, nil, nil)
				binary.LittleEndian.PutUint32(b[16:], 0xffffff)
				binary.LittleEndian.PutUint32(b[12:], 3)
				return b
			}(),
			"O:SY",
		},
		{
			"parts shared and out of order",
			func() []byte {
				b := sdB(dp|sp, sidSY, nil, nil, aclB(2, aceB(aceAccessAllowed, 0, 0x1F01FF, sidSY)))
				copy(b[8:12], b[4:8])    // group = owner
				copy(b[12:16], b[16:20]) // SACL = DACL
				return b
			}(),
			"O:SYG:SYD:(A;;FA;;;SY)S:(A;;FA;;;SY)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateSecurityDescriptor(tt.sd); err != nil {
				t.Fatalf("ValidateSecurityDescriptor: %v", err)
			}
			got, err := SDDL(tt.sd)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("SDDL =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestNullSecurityDescriptorBytes(t *testing.T) {
	sd := unhex(t, "01000480"+strings.Repeat("00", 16))
	got, err := SDDL(sd)
	if err != nil || got != "D:NO_ACCESS_CONTROL" {
		t.Errorf("SDDL(null SD) = %q, %v", got, err)
	}
}

func TestValidateSecurityDescriptorErrors(t *testing.T) {
	good := sdB(sdDACLPresent, sidBA, sidSY, nil, aclB(2, aceB(aceAccessAllowed, 0, 0x1F01FF, sidSY)))
	// Layout of good: header 0-19, DACL 20-47 (ACE at 28), owner 48-63, group 64-75.
	const daclOff, aceOff, ownerOff, groupOff = 20, 28, 48, 64
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	put16 := func(off int, v uint16) []byte {
		return edit(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[off:], v); return b })
	}
	put32 := func(off int, v uint32) []byte {
		return edit(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b })
	}
	set := func(off int, v byte) []byte {
		return edit(func(b []byte) []byte { b[off] = v; return b })
	}
	tests := []struct {
		name   string
		sd     []byte
		part   string
		off    int64
		reason string
	}{
		{"short", good[:19], "security descriptor", 0, "header needs 20 bytes, 19 remain"},
		{"revision", set(0, 2), "security descriptor", 0, "revision 2, want 1"},
		{"absolute form", put16(2, sdDACLPresent), "security descriptor", 2, "lacks SELF_RELATIVE"},
		{"owner offset in header", put32(4, 12), "owner SID", 4, "offset 12 is outside [20, 76)"},
		{"owner offset beyond", put32(4, 76), "owner SID", 4, "offset 76 is outside"},
		{"owner SID revision", set(ownerOff, 2), "owner SID", ownerOff, "SID revision 2"},
		{"owner SID count", set(ownerOff+1, 16), "owner SID", ownerOff + 1, "16 sub-authorities, limit 15"},
		{"owner SID count overruns", set(ownerOff+1, 6), "owner SID", ownerOff, "SID needs 32 bytes, 28 remain"},
		{"group SID count overruns", set(groupOff+1, 2), "group SID", groupOff, "SID needs 16 bytes, 12 remain"},
		{"DACL offset beyond", put32(16, 1000), "DACL", 16, "offset 1000 is outside"},
		{"DACL revision 1", set(daclOff, 1), "DACL", daclOff, "ACL revision 1"},
		{"DACL revision 5", set(daclOff, 5), "DACL", daclOff, "ACL revision 5"},
		{"AclSize below header", put16(daclOff+2, 7), "DACL", daclOff + 2, "AclSize 7 is smaller"},
		{"AclSize beyond buffer", put16(daclOff+2, 57), "DACL", daclOff + 2, "AclSize 57 runs beyond the 56 bytes left"},
		{"AceCount cannot fit", put16(daclOff+4, 6), "DACL", daclOff + 4, "AceCount 6 cannot fit"},
		{"AceCount too high", put16(daclOff+4, 2), "DACL", aceOff + 20, "ACE 1 of 2: header runs beyond AclSize"},
		{"AceSize below header", put16(aceOff+2, 0), "DACL", aceOff + 2, "ACE 0: AceSize 0 is smaller"},
		{"AceSize unaligned", put16(aceOff+2, 18), "DACL", aceOff + 2, "ACE 0: AceSize 18 is not a multiple of 4"},
		{"AceSize beyond AclSize", put16(aceOff+2, 24), "DACL", aceOff + 2, "ACE 0: AceSize 24 runs beyond AclSize"},
		{"ACE without mask", edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[aceOff+2:], 4)
			return b
		}), "DACL", aceOff, "ACE 0 (type 0x0): no room for the access mask"},
		{"ACE SID cut by AceSize", put16(aceOff+2, 16), "DACL", aceOff + 8, "ACE 0: SID needs 12 bytes, 8 remain"},
		{"ACE SID revision", set(aceOff+8, 0), "DACL", aceOff + 8, "ACE 0: SID revision 0"},
		{"SACL checked when present", edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[2:], sdSelfRelative|sdSACLPresent|sdDACLPresent)
			binary.LittleEndian.PutUint32(b[12:], ownerOff) // a SID is not an ACL
			return b
		}), "SACL", ownerOff, "ACL revision 1"},
		{"object ACE GUID missing", sdB(sdDACLPresent, nil, nil, nil, aclB(2,
			cat([]byte{aceAccessAllowedObject, 0}, le16(28), le32(0x30), le32(3), make([]byte, 16)))),
			"DACL", 56, "object type GUID runs beyond AceSize"},
		{"object ACE flags missing", sdB(sdDACLPresent, nil, nil, nil, aclB(2,
			cat([]byte{aceAccessAllowedObject, 0}, le16(8), le32(0x30)))),
			"DACL", 28, "no room for the object flags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateSecurityDescriptor(tt.sd)
			fe := wantFormatError(t, err, tt.off, tt.reason)
			if !strings.Contains(fe.Structure, tt.part) {
				t.Errorf("structure %q does not name %q", fe.Structure, tt.part)
			}
			if _, err2 := SDDL(tt.sd); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("SDDL error %v differs from %v", err2, err)
			}
		})
	}
	// Every cut of a valid descriptor fails cleanly.
	for i := range len(good) {
		if err := ValidateSecurityDescriptor(good[:i]); err == nil {
			t.Errorf("cut at %d: no error", i)
		}
	}
}

func TestParseSID(t *testing.T) {
	b := append(sidB(5, 32, 544), 0xff, 0xff)
	s, n, err := ParseSID(b)
	if err != nil {
		t.Fatal(err)
	}
	want := SID{Revision: 1, Authority: [6]byte{0, 0, 0, 0, 0, 5}, SubAuthorities: []uint32{32, 544}}
	if n != 16 || !reflect.DeepEqual(s, want) || s.String() != "S-1-5-32-544" {
		t.Errorf("ParseSID = %+v, %d", s, n)
	}
	if !bytes.Equal(s.Bytes(), b[:16]) {
		t.Errorf("Bytes() = %x", s.Bytes())
	}
	for _, tt := range []struct {
		name string
		b    []byte
		off  int64
		text string
	}{
		{"empty", nil, 0, "SID header needs 8 bytes, 0 remain"},
		{"revision", append([]byte{2}, b[1:]...), 0, "SID revision 2"},
		{"count", append([]byte{1, 16}, b[2:]...), 1, "16 sub-authorities"},
		{"truncated", b[:15], 0, "SID needs 16 bytes, 15 remain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseSID(tt.b)
			wantFormatError(t, err, tt.off, tt.text)
		})
	}
}

// TestSIDAliases checks every alias through the binary form.
func TestSIDAliases(t *testing.T) {
	for str, alias := range sidAliases {
		parts := strings.Split(str, "-")
		auth, _ := strconv.ParseUint(parts[2], 10, 48)
		var subs []uint32
		for _, p := range parts[3:] {
			v, _ := strconv.ParseUint(p, 10, 32)
			subs = append(subs, uint32(v))
		}
		s, _, err := ParseSID(sidB(auth, subs...))
		if err != nil {
			t.Fatal(err)
		}
		if s.String() != str || sddlSID(&s) != alias {
			t.Errorf("%s: String() = %s, alias %s, want %s", str, s.String(), sddlSID(&s), alias)
		}
	}
	seen := map[string]bool{}
	for _, a := range sidAliases {
		if seen[a] {
			t.Errorf("alias %s used twice", a)
		}
		seen[a] = true
	}
}

func TestSDDLAllocation(t *testing.T) {
	// An ACL full of minimal ACEs: output stays proportional to input.
	var aces [][]byte
	for range 2000 {
		aces = append(aces, cat([]byte{0x30, 0}, le16(4)))
	}
	sd := sdB(sdDACLPresent, nil, nil, nil, aclB(2, aces...))
	s, err := SDDL(sd)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) > 20*len(sd) {
		t.Errorf("SDDL of %d bytes is %d characters", len(sd), len(s))
	}
	got := allocatedBytes(func() { SDDL(sd) })
	if limit := uint64(200 * len(sd)); got > limit {
		t.Errorf("allocated %d bytes for %d bytes of input", got, len(sd))
	}
}
