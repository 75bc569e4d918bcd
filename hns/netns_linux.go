package hns

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/internal/mount"
)

// createNetNS makes a new network namespace bound at path (as ip-netns(8) does, but
// without making the directory a shared mount), with its loopback interface up.
func createNetNS(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread that unshares is never unlocked: it ends with this goroutine,
		// so no other goroutine runs in the new namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		errc <- mount.Bind(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()), path)
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	if err := loopbackUp(path); err != nil {
		removeNetNS(path)
		return err
	}
	return nil
}

func loopbackUp(path string) error {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return err
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("loopback of %s: %w", path, err)
	}
	return nil
}

// isNetNS reports whether path is a bound network namespace.
func isNetNS(path string) bool {
	return ns.IsNSorErr(path) == nil
}

// removeNetNS unbinds and removes the namespace file at path; a missing file is fine.
func removeNetNS(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if isNetNS(path) {
		if err := mount.Unmount(path); err != nil && !errors.Is(err, mount.ErrNotMounted) {
			if !errors.Is(err, mount.ErrBusy) {
				return err
			}
			if _, err := mount.UnmountAll(path, true); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// pinBridgeMAC sets the bridge's MAC address to the one it has, so that it stops
// following the lowest MAC of its ports as endpoints come and go; CNI CHECK compares
// it with the ADD results. (The bridge plugin does this itself only for gateways.)
func pinBridgeMAC(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	if err := netlink.LinkSetHardwareAddr(l, l.Attrs().HardwareAddr); err != nil {
		return fmt.Errorf("bridge %s: setting its MAC address: %w", name, err)
	}
	return nil
}

// routeOverlap returns an error matching ErrInvalid if a route of the host (other
// than a default route) overlaps p: a bridge on p would take traffic the host sends
// elsewhere.
func routeOverlap(p netip.Prefix) error {
	family := netlink.FAMILY_V4
	if p.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	routes, err := netlink.RouteList(nil, family)
	if err != nil {
		return fmt.Errorf("listing routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok || ones == 0 {
			continue
		}
		rp := netip.PrefixFrom(a.Unmap(), ones)
		if a.Is4In6() || a.Is4() {
			rp = netip.PrefixFrom(a.Unmap(), min(ones, 32))
		}
		if rp.Addr().IsLinkLocalUnicast() || rp.Addr().IsMulticast() {
			continue
		}
		if rp.Overlaps(p) {
			dev := ""
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				dev = " dev " + l.Attrs().Name
			}
			return invalidf("subnet %s overlaps the host's route to %s%s", p, rp, dev)
		}
	}
	return nil
}

// removeBridge deletes the Linux bridge of a network; a missing one is fine.
func removeBridge(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil
		}
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	if l.Type() != "bridge" {
		return fmt.Errorf("hns: link %s is a %s, not the network's bridge; left alone", name, l.Type())
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("deleting bridge %s: %w", name, err)
	}
	return nil
}

// removeIPTablesRules deletes the iptables rules that name bridge as an input or
// output interface (the firewall plugin's per-bridge isolation rules, which it keeps
// after DEL since other containers may use the bridge). Rules of other bridges and the
// shared CNI chains stay: other CNI users of the host share them.
func removeIPTablesRules(bridge string, subnets []netip.Prefix) error {
	protos := []iptables.Protocol{iptables.ProtocolIPv4}
	for _, p := range subnets {
		if p.Addr().Is6() {
			protos = append(protos, iptables.ProtocolIPv6)
			break
		}
	}
	for _, proto := range protos {
		ipt, err := iptables.NewWithProtocol(proto)
		if err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
		for _, table := range []string{"filter", "nat", "mangle"} {
			chains, err := ipt.ListChains(table)
			if err != nil {
				return fmt.Errorf("iptables -t %s: %w", table, err)
			}
			for _, chain := range chains {
				if perEndpointChain(chain) {
					// A container's own chain matches addresses, never the
					// bridge; its endpoint's deletion removes it.
					continue
				}
				rules, err := listChain(ipt, table, chain)
				if err != nil {
					return err
				}
				for _, rule := range rules {
					args, err := splitRule(rule)
					if err != nil || len(args) < 2 || args[0] != "-A" || !namesInterface(args, bridge) {
						continue
					}
					if err := ipt.DeleteIfExists(table, chain, args[2:]...); err != nil {
						return fmt.Errorf("iptables -t %s -D %s: %w", table, strings.Join(args[1:], " "), err)
					}
				}
			}
		}
	}
	return nil
}

// removeEndpointRules deletes the iptables rules that plugins tagged with the
// endpoint's container ID (comment `id: "<id>"`) and the per-endpoint chains they jump
// to. DEL leaves them when the namespace is gone: the bridge plugin finds the
// addresses of its masquerading rules inside the namespace.
func removeEndpointRules(containerID string, v6 bool) error {
	tag := `id: "` + containerID + `"`
	protos := []iptables.Protocol{iptables.ProtocolIPv4}
	if v6 {
		protos = append(protos, iptables.ProtocolIPv6)
	}
	for _, proto := range protos {
		ipt, err := iptables.NewWithProtocol(proto)
		if err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
		for _, table := range []string{"nat", "filter", "mangle"} {
			chains, err := ipt.ListChains(table)
			if err != nil {
				return fmt.Errorf("iptables -t %s: %w", table, err)
			}
			targets := map[string]bool{}
			for _, chain := range chains {
				rules, err := listChain(ipt, table, chain)
				if err != nil {
					if perEndpointChain(chain) {
						// Another container's chain, caught mid-change by
						// its own plugin run: ours are found through the
						// tagged jumps in the shared chains.
						continue
					}
					return err
				}
				for _, rule := range rules {
					args, err := splitRule(rule)
					if err != nil || len(args) < 2 || args[0] != "-A" || !slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, tag) }) {
						continue
					}
					if j := slices.Index(args, "-j"); j >= 0 && j+1 < len(args) && perEndpointChain(args[j+1]) {
						targets[args[j+1]] = true
					}
					if err := ipt.DeleteIfExists(table, chain, args[2:]...); err != nil {
						return fmt.Errorf("iptables -t %s -D %s: %w", table, strings.Join(args[1:], " "), err)
					}
				}
			}
			for chain := range targets {
				if ok, _ := ipt.ChainExists(table, chain); ok {
					if err := ipt.ClearAndDeleteChain(table, chain); err != nil {
						return fmt.Errorf("iptables -t %s -X %s: %w", table, chain, err)
					}
				}
			}
		}
	}
	return nil
}

// listChain lists a chain's rules as iptables -S prints them. Other CNI users change
// the tables while we read them, and iptables-nft takes no lock (its --wait is a
// no-op): a read can catch a chain being created or flushed and call it
// "incompatible", or find it gone. A failed read is retried; a chain deleted
// meanwhile has no rules left to remove.
func listChain(ipt *iptables.IPTables, table, chain string) ([]string, error) {
	const attempts = 5
	for attempt := 1; ; attempt++ {
		rules, err := ipt.List(table, chain)
		if err == nil {
			return rules, nil
		}
		if ok, cerr := ipt.ChainExists(table, chain); cerr == nil && !ok {
			return nil, nil
		}
		if attempt == attempts {
			return nil, fmt.Errorf("iptables -t %s -S %s: %w", table, chain, err)
		}
		time.Sleep(time.Duration(attempt) * 20 * time.Millisecond)
	}
}

// perEndpointChain reports whether chain is one a plugin made for one container
// (CNI-<hash>, CNI-DN-<hash>, ...), not one CNI users share.
func perEndpointChain(chain string) bool {
	if !strings.HasPrefix(chain, "CNI-") {
		return false
	}
	for _, shared := range []string{"CNI-HOSTPORT-", "CNI-FORWARD", "CNI-ADMIN", "CNI-ISOLATION-"} {
		if strings.HasPrefix(chain, shared) {
			return false
		}
	}
	return true
}

// interfaceStats reads the counters of interface ifc inside the namespace at path.
func interfaceStats(path, ifc string) (Stats, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return Stats{}, err
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return Stats{}, err
	}
	defer nl.Close()
	l, err := nl.LinkByName(ifc)
	if err != nil {
		return Stats{}, fmt.Errorf("%s in %s: %w", ifc, path, err)
	}
	st := l.Attrs().Statistics
	if st == nil {
		return Stats{}, fmt.Errorf("%s in %s: the kernel gave no counters", ifc, path)
	}
	return Stats{
		BytesReceived: st.RxBytes, BytesSent: st.TxBytes,
		PacketsReceived: st.RxPackets, PacketsSent: st.TxPackets,
		DroppedIncoming: st.RxDropped, DroppedOutgoing: st.TxDropped,
	}, nil
}
