package winfile

import (
	"encoding/binary"
)

// SIDContainerAdministrator is S-1-5-93-2-1, the account a Windows container's
// processes run as by default (User Manager\ContainerAdministrator). Files created
// in a container are owned by it, with it as their group too.
var SIDContainerAdministrator = SID{Revision: 1, Authority: [6]byte{0, 0, 0, 0, 0, 5}, SubAuthorities: []uint32{93, 2, 1}}

// ACE flags that steer inheritance ([MS-DTYP] 2.4.4.1).
const (
	aceFlagObjectInherit    = 0x01
	aceFlagContainerInherit = 0x02
	aceFlagNoPropagate      = 0x04
	aceFlagInheritOnly      = 0x08
	aceFlagInherited        = 0x10
	aceFlagsInheritance     = aceFlagObjectInherit | aceFlagContainerInherit | aceFlagNoPropagate | aceFlagInheritOnly
)

// The generic rights and what they mean for files and directories (the
// file object's generic mapping).
const (
	genericRead    = 0x80000000
	genericWrite   = 0x40000000
	genericExecute = 0x20000000
	genericAll     = 0x10000000

	fileGenericRead    = 0x00120089
	fileGenericWrite   = 0x00120116
	fileGenericExecute = 0x001200A0
	fileAllAccess      = 0x001F01FF
)

// Creator SIDs, replaced by the new object's owner and group in the ACEs it
// inherits.
var (
	sidCreatorOwner = SID{Revision: 1, Authority: [6]byte{0, 0, 0, 0, 0, 3}, SubAuthorities: []uint32{0}}.Bytes()
	sidCreatorGroup = SID{Revision: 1, Authority: [6]byte{0, 0, 0, 0, 0, 3}, SubAuthorities: []uint32{1}}.Bytes()
)

// InheritSecurityDescriptor returns the security descriptor Windows gives a new
// file (isDir false) or directory created in a directory whose security
// descriptor is parent, by an account that is owner and primary group of what it
// creates: owner and group as given, and a DACL made of the parent DACL's
// inheritable ACEs, as Windows computes it for an object created without an
// explicit descriptor:
//
//   - a file inherits the ACEs marked OBJECT_INHERIT; a directory those marked
//     CONTAINER_INHERIT, and those marked only OBJECT_INHERIT as inherit-only
//     ACEs for the files below it (unless NO_PROPAGATE_INHERIT);
//   - every inherited ACE is marked INHERITED; NO_PROPAGATE_INHERIT ends the
//     inheritance at the new object;
//   - in the ACE the new object uses, CREATOR OWNER and CREATOR GROUP become the
//     owner and group, and generic rights become the file rights they map to; a
//     directory that passes such an ACE on keeps the original as inherit-only;
//   - the DACL is marked auto-inherited when the parent's is.
//
// It returns nil when parent has no DACL or nothing inheritable in it: Windows
// then applies the creating account's default DACL, which a layer does not
// record. The SACL is not inherited (reading it needs a privilege a container's
// processes do not hold). parent is checked as ValidateSecurityDescriptor checks
// it, with the same errors.
func InheritSecurityDescriptor(parent []byte, isDir bool, owner, group SID) ([]byte, error) {
	if err := ValidateSecurityDescriptor(parent); err != nil {
		return nil, err
	}
	control := binary.LittleEndian.Uint16(parent[2:])
	daclOff := binary.LittleEndian.Uint32(parent[16:])
	if control&sdDACLPresent == 0 || daclOff == 0 {
		return nil, nil
	}
	acl := parent[daclOff:]
	aclRev := acl[0]
	aclSize := int(binary.LittleEndian.Uint16(acl[2:]))
	count := int(binary.LittleEndian.Uint16(acl[4:]))
	acl = acl[:aclSize]
	ownerB, groupB := owner.Bytes(), group.Bytes()

	var aces [][]byte
	for i, pos := 0, aclHeaderSize; i < count; i++ {
		size := int(binary.LittleEndian.Uint16(acl[pos+2:]))
		raw := acl[pos : pos+size]
		pos += size
		flags := raw[1]
		oi, ci, np := flags&aceFlagObjectInherit != 0, flags&aceFlagContainerInherit != 0, flags&aceFlagNoPropagate != 0
		base := flags&^aceFlagsInheritance | aceFlagInherited
		switch {
		case !isDir && oi, isDir && ci && np:
			aces = append(aces, effectiveACE(raw, base, ownerB, groupB))
		case isDir && ci:
			eff := effectiveACE(raw, base, ownerB, groupB)
			keep := withFlags(raw, flags&^aceFlagInheritOnly|aceFlagInherited)
			if string(eff[4:]) == string(keep[4:]) {
				aces = append(aces, keep) // used as is and passed on: one ACE
			} else {
				aces = append(aces, eff, withFlags(raw, flags|aceFlagInheritOnly|aceFlagInherited))
			}
		case isDir && oi && !np:
			aces = append(aces, withFlags(raw, flags|aceFlagInheritOnly|aceFlagInherited))
		}
	}
	if len(aces) == 0 {
		return nil, nil
	}
	outControl := uint16(sdSelfRelative | sdDACLPresent)
	if control&sdDACLAutoInherited != 0 {
		outControl |= sdDACLAutoInherited
	}
	// Laid out as Windows lays out descriptors: DACL, owner, group.
	size := aclHeaderSize
	for _, a := range aces {
		size += len(a)
	}
	if size > 0xFFFF || len(aces) > 0xFFFF {
		return nil, formatErr(sdStructureName, int64(daclOff), "the inherited DACL would be %d bytes, more than an ACL holds", size)
	}
	for _, a := range aces {
		if len(a) > 0xFFFF {
			return nil, formatErr(sdStructureName, int64(daclOff), "an inherited ACE would be %d bytes, more than an ACE holds", len(a))
		}
	}
	b := make([]byte, sdHeaderSize, sdHeaderSize+size+len(ownerB)+len(groupB))
	b[0] = 1
	binary.LittleEndian.PutUint16(b[2:], outControl)
	binary.LittleEndian.PutUint32(b[16:], uint32(len(b)))
	b = append(b, aclRev, 0, 0, 0, 0, 0, 0, 0)
	binary.LittleEndian.PutUint16(b[len(b)-6:], uint16(size))
	binary.LittleEndian.PutUint16(b[len(b)-4:], uint16(len(aces)))
	for _, a := range aces {
		b = append(b, a...)
	}
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	b = append(b, ownerB...)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(b)))
	b = append(b, groupB...)
	if err := ValidateSecurityDescriptor(b); err != nil {
		return nil, err
	}
	return b, nil
}

func withFlags(raw []byte, flags uint8) []byte {
	c := append([]byte(nil), raw...)
	c[1] = flags
	return c
}

// effectiveACE returns the ACE as the new object uses it: flags as given, creator
// SIDs replaced and generic rights mapped, for the simple ACE types whose body is
// a mask and a SID (other types are copied unchanged but for the flags).
func effectiveACE(raw []byte, flags uint8, owner, group []byte) []byte {
	c := withFlags(raw, flags)
	if aceKinds[raw[0]].layout != layoutSimple || len(raw) < aceHeaderSize+4 {
		return c
	}
	mask := binary.LittleEndian.Uint32(c[4:])
	if mask&(genericRead|genericWrite|genericExecute|genericAll) != 0 {
		m := mask &^ (genericRead | genericWrite | genericExecute | genericAll)
		for _, g := range [][2]uint32{{genericRead, fileGenericRead}, {genericWrite, fileGenericWrite}, {genericExecute, fileGenericExecute}, {genericAll, fileAllAccess}} {
			if mask&g[0] != 0 {
				m |= g[1]
			}
		}
		binary.LittleEndian.PutUint32(c[4:], m)
	}
	sid := c[aceHeaderSize+4:]
	var repl []byte
	switch {
	case hasPrefix(sid, sidCreatorOwner):
		repl = owner
	case hasPrefix(sid, sidCreatorGroup):
		repl = group
	default:
		return c
	}
	out := append(append([]byte(nil), c[:aceHeaderSize+4]...), repl...)
	if aceKinds[raw[0]].extra {
		out = append(out, sid[len(sidCreatorOwner):]...) // application data
	}
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	binary.LittleEndian.PutUint16(out[2:], uint16(len(out)))
	return out
}

func hasPrefix(b, p []byte) bool { return len(b) >= len(p) && string(b[:len(p)]) == string(p) }
