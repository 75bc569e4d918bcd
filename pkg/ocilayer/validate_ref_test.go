package ocilayer

// The Validator as it was when it kept its names in a map, kept as the reference
// the compact one is compared with (TestValidatorSameAsReference).

import (
	"fmt"
	"strings"
)

// refValidator holds the rules of an OCI Linux layer, the same for every path into one
// (ext4 images, Apply, the tars Diff writes): every path passes each entry through a
// refValidator before it changes anything, and acts on its verdict.
//
//   - Names: leading slashes are dropped (as GNU tar does) and the name is cleaned; a
//     name that leaves the root ("../x") is ErrInsecurePath, an empty one, one
//     holding NUL or a component over 255 bytes is ErrInvalidEntry. The root itself may only be a directory.
//   - Types: regular files (GNU sparse and contiguous ones too), directories,
//     symlinks (with a target: Linux cannot make an empty one), hard links, devices
//     and fifos; others are ErrUnsupported.
//   - Whiteouts: ".wh..wh..opq" makes its directory opaque; other ".wh..wh." names are
//     AUFS bookkeeping and ignored; ".wh.NAME" removes NAME, which must be a plain
//     name (".wh.", ".wh.." and ".wh..." are ErrInvalidEntry or ErrInsecurePath); it
//     also removes what the same layer put at NAME before it.
//   - Nothing is written below a non-directory this layer created (a symlink, a
//     file, a device): ErrInvalidEntry.
//   - A hard link names a non-directory: with WithoutBase, an earlier entry of this
//     layer that is still there; otherwise it may also be inherited (the path
//     checks it).
//   - Extended attributes in overlayfs's namespaces (trusted.overlay.*,
//     user.overlay.*) are rejected with ErrInvalidEntry: they change what a union
//     shows (opaque hides the lower layers' entries, redirect and metacopy reach into
//     them), which a layer expresses with whiteout entries; neither copying them nor
//     dropping them silently gives the layer's meaning.
//   - Sizes: a regular file is at most the maximum file size (ErrTooLarge).
//
// A later entry of the same name replaces an earlier one, as OCI says. A refValidator
// is not safe for concurrent use; its memory grows with the number of names.
type refValidator struct {
	standalone  bool
	maxFileSize int64
	names       map[string]EntryType // this layer's names still present (implied directories too)
}

// NewValidator returns a refValidator for one layer.
func newRefValidator(opts ...func(*refValidator)) *refValidator {
	v := &refValidator{maxFileSize: DefaultMaxFileSize, names: map[string]EntryType{".": TypeDir}}
	for _, o := range opts {
		o(v)
	}
	return v
}

// Check checks the next entry of the layer and returns what to do with it.
func (v *refValidator) Check(e *Entry) (Checked, error) {
	if e.Type == TypeGlobal {
		return Checked{Action: Ignore}, nil
	}
	name, err := CleanName(e.Name)
	if err != nil {
		return Checked{}, err
	}
	dir, base := splitName(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return v.whiteout(name, dir, base)
	}
	if e.Type == TypeOther {
		return Checked{}, fmt.Errorf("%w: tar entry type %q", ErrUnsupported, e.RawType)
	}
	for _, x := range e.Xattrs {
		if strings.HasPrefix(x, "trusted.overlay.") || strings.HasPrefix(x, "user.overlay.") {
			return Checked{}, fmt.Errorf("%w: extended attribute %s belongs to overlayfs; a layer hides lower entries with whiteout entries", ErrInvalidEntry, x)
		}
	}
	if e.Type == TypeSymlink && (e.Linkname == "" || strings.IndexByte(e.Linkname, 0) >= 0) {
		return Checked{}, fmt.Errorf("%w: symlink with an empty target (Linux cannot make one)", ErrInvalidEntry)
	}
	if e.Type == TypeReg && (e.Size < 0 || e.Size > v.maxFileSize) {
		return Checked{}, fmt.Errorf("%w: file of %d bytes (at most %d)", ErrTooLarge, e.Size, v.maxFileSize)
	}
	if name == "." {
		if e.Type != TypeDir {
			return Checked{}, fmt.Errorf("%w: the root entry is not a directory", ErrInvalidEntry)
		}
		return Checked{Action: Create, Name: name}, nil
	}
	c := Checked{Action: Create, Name: name}
	if e.Type == TypeLink {
		target, err := CleanName(e.Linkname)
		if err != nil {
			return Checked{}, fmt.Errorf("hard link target: %w", err)
		}
		if err := v.linkTarget(target); err != nil {
			return Checked{}, err
		}
		c.Target = target
	}
	if err := v.parents(dir); err != nil {
		return Checked{}, err
	}
	kind := e.Type
	if kind == TypeLink {
		kind = v.names[c.Target]
		if kind == 0 || kind == TypeLink {
			kind = TypeReg // inherited: some non-directory
		}
	}
	old, had := v.names[name]
	if had && old == TypeDir && kind != TypeDir {
		v.forget(name) // a directory replaced: what was below it is gone
	}
	v.names[name] = kind
	return c, nil
}

// parents checks that every ancestor this layer created is a directory, and records
// the missing ones as implied directories.
func (v *refValidator) parents(dir string) error {
	for p := dir; p != "."; p, _ = splitName(p) {
		k, ok := v.names[p]
		if !ok {
			v.names[p] = TypeDir
			continue
		}
		if k != TypeDir {
			return fmt.Errorf("%w: %s is not a directory of this layer", ErrNotDir, p)
		}
		return v.parents2(p)
	}
	return nil
}

// parents2 checks the ancestors above a known directory.
func (v *refValidator) parents2(dir string) error {
	for p, _ := splitName(dir); p != "."; p, _ = splitName(p) {
		if k, ok := v.names[p]; ok && k != TypeDir {
			return fmt.Errorf("%w: %s is not a directory of this layer", ErrNotDir, p)
		} else if !ok {
			v.names[p] = TypeDir
		}
	}
	return nil
}

func (v *refValidator) linkTarget(target string) error {
	if target == "." {
		return fmt.Errorf("%w: the root", ErrLinkTarget)
	}
	k, ok := v.names[target]
	switch {
	case ok && k == TypeDir:
		return fmt.Errorf("%w: %s is a directory", ErrLinkTarget, target)
	case ok:
		return nil
	case v.standalone:
		return fmt.Errorf("%w: %s is not an earlier entry of the layer", ErrLinkTarget, target)
	}
	for p, _ := splitName(target); p != "."; p, _ = splitName(p) {
		if k, ok := v.names[p]; ok && k != TypeDir {
			return fmt.Errorf("%w: %s is below %s, not a directory of this layer", ErrLinkTarget, target, p)
		}
	}
	return nil
}

func (v *refValidator) whiteout(name, dir, base string) (Checked, error) {
	if base == whiteoutOpaque {
		if err := v.parents(dir); err != nil {
			return Checked{}, err
		}
		if k, ok := v.names[dir]; ok && k != TypeDir {
			return Checked{}, fmt.Errorf("%w: opaque marker in %s, which is not a directory", ErrInvalidEntry, dir)
		}
		v.names[dir] = TypeDir
		return Checked{Action: Opaque, Name: name, Target: dir}, nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return Checked{Action: Ignore, Name: name}, nil
	}
	target := base[len(whiteoutPrefix):]
	switch target {
	case "..":
		return Checked{}, fmt.Errorf("%w: whiteout %s names the parent directory", ErrInsecurePath, base)
	case "", ".":
		return Checked{}, fmt.Errorf("%w: whiteout %q names no file", ErrInvalidEntry, base)
	}
	if err := v.parents(dir); err != nil {
		return Checked{}, err
	}
	t := joinName(dir, target)
	// A whiteout also removes what the same layer put there before it.
	if k, ok := v.names[t]; ok {
		delete(v.names, t)
		if k == TypeDir {
			v.forget(t)
		}
	}
	return Checked{Action: Whiteout, Name: name, Target: t}, nil
}

// forget drops the names below dir.
func (v *refValidator) forget(dir string) {
	prefix := dir + "/"
	for n := range v.names {
		if strings.HasPrefix(n, prefix) {
			delete(v.names, n)
		}
	}
}
