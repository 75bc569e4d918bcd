package hns

import (
	"bufio"
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"

	"github.com/hostcompute/hostcompute/internal/cnitest"
	"github.com/hostcompute/hostcompute/internal/proctest"
)

// The crash tests re-execute the test binary as a child that makes an endpoint and
// stops at a step of it, to be killed there.
const childEnv = "HOSTCOMPUTE_HNS_TEST_CHILD"

func TestMain(m *testing.M) {
	if step := os.Getenv(childEnv); step != "" {
		crashChild(step)
		return
	}
	os.Exit(m.Run())
}

// crashChild makes an endpoint on the network named by $HNS_TEST_NETWORK, printing
// "ready" and waiting to be killed when it reaches step.
func crashChild(step string) {
	stepHook = func(s string) {
		if s == step {
			fmt.Println("ready")
			select {}
		}
	}
	ctx := context.Background()
	s, err := Open(ctx, Options{})
	if err == nil {
		_, err = s.CreateEndpoint(ctx, Endpoint{Name: "crash", VirtualNetwork: os.Getenv("HNS_TEST_NETWORK")})
	}
	fmt.Println("child did not stop:", err)
	os.Exit(1)
}

// testStore opens a store in the test's own directories.
func testStore(t *testing.T) *Store {
	t.Helper()
	cnitest.Setup(t)
	t.Setenv("HOSTCOMPUTE_HNS_STATE_DIR", t.TempDir())
	t.Setenv("HOSTCOMPUTE_NETNS_DIR", t.TempDir())
	s, err := Open(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testNetwork(t *testing.T, s *Store, typ string) (*Network, netip.Prefix) {
	t.Helper()
	p := cnitest.Subnet(t)
	gw := p.Addr().Next()
	n, err := s.CreateNetwork(context.Background(), Network{
		Name: "test-" + t.Name() + "-" + p.Addr().String(), Type: typ,
		Subnets:       []Subnet{{AddressPrefix: p.String(), GatewayAddress: gw.String()}},
		DNSServerList: gw.String(), DNSSuffix: "test.internal",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Runs after the test's own deletions; removes what a failed test left.
		ctx := context.Background()
		eps, _ := s.Endpoints(ctx, n.ID)
		for _, e := range eps {
			s.DeleteEndpoint(ctx, e.ID)
		}
		s.DeleteNetwork(ctx, n.ID)
	})
	return n, p
}

func testEndpoint(t *testing.T, s *Store, n *Network, e Endpoint) *Endpoint {
	t.Helper()
	e.VirtualNetwork = n.ID
	ep, err := s.CreateEndpoint(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func addrOf(t *testing.T, e *Endpoint) netip.Addr {
	t.Helper()
	a, ok := netip.AddrFromSlice(e.IPAddress)
	if !ok {
		t.Fatalf("endpoint %s has no IP address", e.ID)
	}
	return a.Unmap()
}

// assertGone checks that nothing of the network and its endpoints is left: records,
// namespaces, links, iptables rules and chains, address leases, libcni's cache.
func assertGone(t *testing.T, s *Store, n *Network, p netip.Prefix, eps ...*Endpoint) {
	t.Helper()
	words := []string{n.ID, n.Bridge, strings.TrimSuffix(strings.TrimSuffix(p.Addr().String(), ".0")+".", "::.") + ":"}
	for _, e := range eps {
		words = append(words, e.ID)
		if _, err := os.Lstat(e.NetNS); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s left: %v", e.NetNS, err)
		}
		if _, err := os.Lstat(e.ResolvConf); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("resolv.conf %s left: %v", e.ResolvConf, err)
		}
		if e.HostInterface != "" && cnitest.LinkExists(t, e.HostInterface) {
			t.Errorf("host interface %s left", e.HostInterface)
		}
	}
	if cnitest.LinkExists(t, n.Bridge) {
		t.Errorf("bridge %s left", n.Bridge)
	}
	v6 := p.Addr().Is6()
	for _, l := range cnitest.IPTablesMentions(t, v6, words...) {
		t.Errorf("iptables rule or chain left: %s", l)
	}
	for _, dir := range []string{s.networksDir(), s.endpointsDir(), s.ipamDir(), filepath.Join(s.cacheDir())} {
		var left []string
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				left = append(left, path)
			}
			return nil
		})
		if len(left) > 0 {
			t.Errorf("state left in %s: %q", dir, left)
		}
	}
}

func TestEndpointsOnOneNetwork(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	n, p := testNetwork(t, s, TypeNAT)
	a := testEndpoint(t, s, n, Endpoint{Name: "a"})
	b := testEndpoint(t, s, n, Endpoint{Name: "b", IPAddress: net.IP(p.Addr().Next().Next().Next().Next().AsSlice())})
	t.Logf("a: %s %s, b: %s %s", a.IPAddress, a.MacAddress, b.IPAddress, b.MacAddress)
	if !p.Contains(addrOf(t, a)) || addrOf(t, b) != p.Addr().Next().Next().Next().Next() {
		t.Errorf("addresses %s, %s: want both in %s, b the one it asked for", a.IPAddress, b.IPAddress, p)
	}
	if a.PrefixLength != 24 || a.GatewayAddress != p.Addr().Next().String() || a.MacAddress == "" || a.HostInterface == "" {
		t.Errorf("endpoint a: prefix %d, gateway %q, MAC %q, host interface %q", a.PrefixLength, a.GatewayAddress, a.MacAddress, a.HostInterface)
	}
	rc, err := os.ReadFile(a.ResolvConf)
	if err != nil || !strings.Contains(string(rc), "nameserver "+p.Addr().Next().String()) || !strings.Contains(string(rc), "search test.internal") {
		t.Errorf("resolv.conf: %v\n%s", err, rc)
	}
	before, err := s.EndpointStats(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !cnitest.Ping(t, a.NetNS, addrOf(t, b), 5*time.Second) || !cnitest.Ping(t, b.NetNS, addrOf(t, a), 5*time.Second) {
		t.Error("endpoints of one network do not reach each other")
	}
	after, err := s.EndpointStats(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.PacketsSent <= before.PacketsSent || after.BytesReceived <= before.BytesReceived {
		t.Errorf("counters did not rise: before %+v, after %+v", before, after)
	}
	for _, e := range []*Endpoint{a, b} {
		if err := s.CheckEndpoint(ctx, e.ID); err != nil {
			t.Errorf("CHECK: %v", err)
		}
	}
	// Reopening rebuilds the same view from disk.
	s2, err := Open(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Endpoint(ctx, "b"); err != nil || got.ID != b.ID || !got.IPAddress.Equal(b.IPAddress) {
		t.Errorf("reopened: endpoint b = %+v, %v", got, err)
	}
	if err := s.DeleteNetwork(ctx, n.ID); !errors.Is(err, ErrInUse) {
		t.Errorf("deleting a network with endpoints: %v, want ErrInUse", err)
	}
	for _, e := range []*Endpoint{a, b} {
		if err := s.DeleteEndpoint(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteNetwork(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Network(ctx, n.ID); !errors.Is(err, ErrNotFound) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("deleted network: %v, want ErrNotFound", err)
	}
	assertGone(t, s, n, p, a, b)
}

func TestNetworksIsolated(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	n1, p1 := testNetwork(t, s, TypeNAT)
	n2, p2 := testNetwork(t, s, TypeL2Bridge)
	a := testEndpoint(t, s, n1, Endpoint{})
	b := testEndpoint(t, s, n2, Endpoint{})
	c := testEndpoint(t, s, n2, Endpoint{})
	if !cnitest.Ping(t, b.NetNS, addrOf(t, c), 5*time.Second) {
		t.Error("endpoints of the l2bridge network do not reach each other")
	}
	if cnitest.Ping(t, a.NetNS, addrOf(t, b), 2*time.Second) {
		t.Error("an endpoint reaches an endpoint of another network")
	}
	if cnitest.Ping(t, b.NetNS, addrOf(t, a), 2*time.Second) {
		t.Error("an endpoint reaches an endpoint of another network")
	}
	for _, e := range []*Endpoint{a, b, c} {
		if err := s.DeleteEndpoint(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []*Network{n1, n2} {
		if err := s.DeleteNetwork(ctx, n.ID); err != nil {
			t.Fatal(err)
		}
	}
	assertGone(t, s, n1, p1, a)
	assertGone(t, s, n2, p2, b, c)
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func TestPortMappingFromLoopback(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	n, p := testNetwork(t, s, TypeNAT)
	port := freePort(t)
	nat, _ := json.Marshal(NatPolicy{Type: "NAT", Protocol: "TCP", InternalPort: 8080, ExternalPort: port})
	qos, _ := json.Marshal(QosPolicy{Type: "QOS", MaximumOutgoingBandwidthInBytes: 10 << 20})
	e := testEndpoint(t, s, n, Endpoint{Policies: []json.RawMessage{nat, qos}})
	if len(e.PortMappings) != 1 || e.PortMappings[0] != (PortMapping{"tcp", port, 8080}) || e.MaxEgressBytes != 10<<20 {
		t.Errorf("policies applied: %+v, %d", e.PortMappings, e.MaxEgressBytes)
	}
	if err := s.CheckEndpoint(ctx, e.ID); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	// The bandwidth plugin shapes egress on an ifb device named from the network and
	// the container ID, with a token bucket filter.
	sum := sha512.Sum512([]byte(n.ID + e.ID))
	ifb := fmt.Sprintf("bwp%x", sum)[:15]
	if !cnitest.LinkExists(t, ifb) {
		t.Errorf("no ifb device %s for the QOS policy", ifb)
	} else if out, err := exec.Command("tc", "qdisc", "show", "dev", ifb).CombinedOutput(); err != nil || !strings.Contains(string(out), "tbf") {
		t.Errorf("tc qdisc show dev %s: %v\n%s", ifb, err, out)
	}

	www := t.TempDir()
	body := "served from endpoint " + e.ID + "\n"
	os.WriteFile(filepath.Join(www, "index.html"), []byte(body), 0o644)
	httpd := exec.Command("nsenter", "--net="+e.NetNS, "busybox", "httpd", "-f", "-p", "8080", "-h", www)
	if err := httpd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		proctest.KillWait(httpd.Process.Pid, proctest.Timeout)
		httpd.Wait()
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/index.html", port)
	var got []byte
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var resp *http.Response
		client := http.Client{Timeout: 2 * time.Second}
		if resp, err = client.Get(url); err == nil {
			got, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == 200 {
				break
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
	}
	if err != nil || string(got) != body {
		t.Errorf("GET %s through the port mapping: %q, %v; want %q", url, got, err, body)
	}
	if err := s.DeleteEndpoint(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	assertGone(t, s, n, p, e)
	if cnitest.LinkExists(t, ifb) {
		t.Errorf("ifb device %s left", ifb)
	}
	if l := cnitest.IPTablesMentions(t, false, fmt.Sprintf("--dport %d ", port)); len(l) > 0 {
		t.Errorf("port mapping left: %q", l)
	}
}

// TestCrash kills a process making an endpoint after the namespace is bound and
// before ADD, and after ADD before the record says so; the next open leaves nothing.
func TestCrash(t *testing.T) {
	for _, step := range []string{"netns", "added"} {
		t.Run(step, func(t *testing.T) {
			s := testStore(t)
			ctx := context.Background()
			n, p := testNetwork(t, s, TypeNAT)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+step, "HNS_TEST_NETWORK="+n.ID)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(out).ReadString('\n')
			if line != "ready\n" {
				proctest.KillWait(cmd.Process.Pid, proctest.Timeout)
				cmd.Wait()
				t.Fatalf("child: %q", line)
			}
			if err := proctest.KillWait(cmd.Process.Pid, proctest.Timeout); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			recs, err := s.endpointRecords()
			if err != nil || len(recs) != 1 || recs[0].State != stateCreating || !isNetNS(recs[0].Endpoint.NetNS) {
				t.Fatalf("after the kill: records %+v, %v; want one endpoint being created, with its namespace", recs, err)
			}
			left := recs[0].Endpoint
			if step == "added" {
				if len(cnitest.IPTablesMentions(t, false, left.ID)) == 0 {
					t.Errorf("ADD made no iptables rules for %s", left.ID)
				}
			}
			// Listing does not show it; the next open removes it.
			if eps, _ := s.Endpoints(ctx, ""); len(eps) != 0 {
				t.Errorf("endpoints listed: %+v", eps)
			}
			s2, err := Open(ctx, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s2.DeleteNetwork(ctx, n.ID); err != nil {
				t.Fatal(err)
			}
			left.HostInterface = "" // unknown: the result was never recorded
			assertGone(t, s2, n, p, &left)
		})
	}
}

// TestNamespaceGone: an endpoint whose namespace went away (a reboot, an unmount) is
// removed at the next open, its address lease and rules with it.
func TestNamespaceGone(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	n, p := testNetwork(t, s, TypeNAT)
	e := testEndpoint(t, s, n, Endpoint{Name: "gone"})
	if err := removeNetNS(e.NetNS); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Endpoint(ctx, e.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("endpoint without namespace after open: %v, want ErrNotFound", err)
	}
	if err := s2.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	assertGone(t, s2, n, p, e)
}

// TestIPv6Transparent: a transparent network (no gateway) on an IPv6 subnet; its
// endpoints reach each other and nothing is left.
func TestIPv6Transparent(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	v4 := cnitest.Subnet(t).Addr().As4()
	p := netip.MustParsePrefix(fmt.Sprintf("fd00:231:%x::/64", v4[2]))
	n, err := s.CreateNetwork(ctx, Network{Name: "v6-" + p.String(), Type: TypeTransparent, Subnets: []Subnet{{AddressPrefix: p.String()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.DeleteNetwork(ctx, n.ID) })
	a := testEndpoint(t, s, n, Endpoint{})
	b := testEndpoint(t, s, n, Endpoint{})
	if !p.Contains(addrOf(t, a)) || a.PrefixLength != 64 {
		t.Errorf("endpoint a: %s/%d, want in %s", a.IPAddress, a.PrefixLength, p)
	}
	// IPv6 duplicate address detection may hold the address for a moment.
	ok := false
	for i := 0; i < 5 && !ok; i++ {
		ok = cnitest.Ping(t, a.NetNS, addrOf(t, b), 2*time.Second)
	}
	if !ok {
		t.Error("IPv6 endpoints do not reach each other")
	}
	for _, e := range []*Endpoint{a, b} {
		if err := s.CheckEndpoint(ctx, e.ID); err != nil {
			t.Errorf("CHECK: %v", err)
		}
		if err := s.DeleteEndpoint(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	assertGone(t, s, n, p, a, b)
}

// TestConcurrentEndpoints: endpoints made at once on one network get distinct
// addresses and MACs from the network's pool, in order.
func TestConcurrentEndpoints(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	p := cnitest.Subnet(t)
	n, err := s.CreateNetwork(ctx, Network{
		Name: "pool-" + p.String(), Type: TypeL2Bridge, Subnets: []Subnet{{AddressPrefix: p.String()}},
		MacPools: []MacPool{{StartMacAddress: "00-15-5D-31-00-FE", EndMacAddress: "00-15-5D-31-01-10"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.DeleteNetwork(ctx, n.ID) })
	const count = 4
	eps := make([]*Endpoint, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i := range count {
		wg.Go(func() { eps[i], errs[i] = s.CreateEndpoint(ctx, Endpoint{VirtualNetwork: n.Name}) })
	}
	wg.Wait()
	seenIP, seenMAC := map[string]bool{}, map[string]bool{}
	for i := range count {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		seenIP[eps[i].IPAddress.String()] = true
		seenMAC[eps[i].MacAddress] = true
		if !strings.HasPrefix(eps[i].MacAddress, "00:15:5d:31:0") {
			t.Errorf("MAC %s is not from the pool", eps[i].MacAddress)
		}
	}
	if len(seenIP) != count || len(seenMAC) != count {
		t.Errorf("addresses %v, MACs %v: want %d distinct", seenIP, seenMAC, count)
	}
	if !seenMAC["00:15:5d:31:00:fe"] || !seenMAC["00:15:5d:31:01:01"] {
		t.Errorf("MACs %v: want the pool's first four, across the byte boundary", seenMAC)
	}
	for _, e := range eps {
		if err := s.DeleteEndpoint(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	assertGone(t, s, n, p, eps...)
}

// TestCrashDeletingNetwork: a network whose removal was cut short (its record says
// "deleting", its bridge is still there) is removed at the next open.
func TestCrashDeletingNetwork(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	n, p := testNetwork(t, s, TypeNAT)
	e := testEndpoint(t, s, n, Endpoint{})
	if err := s.DeleteEndpoint(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if !cnitest.LinkExists(t, n.Bridge) {
		t.Fatalf("bridge %s missing after the endpoint went", n.Bridge)
	}
	r, err := s.findNetwork(n.ID)
	if err != nil {
		t.Fatal(err)
	}
	r.State = stateDeleting
	if err := writeRecord(s.networkFile(n.ID), r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Network(ctx, n.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("a network being deleted is found: %v", err)
	}
	s2, err := Open(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	assertGone(t, s2, n, p, e)
}

// TestSubnetOverlapsHostRoute: a network on a subnet the host routes elsewhere is
// refused, naming the route.
func TestSubnetOverlapsHostRoute(t *testing.T) {
	s := testStore(t)
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var dst string
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if ones, _ := r.Dst.Mask.Size(); ones > 0 && ones < 31 {
			dst = r.Dst.String()
			break
		}
	}
	if dst == "" {
		t.Skip("the host has no IPv4 route to overlap")
	}
	_, err = s.CreateNetwork(context.Background(), Network{Name: "overlap", Type: TypeNAT, Subnets: []Subnet{{AddressPrefix: dst}}})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "host's route") {
		t.Errorf("network on the host's route %s: %v, want ErrInvalid naming the route", dst, err)
	}
}

// TestInternalNetwork: endpoints of an internal network reach each other and have
// a route to their subnet only.
func TestInternalNetwork(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	n, p := testNetwork(t, s, TypeInternal)
	a := testEndpoint(t, s, n, Endpoint{})
	b := testEndpoint(t, s, n, Endpoint{})
	if !cnitest.Ping(t, a.NetNS, addrOf(t, b), 5*time.Second) {
		t.Error("endpoints of an internal network do not reach each other")
	}
	out, err := cnitest.InNetNS(ctx, a.NetNS, "ip", "route")
	if err != nil || strings.Contains(string(out), "default") || !strings.Contains(string(out), p.String()) {
		t.Errorf("routes of an internal endpoint: %v\n%s", err, out)
	}
	if err := s.CheckEndpoint(ctx, a.ID); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	for _, e := range []*Endpoint{a, b} {
		if err := s.DeleteEndpoint(ctx, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	assertGone(t, s, n, p, a, b)
}

// TestDeleteRetry: an endpoint whose removal failed half way (its record says
// "deleting") is hidden, and a second DeleteEndpoint finishes it.
func TestDeleteRetry(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	n, p := testNetwork(t, s, TypeNAT)
	e := testEndpoint(t, s, n, Endpoint{Name: "retry"})
	r, err := s.findEndpoint(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	r.State = stateDeleting
	if err := writeRecord(s.endpointFile(e.ID), r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Endpoint(ctx, "retry"); !errors.Is(err, ErrNotFound) {
		t.Errorf("an endpoint being deleted is found: %v", err)
	}
	if err := s.DeleteEndpoint(ctx, "retry"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	assertGone(t, s, n, p, e)
}

// TestDeleteWhileOthersChangeIPTables deletes endpoints and networks while another
// CNI user of the host creates and removes its own chains, as a second runtime does:
// iptables-nft takes no lock, so the cleanup's reads catch those chains half made.
func TestDeleteWhileOthersChangeIPTables(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	ipt, err := iptables.New()
	if err != nil {
		t.Skipf("iptables: %v", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			chain := fmt.Sprintf("CNI-%012x%012x", os.Getpid(), i)
			comment := []string{"-m", "comment", "--comment", "other runtime"}
			_ = ipt.NewChain("nat", chain)
			_ = ipt.Append("nat", chain, append([]string{"-d", "10.255.254.0/24"}, append(comment, "-j", "ACCEPT")...)...)
			_ = ipt.Append("nat", chain, append([]string{"!", "-d", "224.0.0.0/4"}, append(comment, "-j", "MASQUERADE")...)...)
			_ = ipt.ClearAndDeleteChain("nat", chain)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for round := 0; round < 3; round++ {
		n, p := testNetwork(t, s, TypeNAT)
		e := testEndpoint(t, s, n, Endpoint{})
		if err := s.DeleteEndpoint(ctx, e.ID); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := s.DeleteNetwork(ctx, n.ID); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		assertGone(t, s, n, p, e)
	}
}
