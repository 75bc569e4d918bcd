package winlayer

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Top-level folders a Windows layer may hold.
const (
	FilesDir     = "Files"
	HivesDir     = "Hives"
	UtilityVMDir = "UtilityVM"
)

// CleanName turns a tar or Windows entry name into the slash-separated form used by this
// package, and checks it: backslashes become slashes, one trailing slash is dropped, and
// the result must be a relative path under Files, Hives or UtilityVM whose every
// component is a valid Windows file name. The returned error wraps ErrInsecurePath,
// ErrOutsideLayer or ErrInvalidName.
func CleanName(name string) (string, error) {
	n := strings.ReplaceAll(name, `\`, "/")
	n = strings.TrimSuffix(n, "/")
	if n == "" {
		return "", fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	if strings.HasPrefix(n, "/") || (len(n) >= 2 && n[1] == ':') {
		return "", fmt.Errorf("%w: absolute name %q", ErrInsecurePath, name)
	}
	parts := strings.Split(n, "/")
	for _, p := range parts {
		if p == ".." {
			return "", fmt.Errorf("%w: %q climbs out with ..", ErrInsecurePath, name)
		}
	}
	switch parts[0] {
	case FilesDir, HivesDir, UtilityVMDir:
	default:
		return "", fmt.Errorf("%w: %q", ErrOutsideLayer, name)
	}
	if parts[0] == UtilityVMDir && len(parts) > 1 && parts[1] != FilesDir {
		return "", fmt.Errorf("%w: %q is in UtilityVM/ but not UtilityVM/Files/", ErrOutsideLayer, name)
	}
	for _, p := range parts {
		if err := checkComponent(p); err != nil {
			return "", err
		}
	}
	return n, nil
}

// reservedDevice reports whether a name (without extension, any case) is one of the DOS
// device names Windows refuses as file names.
func reservedDevice(p string) bool {
	base := p
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	base = strings.TrimRight(base, " ")
	switch strings.ToUpper(base) {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return true
	}
	if len(base) == 4 {
		u := strings.ToUpper(base[:3])
		if (u == "COM" || u == "LPT") && base[3] >= '1' && base[3] <= '9' {
			return true
		}
	}
	return false
}

func checkComponent(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty path component", ErrInvalidName)
	case p == ".":
		return fmt.Errorf("%w: \".\" component", ErrInvalidName)
	case !utf8.ValidString(p):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidName, p)
	case len(p) > 255:
		return fmt.Errorf("%w: %q is longer than 255 bytes", ErrInvalidName, p)
	case strings.HasSuffix(p, ".") || strings.HasSuffix(p, " "):
		return fmt.Errorf("%w: %q ends with a dot or space", ErrInvalidName, p)
	case reservedDevice(p):
		return fmt.Errorf("%w: %q is a reserved device name", ErrInvalidName, p)
	}
	for _, r := range p {
		if r < 0x20 || strings.ContainsRune(`<>:"|?*`, r) {
			return fmt.Errorf("%w: %q contains %q", ErrInvalidName, p, r)
		}
	}
	return nil
}

// foldName maps a name to the key under which Windows compares it: NTFS compares names
// after upper-casing each UTF-16 code unit with its upcase table, which for the Basic
// Multilingual Plane matches simple Unicode upper-casing.
func foldName(n string) string {
	ascii := true
	for i := 0; i < len(n); i++ {
		if n[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToUpper(n)
	}
	return strings.Map(func(r rune) rune {
		if r > 0xFFFF {
			return r // NTFS leaves characters outside the BMP as they are
		}
		return unicode.ToUpper(r)
	}, n)
}

// parentOf returns the parent of a slash-separated name ("" at the top).
func parentOf(n string) string {
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		return n[:i]
	}
	return ""
}

// baseOf returns the last component of a slash-separated name.
func baseOf(n string) string {
	return n[strings.LastIndexByte(n, '/')+1:]
}

// under reports whether name lies strictly below dir.
func under(name, dir string) bool {
	return len(name) > len(dir) && strings.HasPrefix(name, dir) && name[len(dir)] == '/'
}
