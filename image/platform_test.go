package image

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestMatchPlatform(t *testing.T) {
	win := func(v string) v1.Platform { return v1.Platform{OS: "windows", Architecture: "amd64", OSVersion: v} }
	for _, c := range []struct {
		want, have v1.Platform
		ok         bool
	}{
		{win("10.0.17763.1"), win("10.0.17763.5000"), true}, // before 20348: the same build
		{win("10.0.17763.1"), win("10.0.14393.1"), false},   // an older build
		{win("10.0.20348.1"), win("10.0.20348.2113"), true}, // LTSC 2022 host
		{win("10.0.26100.1"), win("10.0.20348.2113"), true}, // a later host runs 20348 images
		{win("10.0.26100.1"), win("10.0.17763.1"), false},   // but not 17763 ones
		{win("10.0.20348.1"), win("10.0.26100.1"), false},   // nor images newer than the host
		{win("10.0.20348.1"), win("6.3.20348.1"), false},    // another major.minor
		{win(""), win("10.0.17763.1"), true},                // no version asked
		{win("10.0.20348.1"), win(""), true},                // the image gives none
		{win("10.0.20348.1"), win("garbage"), false},        // unparsable
		{v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, v1.Platform{OS: "linux", Architecture: "arm64"}, true},
		{v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, false},
		{v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "x86_64"}, true},
		{v1.Platform{OS: "linux", Architecture: "amd64"}, win("10.0.20348.1"), false},
	} {
		if got := matchPlatform(c.want, c.have); got != c.ok {
			t.Errorf("matchPlatform(%s, %s) = %v, want %v", c.want.String(), c.have.String(), got, c.ok)
		}
	}
}

func TestSelectManifestRevision(t *testing.T) {
	d := func(v string) v1.Descriptor {
		return v1.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Platform: &v1.Platform{OS: "windows", Architecture: "amd64", OSVersion: v},
			Digest: v1.Hash{Algorithm: "sha256", Hex: v}}
	}
	im := &v1.IndexManifest{Manifests: []v1.Descriptor{d("10.0.20348.100"), d("10.0.20348.2113"), d("10.0.17763.9000")}}
	got, err := selectManifest(im, v1.Platform{OS: "windows", Architecture: "amd64", OSVersion: "10.0.20348.1"})
	if err != nil || got.Platform.OSVersion != "10.0.20348.2113" {
		t.Errorf("selected %v (%v), want the highest revision of 20348", got.Platform, err)
	}
}

// FuzzParseRef: whatever parses prints as a reference that parses to the same.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"oci:/a/b", "oci:/a/b:v1", "docker-archive:x.tar:repo:tag", "127.0.0.1:5000/a/b:c", "docker://busybox", "a@sha256:" + "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12", "oci:", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			return
		}
		again, err := ParseRef(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseRef(%q) = %+v; its String %q parses to %+v, %v", s, r, r.String(), again, err)
		}
	})
}

// FuzzPlatform: parsing never panics, and an image of the very platform asked
// for always matches.
func FuzzPlatform(f *testing.F) {
	for _, s := range []string{"linux/amd64", "windows/amd64:10.0.20348.2113", "linux/arm64/v8", "windows/amd64:10.0.17763.1", "x", "a/b/c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePlatform(s)
		if err != nil {
			return
		}
		if _, ok := parseWindowsVersion(p.OSVersion); ok || p.OSVersion == "" {
			if !matchPlatform(p, p) {
				t.Fatalf("%q does not match itself", s)
			}
		}
	})
}
