package winfile

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/guid"
)

// Security descriptor control bits (SECURITY_DESCRIPTOR_CONTROL) that this
// package reads. The *_DEFAULTED bits have no SDDL form and are ignored.
const (
	sdDACLPresent       = 0x0004
	sdSACLPresent       = 0x0010
	sdDACLAutoInheritRq = 0x0100
	sdSACLAutoInheritRq = 0x0200
	sdDACLAutoInherited = 0x0400
	sdSACLAutoInherited = 0x0800
	sdDACLProtected     = 0x1000
	sdSACLProtected     = 0x2000
	sdSelfRelative      = 0x8000

	sdHeaderSize      = 20
	sidHeaderSize     = 8
	aclHeaderSize     = 8
	aceHeaderSize     = 4
	maxSubAuthorities = 15

	sdStructureName = "security descriptor"
)

// SID is a Windows security identifier.
type SID struct {
	Revision uint8
	// Authority is the 48-bit identifier authority, big-endian as on the wire.
	Authority [6]byte
	// SubAuthorities holds at most 15 relative identifiers.
	SubAuthorities []uint32
}

// String returns the S-R-I-S-S... form, such as "S-1-5-32-544". An authority
// of 2^32 or more is written as 0x followed by 12 hexadecimal digits, as in
// the SID string syntax of [MS-DTYP] section 2.4.2.1.
func (s SID) String() string {
	b := make([]byte, 0, 16+11*len(s.SubAuthorities))
	b = append(b, "S-"...)
	b = strconv.AppendUint(b, uint64(s.Revision), 10)
	b = append(b, '-')
	var a uint64
	for _, c := range s.Authority {
		a = a<<8 | uint64(c)
	}
	if a < 1<<32 {
		b = strconv.AppendUint(b, a, 10)
	} else {
		b = append(b, "0x"...)
		b = append(b, strings.ToUpper(hex.EncodeToString(s.Authority[:]))...)
	}
	for _, sub := range s.SubAuthorities {
		b = append(b, '-')
		b = strconv.AppendUint(b, uint64(sub), 10)
	}
	return string(b)
}

// Bytes returns the binary form of s: revision, sub-authority count, the
// big-endian authority, then little-endian sub-authorities. It does not check
// s; ParseSID does.
func (s SID) Bytes() []byte {
	b := make([]byte, 0, sidHeaderSize+4*len(s.SubAuthorities))
	b = append(b, s.Revision, uint8(len(s.SubAuthorities)))
	b = append(b, s.Authority[:]...)
	for _, sub := range s.SubAuthorities {
		b = binary.LittleEndian.AppendUint32(b, sub)
	}
	return b
}

// ParseSID decodes the SID at the start of b and returns it with the number
// of bytes it occupies. The revision must be 1, there must be at most 15
// sub-authorities, and they must fit in b; otherwise it returns a
// *FormatError with an offset relative to b.
func ParseSID(b []byte) (SID, int, error) {
	s, n, err := parseSID(b, 0, "SID")
	if err != nil {
		return SID{}, 0, err
	}
	return s, n, nil
}

// parseSID decodes the SID at b[off:], reporting errors as part what with
// offsets into b.
func parseSID(b []byte, off int, what string) (SID, int, *FormatError) {
	if len(b)-off < sidHeaderSize {
		return SID{}, 0, truncErr(what, int64(off), "SID header", sidHeaderSize, len(b)-off)
	}
	if b[off] != 1 {
		return SID{}, 0, formatErr(what, int64(off), "SID revision %d, want 1", b[off])
	}
	n := int(b[off+1])
	if n > maxSubAuthorities {
		return SID{}, 0, formatErr(what, int64(off+1), "SID has %d sub-authorities, limit %d", n, maxSubAuthorities)
	}
	size := sidHeaderSize + 4*n
	if len(b)-off < size {
		return SID{}, 0, truncErr(what, int64(off), "SID", size, len(b)-off)
	}
	s := SID{Revision: 1}
	copy(s.Authority[:], b[off+2:off+8])
	if n > 0 {
		s.SubAuthorities = make([]uint32, n)
		for i := range s.SubAuthorities {
			s.SubAuthorities[i] = binary.LittleEndian.Uint32(b[off+sidHeaderSize+4*i:])
		}
	}
	return s, size, nil
}

// ACE types (ACE_HEADER.AceType).
const (
	aceAccessAllowed               = 0x00
	aceAccessDenied                = 0x01
	aceSystemAudit                 = 0x02
	aceSystemAlarm                 = 0x03
	aceAccessAllowedCompound       = 0x04
	aceAccessAllowedObject         = 0x05
	aceAccessDeniedObject          = 0x06
	aceSystemAuditObject           = 0x07
	aceSystemAlarmObject           = 0x08
	aceAccessAllowedCallback       = 0x09
	aceAccessDeniedCallback        = 0x0A
	aceAccessAllowedCallbackObject = 0x0B
	aceAccessDeniedCallbackObject  = 0x0C
	aceSystemAuditCallback         = 0x0D
	aceSystemAlarmCallback         = 0x0E
	aceSystemAuditCallbackObject   = 0x0F
	aceSystemAlarmCallbackObject   = 0x10
	aceSystemMandatoryLabel        = 0x11
	aceSystemResourceAttribute     = 0x12
	aceSystemScopedPolicyID        = 0x13
	aceSystemProcessTrustLabel     = 0x14
	aceSystemAccessFilter          = 0x15

	aceObjectTypePresent          = 0x1
	aceInheritedObjectTypePresent = 0x2
)

type aceLayout uint8

const (
	layoutUnknown aceLayout = iota // body not interpreted
	layoutSimple                   // mask, SID
	layoutObject                   // mask, object flags, optional GUIDs, SID
)

type aceKind struct {
	sddl   string // "" when SDDL has no name for the type
	layout aceLayout
	// extra reports whether bytes after the SID are application data
	// (conditions, claims) rather than padding.
	extra bool
}

var aceKinds = map[uint8]aceKind{
	aceAccessAllowed:               {"A", layoutSimple, false},
	aceAccessDenied:                {"D", layoutSimple, false},
	aceSystemAudit:                 {"AU", layoutSimple, false},
	aceSystemAlarm:                 {"AL", layoutSimple, false},
	aceAccessAllowedObject:         {"OA", layoutObject, false},
	aceAccessDeniedObject:          {"OD", layoutObject, false},
	aceSystemAuditObject:           {"OU", layoutObject, false},
	aceSystemAlarmObject:           {"OL", layoutObject, false},
	aceAccessAllowedCallback:       {"XA", layoutSimple, true},
	aceAccessDeniedCallback:        {"XD", layoutSimple, true},
	aceAccessAllowedCallbackObject: {"ZA", layoutObject, true},
	aceAccessDeniedCallbackObject:  {"", layoutObject, true},
	aceSystemAuditCallback:         {"XU", layoutSimple, true},
	aceSystemAlarmCallback:         {"", layoutSimple, true},
	aceSystemAuditCallbackObject:   {"", layoutObject, true},
	aceSystemAlarmCallbackObject:   {"", layoutObject, true},
	aceSystemMandatoryLabel:        {"ML", layoutSimple, false},
	aceSystemResourceAttribute:     {"RA", layoutSimple, true},
	aceSystemScopedPolicyID:        {"SP", layoutSimple, false},
	aceSystemProcessTrustLabel:     {"TL", layoutSimple, false},
	aceSystemAccessFilter:          {"FL", layoutSimple, true},
}

// secDesc is a parsed self-relative security descriptor.
type secDesc struct {
	control      uint16
	owner, group *SID
	sacl, dacl   *acl // nil when the ACL is absent or null
}

type acl struct {
	aces []ace
}

type ace struct {
	typ, flags uint8
	mask       uint32
	objType    *guid.GUID
	inhObjType *guid.GUID
	sid        *SID
	extra      []byte // uninterpreted bytes: application data, or an unknown body
}

// ValidateSecurityDescriptor checks that b is a well-formed self-relative
// security descriptor, the payload of a StreamSecurityData stream:
//
//   - at least the 20-byte header, revision 1, SELF_RELATIVE set;
//   - owner and group offsets, when non-zero, point past the header to SIDs
//     of revision 1 with at most 15 sub-authorities that fit in b;
//   - the SACL and DACL, when their PRESENT bit is set and their offset is
//     non-zero, have revision 2, 3 or 4 and an AclSize of at least 8 that
//     fits in b; their AceCount ACEs each fit in AclSize, with an AceSize of
//     at least 4 that is a multiple of 4;
//   - ACEs of the known types hold a mask and a SID (and, for object ACEs,
//     the GUIDs their flags announce) inside their AceSize.
//
// Offsets of ACLs whose PRESENT bit is clear are ignored, as Windows does.
// ACE types this package does not know are accepted with any body. Offsets
// need not be 4-byte aligned. The first violation is returned as a
// *FormatError naming the part and its offset in b.
func ValidateSecurityDescriptor(b []byte) error {
	_, err := parseSecurityDescriptor(b)
	return err
}

func parseSecurityDescriptor(b []byte) (*secDesc, error) {
	if len(b) < sdHeaderSize {
		return nil, truncErr(sdStructureName, 0, "header", sdHeaderSize, len(b))
	}
	if b[0] != 1 {
		return nil, formatErr(sdStructureName, 0, "revision %d, want 1", b[0])
	}
	d := &secDesc{control: binary.LittleEndian.Uint16(b[2:])}
	if d.control&sdSelfRelative == 0 {
		return nil, formatErr(sdStructureName, 2, "control %#04x lacks SELF_RELATIVE", d.control)
	}
	ownerOff := binary.LittleEndian.Uint32(b[4:])
	groupOff := binary.LittleEndian.Uint32(b[8:])
	saclOff := binary.LittleEndian.Uint32(b[12:])
	daclOff := binary.LittleEndian.Uint32(b[16:])
	var err error
	if d.owner, err = parseSDSID(b, ownerOff, 4, "owner"); err != nil {
		return nil, err
	}
	if d.group, err = parseSDSID(b, groupOff, 8, "group"); err != nil {
		return nil, err
	}
	if d.control&sdSACLPresent != 0 && saclOff != 0 {
		if d.sacl, err = parseACL(b, saclOff, 12, "SACL"); err != nil {
			return nil, err
		}
	}
	if d.control&sdDACLPresent != 0 && daclOff != 0 {
		if d.dacl, err = parseACL(b, daclOff, 16, "DACL"); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// checkPartOffset checks the offset of a part; field is where the offset
// itself is stored.
func checkPartOffset(b []byte, off uint32, field int, part string) error {
	if off < sdHeaderSize || uint64(off) >= uint64(len(b)) {
		return formatErr(sdStructureName+" "+part, int64(field), "offset %d is outside [%d, %d)", off, sdHeaderSize, len(b))
	}
	return nil
}

func parseSDSID(b []byte, off uint32, field int, part string) (*SID, error) {
	if off == 0 {
		return nil, nil
	}
	if err := checkPartOffset(b, off, field, part+" SID"); err != nil {
		return nil, err
	}
	s, _, fe := parseSID(b, int(off), sdStructureName+" "+part+" SID")
	if fe != nil {
		return nil, fe
	}
	return &s, nil
}

func parseACL(b []byte, off32 uint32, field int, part string) (*acl, error) {
	if err := checkPartOffset(b, off32, field, part); err != nil {
		return nil, err
	}
	what := sdStructureName + " " + part
	off := int(off32)
	if len(b)-off < aclHeaderSize {
		return nil, truncErr(what, int64(off), "ACL header", aclHeaderSize, len(b)-off)
	}
	if rev := b[off]; rev < 2 || rev > 4 {
		return nil, formatErr(what, int64(off), "ACL revision %d, want 2, 3 or 4", rev)
	}
	size := int(binary.LittleEndian.Uint16(b[off+2:]))
	count := int(binary.LittleEndian.Uint16(b[off+4:]))
	switch {
	case size < aclHeaderSize:
		return nil, formatErr(what, int64(off+2), "AclSize %d is smaller than the ACL header", size)
	case size > len(b)-off:
		return nil, formatErr(what, int64(off+2), "AclSize %d runs beyond the %d bytes left", size, len(b)-off)
	case count > (size-aclHeaderSize)/aceHeaderSize:
		return nil, formatErr(what, int64(off+4), "AceCount %d cannot fit in AclSize %d", count, size)
	}
	end := off + size
	a := &acl{aces: make([]ace, 0, count)}
	pos := off + aclHeaderSize
	for i := range count {
		if end-pos < aceHeaderSize {
			return nil, formatErr(what, int64(pos), "ACE %d of %d: header runs beyond AclSize", i, count)
		}
		aceSize := int(binary.LittleEndian.Uint16(b[pos+2:]))
		switch {
		case aceSize < aceHeaderSize:
			return nil, formatErr(what, int64(pos+2), "ACE %d: AceSize %d is smaller than the ACE header", i, aceSize)
		case aceSize%4 != 0:
			return nil, formatErr(what, int64(pos+2), "ACE %d: AceSize %d is not a multiple of 4", i, aceSize)
		case aceSize > end-pos:
			return nil, formatErr(what, int64(pos+2), "ACE %d: AceSize %d runs beyond AclSize", i, aceSize)
		}
		e, err := parseACE(b[:pos+aceSize], pos, what, i)
		if err != nil {
			return nil, err
		}
		a.aces = append(a.aces, e)
		pos += aceSize
	}
	return a, nil
}

// parseACE decodes the ACE at b[pos:], which ends at len(b).
func parseACE(b []byte, pos int, what string, i int) (ace, error) {
	e := ace{typ: b[pos], flags: b[pos+1]}
	kind := aceKinds[e.typ]
	body := pos + aceHeaderSize
	if kind.layout == layoutUnknown {
		if body < len(b) {
			e.extra = b[body:]
		}
		return e, nil
	}
	if len(b)-body < 4 {
		return e, formatErr(what, int64(pos), "ACE %d (type %#x): no room for the access mask", i, e.typ)
	}
	e.mask = binary.LittleEndian.Uint32(b[body:])
	p := body + 4
	if kind.layout == layoutObject {
		if len(b)-p < 4 {
			return e, formatErr(what, int64(pos), "ACE %d (type %#x): no room for the object flags", i, e.typ)
		}
		objFlags := binary.LittleEndian.Uint32(b[p:])
		p += 4
		for _, f := range []struct {
			bit uint32
			dst **guid.GUID
		}{{aceObjectTypePresent, &e.objType}, {aceInheritedObjectTypePresent, &e.inhObjType}} {
			if objFlags&f.bit == 0 {
				continue
			}
			if len(b)-p < 16 {
				return e, formatErr(what, int64(p), "ACE %d (type %#x): object type GUID runs beyond AceSize", i, e.typ)
			}
			g := guid.FromWindowsArray([16]byte(b[p : p+16]))
			*f.dst = &g
			p += 16
		}
	}
	s, n, fe := parseSID(b, p, what)
	if fe != nil {
		fe.Reason = "ACE " + strconv.Itoa(i) + ": " + fe.Reason
		return e, fe
	}
	e.sid = &s
	p += n
	if kind.extra && p < len(b) {
		e.extra = b[p:]
	}
	return e, nil
}

// SDDL renders a self-relative security descriptor in Security Descriptor
// Definition Language for inspection, for example
// "O:BAG:SYD:PAI(A;OICIIO;GA;;;CO)(A;;FA;;;SY)". It checks b as
// ValidateSecurityDescriptor does and returns the same errors.
//
// The parts appear in the order O, G, D, S. SIDs with an SDDL alias use it
// (SY, BA, BU, WD, ...); others are written as S-1-.... ACL control flags are
// P, AR and AI; a DACL or SACL that is present but null is written
// NO_ACCESS_CONTROL. An ACE is (type;flags;rights;object;inherited object;
// SID). Rights that equal FA, FR, FW or FX use that name; otherwise rights
// made only of bits with SDDL letters are spelled in letters in increasing
// bit order (GA, RC, WD, ...; NW, NR, NX on mandatory labels), and anything
// else is hexadecimal such as 0x1200a9. ACE types and flags without SDDL
// names are hexadecimal.
//
// The output is not always valid SDDL: bytes this package does not interpret
// (the conditions of callback ACEs, the claims of resource attribute ACEs,
// the bodies of unknown ACE types) are appended to the ACE as a seventh
// field, '#' followed by hexadecimal.
func SDDL(b []byte) (string, error) {
	d, err := parseSecurityDescriptor(b)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	if d.owner != nil {
		sb.WriteString("O:")
		sb.WriteString(sddlSID(d.owner))
	}
	if d.group != nil {
		sb.WriteString("G:")
		sb.WriteString(sddlSID(d.group))
	}
	writeACL(&sb, "D:", d.control, sdDACLPresent, sdDACLProtected, sdDACLAutoInheritRq, sdDACLAutoInherited, d.dacl)
	writeACL(&sb, "S:", d.control, sdSACLPresent, sdSACLProtected, sdSACLAutoInheritRq, sdSACLAutoInherited, d.sacl)
	return sb.String(), nil
}

func writeACL(sb *strings.Builder, prefix string, control, present, protected, inheritReq, inherited uint16, a *acl) {
	if control&(present|protected|inheritReq|inherited) == 0 {
		return
	}
	sb.WriteString(prefix)
	if control&protected != 0 {
		sb.WriteString("P")
	}
	if control&inheritReq != 0 {
		sb.WriteString("AR")
	}
	if control&inherited != 0 {
		sb.WriteString("AI")
	}
	if control&present == 0 {
		return
	}
	if a == nil {
		sb.WriteString("NO_ACCESS_CONTROL")
		return
	}
	for _, e := range a.aces {
		writeACE(sb, &e)
	}
}

func writeACE(sb *strings.Builder, e *ace) {
	kind := aceKinds[e.typ]
	sb.WriteByte('(')
	if kind.sddl != "" {
		sb.WriteString(kind.sddl)
	} else {
		sb.WriteString(hexString(uint32(e.typ)))
	}
	sb.WriteByte(';')
	sb.WriteString(aceFlagsString(e.flags))
	sb.WriteByte(';')
	if kind.layout != layoutUnknown {
		if e.typ == aceSystemMandatoryLabel {
			sb.WriteString(labelRightsString(e.mask))
		} else {
			sb.WriteString(rightsString(e.mask))
		}
	}
	sb.WriteByte(';')
	if e.objType != nil {
		sb.WriteString(e.objType.String())
	}
	sb.WriteByte(';')
	if e.inhObjType != nil {
		sb.WriteString(e.inhObjType.String())
	}
	sb.WriteByte(';')
	if e.sid != nil {
		sb.WriteString(sddlSID(e.sid))
	}
	if len(e.extra) > 0 {
		sb.WriteString(";#")
		sb.WriteString(hex.EncodeToString(e.extra))
	}
	sb.WriteByte(')')
}

func hexString(v uint32) string {
	return "0x" + strconv.FormatUint(uint64(v), 16)
}

var aceFlagNames = []struct {
	bit  uint8
	name string
}{
	{0x01, "OI"}, // OBJECT_INHERIT_ACE
	{0x02, "CI"}, // CONTAINER_INHERIT_ACE
	{0x04, "NP"}, // NO_PROPAGATE_INHERIT_ACE
	{0x08, "IO"}, // INHERIT_ONLY_ACE
	{0x10, "ID"}, // INHERITED_ACE
	{0x40, "SA"}, // SUCCESSFUL_ACCESS_ACE_FLAG
	{0x80, "FA"}, // FAILED_ACCESS_ACE_FLAG
}

// aceFlagsString spells ACE flags in SDDL, or in hexadecimal when a bit has
// no SDDL name.
func aceFlagsString(f uint8) string {
	var sb strings.Builder
	rest := f
	for _, n := range aceFlagNames {
		if f&n.bit != 0 {
			sb.WriteString(n.name)
			rest &^= n.bit
		}
	}
	if rest != 0 {
		return hexString(uint32(f))
	}
	return sb.String()
}

// Whole-mask file rights names.
var fileRights = map[uint32]string{
	0x001F01FF: "FA", // FILE_ALL_ACCESS
	0x00120089: "FR", // FILE_GENERIC_READ
	0x00120116: "FW", // FILE_GENERIC_WRITE
	0x001200A0: "FX", // FILE_GENERIC_EXECUTE
}

// Rights letters in increasing bit order.
var rightsLetters = []struct {
	bit  uint32
	name string
}{
	{0x00000001, "CC"}, // ADS_RIGHT_DS_CREATE_CHILD
	{0x00000002, "DC"}, // ADS_RIGHT_DS_DELETE_CHILD
	{0x00000004, "LC"}, // ADS_RIGHT_ACTRL_DS_LIST
	{0x00000008, "SW"}, // ADS_RIGHT_DS_SELF
	{0x00000010, "RP"}, // ADS_RIGHT_DS_READ_PROP
	{0x00000020, "WP"}, // ADS_RIGHT_DS_WRITE_PROP
	{0x00000040, "DT"}, // ADS_RIGHT_DS_DELETE_TREE
	{0x00000080, "LO"}, // ADS_RIGHT_DS_LIST_OBJECT
	{0x00000100, "CR"}, // ADS_RIGHT_DS_CONTROL_ACCESS
	{0x00010000, "SD"}, // DELETE
	{0x00020000, "RC"}, // READ_CONTROL
	{0x00040000, "WD"}, // WRITE_DAC
	{0x00080000, "WO"}, // WRITE_OWNER
	{0x10000000, "GA"}, // GENERIC_ALL
	{0x20000000, "GX"}, // GENERIC_EXECUTE
	{0x40000000, "GW"}, // GENERIC_WRITE
	{0x80000000, "GR"}, // GENERIC_READ
}

func rightsString(m uint32) string {
	if s, ok := fileRights[m]; ok {
		return s
	}
	return lettersOrHex(m, rightsLetters)
}

var labelRightsLetters = []struct {
	bit  uint32
	name string
}{
	{0x1, "NW"}, // SYSTEM_MANDATORY_LABEL_NO_WRITE_UP
	{0x2, "NR"}, // SYSTEM_MANDATORY_LABEL_NO_READ_UP
	{0x4, "NX"}, // SYSTEM_MANDATORY_LABEL_NO_EXECUTE_UP
}

func labelRightsString(m uint32) string {
	return lettersOrHex(m, labelRightsLetters)
}

func lettersOrHex(m uint32, letters []struct {
	bit  uint32
	name string
}) string {
	if m == 0 {
		return "0x0"
	}
	var sb strings.Builder
	rest := m
	for _, l := range letters {
		if m&l.bit != 0 {
			sb.WriteString(l.name)
			rest &^= l.bit
		}
	}
	if rest != 0 {
		return hexString(m)
	}
	return sb.String()
}

// sidAliases maps SID strings to their SDDL abbreviations. Aliases relative
// to a domain (DA, DU, ...) need the domain SID and are not included.
var sidAliases = map[string]string{
	"S-1-1-0":            "WD", // Everyone
	"S-1-3-0":            "CO", // Creator Owner
	"S-1-3-1":            "CG", // Creator Group
	"S-1-3-4":            "OW", // Owner Rights
	"S-1-5-2":            "NU", // Network
	"S-1-5-4":            "IU", // Interactive
	"S-1-5-6":            "SU", // Service
	"S-1-5-7":            "AN", // Anonymous
	"S-1-5-9":            "ED", // Enterprise Domain Controllers
	"S-1-5-10":           "PS", // Principal Self
	"S-1-5-11":           "AU", // Authenticated Users
	"S-1-5-12":           "RC", // Restricted Code
	"S-1-5-18":           "SY", // Local System
	"S-1-5-19":           "LS", // Local Service
	"S-1-5-20":           "NS", // Network Service
	"S-1-5-32-544":       "BA", // Builtin Administrators
	"S-1-5-32-545":       "BU", // Builtin Users
	"S-1-5-32-546":       "BG", // Builtin Guests
	"S-1-5-32-547":       "PU", // Power Users
	"S-1-5-32-548":       "AO", // Account Operators
	"S-1-5-32-549":       "SO", // Server Operators
	"S-1-5-32-550":       "PO", // Print Operators
	"S-1-5-32-551":       "BO", // Backup Operators
	"S-1-5-32-552":       "RE", // Replicator
	"S-1-5-32-554":       "RU", // Pre-Windows 2000 Compatible Access
	"S-1-5-32-555":       "RD", // Remote Desktop Users
	"S-1-5-32-556":       "NO", // Network Configuration Operators
	"S-1-5-32-558":       "MU", // Performance Monitor Users
	"S-1-5-32-559":       "LU", // Performance Log Users
	"S-1-5-32-568":       "IS", // IIS_IUSRS
	"S-1-5-32-569":       "CY", // Cryptographic Operators
	"S-1-5-32-573":       "ER", // Event Log Readers
	"S-1-5-32-574":       "CD", // Certificate Service DCOM Access
	"S-1-5-32-575":       "RA", // RDS Remote Access Servers
	"S-1-5-32-576":       "ES", // RDS Endpoint Servers
	"S-1-5-32-577":       "MS", // RDS Management Servers
	"S-1-5-32-578":       "HA", // Hyper-V Administrators
	"S-1-5-32-579":       "AA", // Access Control Assistance Operators
	"S-1-5-32-580":       "RM", // Remote Management Users
	"S-1-5-33":           "WR", // Write Restricted Code
	"S-1-5-84-0-0-0-0-0": "UD", // User-Mode Drivers
	"S-1-15-2-1":         "AC", // All Application Packages
	"S-1-16-4096":        "LW", // Low Mandatory Level
	"S-1-16-8192":        "ME", // Medium Mandatory Level
	"S-1-16-8448":        "MP", // Medium Plus Mandatory Level
	"S-1-16-12288":       "HI", // High Mandatory Level
	"S-1-16-16384":       "SI", // System Mandatory Level
	"S-1-18-1":           "AS", // Authentication Authority Asserted Identity
	"S-1-18-2":           "SS", // Service Asserted Identity
}

func sddlSID(s *SID) string {
	str := s.String()
	if a, ok := sidAliases[str]; ok {
		return a
	}
	return str
}
