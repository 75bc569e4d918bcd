package hostcompute_test

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	hcsshim "github.com/hostcompute/hostcompute"
	"github.com/hostcompute/hostcompute/internal/cnitest"
)

// TestContainersOnOneNetwork: two containers join two endpoints of one network
// (ContainerConfig.EndpointList); one pings the other, whose Statistics show the
// network counters rising.
func TestContainersOnOneNetwork(t *testing.T) {
	cnitest.Setup(t)
	if _, err := os.Stat("/usr/sbin/runc"); err != nil {
		if _, err := os.Stat("/usr/bin/runc"); err != nil {
			t.Skip("needs runc (scripts/install-deps.sh installs it)")
		}
	}
	t.Setenv("HOSTCOMPUTE_HNS_STATE_DIR", t.TempDir())
	t.Setenv("HOSTCOMPUTE_NETNS_DIR", t.TempDir())
	p := cnitest.Subnet(t)
	n, err := hcsshim.HNSNetworkRequest("POST", "", fmt.Sprintf(`{"Name":"ctr-%s","Type":"nat","Subnets":[{"AddressPrefix":%q}]}`, p.Addr(), p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hcsshim.HNSNetworkRequest("DELETE", n.Id, "") })
	var eps []*hcsshim.HNSEndpoint
	for range 2 {
		e, err := hcsshim.HNSEndpointRequest("POST", "", fmt.Sprintf(`{"VirtualNetwork":%q,"DNSServerList":"192.0.2.53","DNSSuffix":"corp.example"}`, n.Id))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hcsshim.HNSEndpointRequest("DELETE", e.Id, "") })
		eps = append(eps, e)
	}

	dir := t.TempDir()
	base, err := busyboxLayer(filepath.Join(dir, "base"))
	if err != nil {
		t.Fatal(err)
	}
	start := func(name string, ep *hcsshim.HNSEndpoint, cmdline string) (hcsshim.Container, hcsshim.Process, io.ReadCloser) {
		t.Helper()
		id := fmt.Sprintf("hns-%s-%d", name, time.Now().UnixNano())
		c, err := hcsshim.CreateContainer(id, &hcsshim.ContainerConfig{
			SystemType: "Container", Name: id, LayerFolderPath: filepath.Join(dir, name),
			Layers:       []hcsshim.Layer{{ID: "8e3c5f2a-0000-0000-0000-0000000000a1", Path: base}},
			HostName:     name,
			EndpointList: []string{ep.Id},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c.Terminate()
			c.WaitTimeout(30 * time.Second)
			c.Close()
		})
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		pr, err := c.CreateProcess(&hcsshim.ProcessConfig{CommandLine: cmdline, CreateStdOutPipe: true, CreateStdErrPipe: true})
		if err != nil {
			t.Fatal(err)
		}
		_, stdout, _, err := pr.Stdio()
		if err != nil {
			t.Fatal(err)
		}
		return c, pr, stdout
	}

	server, _, _ := start("server", eps[0], "sh -c 'ip addr show eth0; sleep 60'")
	before, err := server.Statistics()
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Network) != 1 || before.Network[0].EndpointId != eps[0].Id {
		t.Fatalf("server statistics: network %+v, want its endpoint's", before.Network)
	}
	_, cp, out := start("client", eps[1], fmt.Sprintf("sh -c 'cat /etc/resolv.conf; ip addr show eth0; ping -c 3 -W 5 %s'", eps[0].IPAddress))
	got, _ := io.ReadAll(out)
	if err := cp.WaitTimeout(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	code, err := cp.ExitCode()
	t.Logf("client output (exit %d, %v):\n%s", code, err, got)
	if code != 0 || !strings.Contains(string(got), "3 packets received") {
		t.Errorf("the client container did not reach the server container")
	}
	if !strings.Contains(string(got), "nameserver 192.0.2.53") || !strings.Contains(string(got), "corp.example") {
		t.Errorf("the client container's /etc/resolv.conf does not hold its endpoint's DNS settings")
	}
	after, err := server.Statistics()
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Network) != 1 || after.Network[0].PacketsReceived < before.Network[0].PacketsReceived+3 || after.Network[0].BytesSent <= before.Network[0].BytesSent {
		t.Errorf("server network counters: before %+v, after %+v; want at least 3 more packets in and bytes out", before.Network, after.Network)
	}

	ip, _ := netip.AddrFromSlice(eps[0].IPAddress)
	if _, err := hcsshim.CreateContainer("two-endpoints", &hcsshim.ContainerConfig{
		LayerFolderPath: filepath.Join(dir, "two"), Layers: []hcsshim.Layer{{ID: "8e3c5f2a-0000-0000-0000-0000000000a1", Path: base}},
		EndpointList: []string{eps[0].Id, eps[1].Id},
	}); err == nil {
		t.Errorf("a container on two endpoints (%s and another) was created", ip)
	}
}
