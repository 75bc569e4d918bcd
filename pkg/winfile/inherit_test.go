package winfile

import (
	"errors"
	"testing"
)

func TestInheritSecurityDescriptor(t *testing.T) {
	// A typical container root: SYSTEM and Administrators full control, Users
	// read and execute, Users may create folders below, CREATOR OWNER full control
	// of what it creates.
	parent := sdB(sdDACLPresent|sdDACLAutoInherited, sidBA, sidSY, nil, aclB(2,
		aceB(0, 0x03, fileAllAccess, sidSY),
		aceB(0, 0x03, fileAllAccess, sidBA),
		aceB(0, 0x03, 0x1200a9, sidBU),
		aceB(0, 0x02, 0x4, sidBU),
		aceB(0, 0x0b, genericAll, sidCO),
		aceB(1, 0x00, fileAllAccess, sidWD), // not inheritable
		aceB(0, 0x05, fileAllAccess, sidAU), // files only, one level
	))
	ca := SIDContainerAdministrator
	for _, tt := range []struct {
		name  string
		isDir bool
		want  string
	}{
		{"file", false, "O:S-1-5-93-2-1G:S-1-5-93-2-1D:AI(A;ID;FA;;;SY)(A;ID;FA;;;BA)(A;ID;0x1200a9;;;BU)(A;ID;FA;;;S-1-5-93-2-1)(A;ID;FA;;;AU)"},
		{"dir", true, "O:S-1-5-93-2-1G:S-1-5-93-2-1D:AI(A;OICIID;FA;;;SY)(A;OICIID;FA;;;BA)(A;OICIID;0x1200a9;;;BU)(A;CIID;LC;;;BU)(A;ID;FA;;;S-1-5-93-2-1)(A;OICIIOID;GA;;;CO)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := InheritSecurityDescriptor(parent, tt.isDir, ca, ca)
			if err != nil {
				t.Fatal(err)
			}
			got, err := SDDL(b)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			// What the child gives its own children is inherited again.
			if tt.isDir {
				g, err := InheritSecurityDescriptor(b, false, ca, ca)
				if err != nil {
					t.Fatal(err)
				}
				s, _ := SDDL(g)
				if want := "O:S-1-5-93-2-1G:S-1-5-93-2-1D:AI(A;ID;FA;;;SY)(A;ID;FA;;;BA)(A;ID;0x1200a9;;;BU)(A;ID;FA;;;S-1-5-93-2-1)"; s != want {
					t.Errorf("grandchild file: got %s, want %s", s, want)
				}
			}
		})
	}
	// Nothing inheritable, or no DACL: nil.
	for _, p := range [][]byte{
		sdB(sdDACLPresent, sidBA, sidSY, nil, aclB(2, aceB(0, 0, fileAllAccess, sidSY))),
		sdB(0, sidBA, sidSY, nil, nil),
	} {
		if b, err := InheritSecurityDescriptor(p, false, ca, ca); err != nil || b != nil {
			t.Errorf("got %x, %v; want nil, nil", b, err)
		}
	}
	if _, err := InheritSecurityDescriptor([]byte{1, 2, 3}, false, ca, ca); err == nil {
		t.Error("a truncated parent descriptor gave no error")
	}
}

// FuzzInheritSecurityDescriptor checks that what a valid parent passes on is
// nil or a valid descriptor owned by the given account whose every ACE is
// marked inherited, no larger than twice the parent's ACEs plus the SIDs; and
// that an invalid parent gives the validation error.
func FuzzInheritSecurityDescriptor(f *testing.F) {
	f.Add(sdB(sdDACLPresent|sdDACLAutoInherited, sidBA, sidSY, nil, aclB(2,
		aceB(0, 0x03, fileAllAccess, sidSY), aceB(0, 0x0b, genericAll, sidCO), aceB(0, 0x01, 0x1200a9, sidBU))), true)
	f.Add(nullSD, false)
	f.Add(sdB(sdDACLPresent, nil, nil, nil, aclB(4,
		aceB(aceAccessAllowedCallback, 0x03, genericRead, sidCO, []byte("artx")),
		aceB(aceAccessAllowedObject, 0x02, 0x30, le32(3), make([]byte, 32), sidAU))), true)
	ca := SIDContainerAdministrator
	f.Fuzz(func(t *testing.T, parent []byte, isDir bool) {
		b, err := InheritSecurityDescriptor(parent, isDir, ca, ca)
		if verr := ValidateSecurityDescriptor(parent); verr != nil {
			if err == nil || !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("invalid parent (%v): got %x, %v", verr, b, err)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidFormat) {
				t.Fatalf("error %v is not a format error", err)
			}
			return
		}
		if b == nil {
			return
		}
		d, err := parseSecurityDescriptor(b)
		if err != nil {
			t.Fatalf("inherited descriptor %x: %v", b, err)
		}
		if d.owner == nil || d.owner.String() != ca.String() || d.dacl == nil || len(d.dacl.aces) == 0 {
			t.Fatalf("inherited descriptor %x: owner %v, DACL %v", b, d.owner, d.dacl)
		}
		for _, a := range d.dacl.aces {
			if a.flags&aceFlagInherited == 0 {
				t.Fatalf("ACE %+v not marked inherited", a)
			}
		}
		if len(b) > 2*len(parent)+64 {
			t.Fatalf("%d bytes inherited from a %d-byte parent", len(b), len(parent))
		}
	})
}
