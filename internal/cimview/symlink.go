package cimview

import (
	"path"
	"strings"

	"github.com/hostcompute/hostcompute/pkg/winfile"
)

// systemRoots are the directories of a layer that stand for a system drive,
// longest first: a link below one of them resolves drive paths inside it.
var systemRoots = []string{"UtilityVM/Files", "Files"}

// linkTarget turns a symlink or mount point into a Linux symlink target, by
// the rule in the package documentation. linkPath is the link's own
// '/'-separated path in the image.
func linkTarget(rp *winfile.ReparsePoint, linkPath string) string {
	sub := rp.SubstituteName
	if rp.Tag == winfile.ReparseTagSymlink && rp.Flags&winfile.SymlinkFlagRelative != 0 && !strings.HasPrefix(sub, `\`) {
		return strings.ReplaceAll(sub, `\`, "/")
	}
	rest, ok := drivePath(sub)
	if !ok {
		return untranslated(rp)
	}
	root := ""
	for _, r := range systemRoots {
		if hasPathPrefix(strings.ToLower(linkPath), strings.ToLower(r)) {
			root = linkPath[:len(r)]
			break
		}
	}
	if root == "" {
		return untranslated(rp)
	}
	// Clean as an absolute path so that ".." stops at the drive's root.
	dest := path.Join(root, path.Clean("/"+strings.ReplaceAll(rest, `\`, "/")))
	return relPath(path.Dir(linkPath), dest)
}

// untranslated is the target of a link that names nothing inside the mount:
// the Windows form, as the user wrote it.
func untranslated(rp *winfile.ReparsePoint) string {
	if rp.PrintName != "" {
		return rp.PrintName
	}
	if rp.SubstituteName != "" {
		return rp.SubstituteName
	}
	return "."
}

// drivePath returns the part after the drive of a path on a drive (`C:\x`,
// `\??\C:\x`, `\\?\C:\x`, `\\.\C:\x`) or of a rooted path without a drive
// (`\x`); ok is false for every other form (UNC, volume GUIDs, devices).
func drivePath(p string) (string, bool) {
	for _, pre := range []string{`\??\`, `\\?\`, `\\.\`} {
		if strings.HasPrefix(p, pre) {
			q := p[len(pre):]
			if isDrive(q) {
				return q[2:], true
			}
			return "", false
		}
	}
	if isDrive(p) {
		return p[2:], true
	}
	if strings.HasPrefix(p, `\`) && !strings.HasPrefix(p, `\\`) {
		return p, true
	}
	return "", false
}

// isDrive reports whether p starts with a drive ("C:") followed by nothing or
// a separator.
func isDrive(p string) bool {
	if len(p) < 2 || p[1] != ':' {
		return false
	}
	c := p[0] | 0x20
	return c >= 'a' && c <= 'z' && (len(p) == 2 || p[2] == '\\' || p[2] == '/')
}

func hasPathPrefix(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// relPath returns the relative path from directory from to to, both clean
// '/'-separated paths relative to the same root ("." for the root).
func relPath(from, to string) string {
	split := func(p string) []string {
		if p == "." || p == "" {
			return nil
		}
		return strings.Split(p, "/")
	}
	f, t := split(from), split(to)
	i := 0
	for i < len(f) && i < len(t) && strings.EqualFold(f[i], t[i]) {
		i++
	}
	parts := make([]string, 0, len(f)-i+len(t)-i)
	for range f[i:] {
		parts = append(parts, "..")
	}
	parts = append(parts, t[i:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}
