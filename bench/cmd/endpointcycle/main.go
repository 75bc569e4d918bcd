// Command endpointcycle creates and deletes network endpoints for bench's endpoint
// row and prints the median time of one create+delete cycle, apart from process
// start-up and the network's own setup, which both sides pay alike.
//
// Usage:
//
//	endpointcycle -mode ours|peer -state DIR -netns DIR -cni DIR -n CYCLES
//
// Both modes first make a nat network with package hns (untimed) on a free /24 of
// 10.231.0.0/16, and remove it at the end. Mode ours then runs hns's CreateEndpoint and
// DeleteEndpoint n times. Mode peer makes the same calls directly: a network namespace
// bound the same way (unshare on a locked thread, bind mount, loopback up), libcni's
// AddNetworkList and DelNetworkList with the network's own configuration list and
// the same runtime arguments, and the namespace's removal. Output:
// "cycle_ns=N cycles=C".
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/hostcompute/hostcompute/hns"
)

func main() {
	mode := flag.String("mode", "", "ours or peer")
	state := flag.String("state", "", "state directory of the hns store")
	nsDir := flag.String("netns", "", "directory of the namespaces")
	cniDir := flag.String("cni", "", "directory of the CNI plugins")
	n := flag.Int("n", 10, "create+delete cycles")
	flag.Parse()
	if err := run(*mode, *state, *nsDir, *cniDir, *n); err != nil {
		fmt.Fprintln(os.Stderr, "endpointcycle:", err)
		os.Exit(1)
	}
}

func run(mode, state, nsDir, cniDir string, n int) (err error) {
	ctx := context.Background()
	s, err := hns.Open(ctx, hns.Options{StateDir: state, NetNSDir: nsDir, PluginDirs: []string{cniDir}})
	if err != nil {
		return err
	}
	p, err := freeSubnet()
	if err != nil {
		return err
	}
	net, err := s.CreateNetwork(ctx, hns.Network{Name: "bench-" + p.Addr().String(), Type: hns.TypeNAT, Subnets: []hns.Subnet{{AddressPrefix: p.String()}}})
	if err != nil {
		return err
	}
	defer func() {
		if derr := s.DeleteNetwork(ctx, net.ID); err == nil {
			err = derr
		}
	}()
	var cycle func(i int) error
	switch mode {
	case "ours":
		cycle = func(i int) error {
			e, err := s.CreateEndpoint(ctx, hns.Endpoint{VirtualNetwork: net.ID})
			if err != nil {
				return err
			}
			return s.DeleteEndpoint(ctx, e.ID)
		}
	case "peer":
		list, err := libcni.ConfListFromBytes(net.CNIConfig)
		if err != nil {
			return err
		}
		cni := libcni.NewCNIConfigWithCacheDir([]string{cniDir}, filepath.Join(state, "peer-cache"), nil)
		cycle = func(i int) error {
			id := fmt.Sprintf("peer-%d-%d", os.Getpid(), i)
			path := filepath.Join(nsDir, id)
			if err := newNetNS(path); err != nil {
				return err
			}
			rt := &libcni.RuntimeConf{ContainerID: id, NetNS: path, IfName: "eth0", CapabilityArgs: map[string]any{}}
			if _, err := cni.AddNetworkList(ctx, list, rt); err != nil {
				return err
			}
			if err := cni.DelNetworkList(ctx, list, rt); err != nil {
				return err
			}
			if err := unix.Unmount(path, 0); err != nil {
				return err
			}
			return os.Remove(path)
		}
	default:
		return fmt.Errorf("-mode %q: want ours or peer", mode)
	}
	var times []time.Duration
	for i := range n {
		start := time.Now()
		if err := cycle(i); err != nil {
			return fmt.Errorf("cycle %d: %w", i, err)
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	fmt.Printf("cycle_ns=%d cycles=%d\n", times[len(times)/2].Nanoseconds(), n)
	return nil
}

// newNetNS binds a new network namespace at path with its loopback up.
func newNetNS(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()), path, "", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		return err
	}
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
	if err != nil {
		return err
	}
	return nl.LinkSetUp(lo)
}

// freeSubnet picks a /24 of 10.231.0.0/16 that no route of the host overlaps.
func freeSubnet() (netip.Prefix, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, err
	}
	for range 200 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 231, byte(rand.IntN(256)), 0}), 24)
		free := true
		for _, r := range routes {
			if r.Dst == nil {
				continue
			}
			a, _ := netip.AddrFromSlice(r.Dst.IP.To4())
			if ones, _ := r.Dst.Mask.Size(); ones > 0 && netip.PrefixFrom(a, ones).Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 in 10.231.0.0/16")
}
