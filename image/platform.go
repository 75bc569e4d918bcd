package image

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ParsePlatform parses os/arch[/variant][:os.version], as in "linux/arm64/v8" or
// "windows/amd64:10.0.20348.2340".
func ParsePlatform(s string) (v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant][:os.version]", s)
	}
	return *p, nil
}

// DefaultPlatform is the host's: linux and the machine's architecture.
func DefaultPlatform() v1.Platform {
	return v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
}

// matchPlatform reports whether an image for platform have may be used where want is
// asked for. OS, architecture and variant must agree (a missing variant on either side
// matches, arm64's "v8" equals none). For windows with both os.version values given,
// it is containerd's Windows rule: the major and minor versions must be equal; a
// host (want) build before 20348 (Windows Server 2022) needs the same build, a later
// one takes any build from 20348 up to its own (the stable ABI of later releases).
func matchPlatform(want, have v1.Platform) bool {
	if !strings.EqualFold(want.OS, have.OS) || normArch(want.Architecture) != normArch(have.Architecture) {
		return false
	}
	if wv, hv := normVariant(want), normVariant(have); wv != "" && hv != "" && wv != hv {
		return false
	}
	if want.OS != "windows" || want.OSVersion == "" || have.OSVersion == "" {
		return true
	}
	host, ok1 := parseWindowsVersion(want.OSVersion)
	ctr, ok2 := parseWindowsVersion(have.OSVersion)
	if !ok1 || !ok2 {
		// containerd treats an unparsable version as 0.0.0, which matches nothing
		// but another unparsable one.
		return ok1 == ok2
	}
	if host.major != ctr.major || host.minor != ctr.minor {
		return false
	}
	const ltsc2022 = 20348
	if host.build < ltsc2022 {
		return host.build == ctr.build
	}
	return ctr.build >= ltsc2022 && ctr.build <= host.build
}

type windowsVersion struct {
	major, minor uint8
	build        uint16
	revision     int
}

func parseWindowsVersion(s string) (windowsVersion, bool) {
	parts := strings.Split(s, ".")
	if len(parts) < 3 {
		return windowsVersion{}, false
	}
	major, err1 := strconv.ParseUint(parts[0], 10, 8)
	minor, err2 := strconv.ParseUint(parts[1], 10, 8)
	build, err3 := strconv.ParseUint(parts[2], 10, 16)
	if err1 != nil || err2 != nil || err3 != nil {
		return windowsVersion{}, false
	}
	v := windowsVersion{major: uint8(major), minor: uint8(minor), build: uint16(build)}
	if len(parts) > 3 {
		v.revision, _ = strconv.Atoi(parts[3])
	}
	return v, true
}

func normArch(a string) string {
	switch strings.ToLower(a) {
	case "x86_64", "x86-64":
		return "amd64"
	case "aarch64":
		return "arm64"
	}
	return strings.ToLower(a)
}

func normVariant(p v1.Platform) string {
	v := strings.ToLower(p.Variant)
	if normArch(p.Architecture) == "arm64" && v == "v8" {
		return ""
	}
	return v
}

// selectManifest picks the index entry for want: among the matching entries, as
// containerd orders them, a Windows image of a higher revision (the fourth part of
// os.version) before a lower one; otherwise the first in the index.
func selectManifest(im *v1.IndexManifest, want v1.Platform) (v1.Descriptor, error) {
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		if d.Platform == nil || !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
			continue
		}
		if matchPlatform(want, *d.Platform) {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		var have []string
		for _, d := range im.Manifests {
			if d.Platform != nil {
				have = append(have, d.Platform.String())
			}
		}
		return v1.Descriptor{}, fmt.Errorf("%w: want %s, the index has %s", ErrNoPlatform, want.String(), strings.Join(have, ", "))
	}
	slices.SortStableFunc(found, func(a, b v1.Descriptor) int {
		ra, _ := parseWindowsVersion(a.Platform.OSVersion)
		rb, _ := parseWindowsVersion(b.Platform.OSVersion)
		return rb.revision - ra.revision
	})
	return found[0], nil
}
