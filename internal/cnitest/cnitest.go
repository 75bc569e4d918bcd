//go:build linux

// Package cnitest holds helpers for tests that make real networks with CNI plugins:
// finding the plugin binaries the project builds, picking a private /24 nobody on the
// host uses, running commands inside a namespace, and listing what a test left in
// iptables.
package cnitest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// PluginsVersion is the version of github.com/containernetworking/plugins that
// scripts/install-go-peers.sh builds into bin/cni/<version>.
const PluginsVersion = "v1.10.0"

// Plugins are the plugin binaries the network service runs.
var Plugins = []string{"bridge", "host-local", "firewall", "tuning", "portmap", "bandwidth"}

// Setup skips the test unless it runs as root with CAP_NET_ADMIN and the tools it
// needs (iptables, nsenter, busybox), and returns the directory of the plugin
// binaries, setting $HOSTCOMPUTE_CNI_PATH to it for the test.
func Setup(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes network namespaces, bridges and iptables rules")
	}
	var caps unix.CapUserData
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{}
	if err := unix.Capget(&hdr, &data[0]); err == nil {
		caps = data[0]
		if caps.Effective&(1<<unix.CAP_NET_ADMIN) == 0 {
			t.Skip("needs CAP_NET_ADMIN")
		}
	}
	for _, tool := range []string{"iptables", "nsenter", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (scripts/install-deps.sh installs it): %v", tool, err)
		}
	}
	dir := PluginDir(t)
	t.Setenv("HOSTCOMPUTE_CNI_PATH", dir)
	return dir
}

// PluginDir returns <repo>/bin/cni/<PluginsVersion>, skipping the test if a plugin is
// missing there.
func PluginDir(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Skipf("no repository root: %v", err)
	}
	dir := filepath.Join(root, "bin", "cni", PluginsVersion)
	for _, p := range Plugins {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Skipf("CNI plugin %s missing (run scripts/install-go-peers.sh): %v", p, err)
		}
	}
	return dir
}

func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		d = parent
	}
}

// Subnet returns a /24 in 10.231.0.0/16 that no route of the host overlaps, chosen at
// random so that concurrent tests do not collide.
func Subnet(t testing.TB) netip.Prefix {
	t.Helper()
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 231, byte(rand.IntN(256)), 0}), 24)
		free := true
		for _, r := range routes {
			if r.Dst == nil {
				continue
			}
			a, _ := netip.AddrFromSlice(r.Dst.IP.To4())
			ones, _ := r.Dst.Mask.Size()
			if ones == 0 {
				continue // the default route
			}
			if netip.PrefixFrom(a, ones).Overlaps(p) {
				free = false
				break
			}
		}
		if free && reserve(t, p) {
			return p
		}
	}
	t.Fatal("no free /24 in 10.231.0.0/16")
	return netip.Prefix{}
}

// reserve takes an flock on a file naming p, held until the test ends, so that
// tests running at once in other processes do not pick the same subnet before either
// has a route on it. A test that dies releases it with its process.
func reserve(t testing.TB, p netip.Prefix) bool {
	name := filepath.Join(os.TempDir(), "hostcompute-cnitest-"+strings.ReplaceAll(p.String(), "/", "_")+".lock")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	t.Cleanup(func() { os.Remove(name); f.Close() })
	return true
}

// InNetNS runs busybox with args inside the network namespace at netns and returns
// its combined output.
func InNetNS(ctx context.Context, netns string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + netns, "busybox"}, args...)...)
	return cmd.CombinedOutput()
}

// Ping sends one ping from the namespace at netns to addr (which must be an address
// of the test's own namespaces) and reports whether it was answered within timeout.
func Ping(t testing.TB, netns string, addr netip.Addr, timeout time.Duration) bool {
	t.Helper()
	secs := max(int(timeout/time.Second), 1)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	out, err := InNetNS(ctx, netns, "ping", "-c", "1", "-W", fmt.Sprint(secs), addr.String())
	t.Logf("ping %s from %s: %v\n%s", addr, filepath.Base(netns), err, out)
	return err == nil
}

// IPTablesMentions returns the lines of iptables-save (IPv4 and, with v6, IPv6) that
// contain one of words.
func IPTablesMentions(t testing.TB, v6 bool, words ...string) []string {
	t.Helper()
	cmds := []string{"iptables-save"}
	if v6 {
		cmds = append(cmds, "ip6tables-save")
	}
	var found []string
	for _, c := range cmds {
		out, err := exec.Command(c).Output()
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		for _, line := range bytes.Split(out, []byte("\n")) {
			for _, w := range words {
				if w != "" && strings.Contains(string(line), w) {
					found = append(found, c+": "+string(line))
					break
				}
			}
		}
	}
	return found
}

// LinkExists reports whether a link named name exists in the host's namespace.
func LinkExists(t testing.TB, name string) bool {
	t.Helper()
	_, err := netlink.LinkByName(name)
	if err == nil {
		return true
	}
	if _, ok := err.(netlink.LinkNotFoundError); ok {
		return false
	}
	t.Fatalf("link %s: %v", name, err)
	return false
}
