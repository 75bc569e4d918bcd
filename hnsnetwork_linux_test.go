package hostcompute

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/hns"
	"github.com/hostcompute/hostcompute/internal/cnitest"
)

// TestHNSRequests drives the seed API with the JSON bodies hcsshim sends: a nat
// network, two endpoints that reach each other, GET, list, DELETE, and requests that
// must be refused. Nothing is left afterwards.
func TestHNSRequests(t *testing.T) {
	cnitest.Setup(t)
	t.Setenv("HOSTCOMPUTE_HNS_STATE_DIR", t.TempDir())
	t.Setenv("HOSTCOMPUTE_NETNS_DIR", t.TempDir())
	p := cnitest.Subnet(t)
	gw := p.Addr().Next()
	name := "seed-" + p.Addr().String()
	req := fmt.Sprintf(`{"Name":%q,"Type":"nat","Subnets":[{"AddressPrefix":%q,"GatewayAddress":%q}],"DNSServerList":%q}`, name, p, gw, gw)
	n, err := HNSNetworkRequest("POST", "", req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { HNSNetworkRequest("DELETE", n.Id, "") })
	if n.Id == "" || n.Name != name || n.Type != "nat" || len(n.Subnets) != 1 || n.Subnets[0].GatewayAddress != gw.String() {
		t.Errorf("created network %+v", n)
	}
	if _, err := HNSNetworkRequest("POST", "", req); !errors.Is(err, hns.ErrExists) {
		t.Errorf("second network named %s: %v, want ErrExists", name, err)
	}

	var eps []*HNSEndpoint
	for i, body := range []string{
		fmt.Sprintf(`{"Name":"web","VirtualNetwork":%q}`, strings.ToUpper(n.Id)),
		fmt.Sprintf(`{"Name":"db","VirtualNetworkName":%q,"MacAddress":"00-15-5D-52-C0-10"}`, name),
	} {
		e, err := HNSEndpointRequest("POST", "", body)
		if err != nil {
			t.Fatalf("endpoint %d: %v", i, err)
		}
		t.Cleanup(func() { HNSEndpointRequest("DELETE", e.Id, "") })
		if e.VirtualNetwork != n.Id || e.VirtualNetworkName != name || e.IPAddress == nil || e.PrefixLength != 24 || e.GatewayAddress != gw.String() || e.DNSServerList != gw.String() {
			t.Errorf("endpoint %d: %+v", i, e)
		}
		eps = append(eps, e)
	}
	if eps[1].MacAddress != "00:15:5d:52:c0:10" {
		t.Errorf("MAC address %q, want the one asked for", eps[1].MacAddress)
	}
	b, err := json.Marshal(eps[0])
	if err != nil || !strings.Contains(string(b), `"Id":`) || !strings.Contains(string(b), `"IPAddress":`) {
		t.Errorf("JSON %s, %v", b, err)
	}

	netns, resolv, err := hns.EndpointNamespacePath(eps[0].Id)
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := os.ReadFile(resolv); err != nil || !strings.Contains(string(rc), "nameserver "+gw.String()) {
		t.Errorf("resolv.conf %s: %q, %v", resolv, rc, err)
	}
	other, _ := netip.AddrFromSlice(eps[1].IPAddress)
	if !cnitest.Ping(t, netns, other.Unmap(), 5*time.Second) {
		t.Error("the endpoints do not reach each other")
	}
	st, err := hns.EndpointStats(eps[0].Id)
	if err != nil || st.PacketsSent == 0 || st.BytesReceived == 0 {
		t.Errorf("statistics %+v, %v", st, err)
	}

	got, err := HNSEndpointRequest("GET", eps[1].Id, "")
	if err != nil || got.Id != eps[1].Id || !got.IPAddress.Equal(eps[1].IPAddress) {
		t.Errorf("GET endpoint: %+v, %v", got, err)
	}
	if list, err := HNSListEndpointRequest("GET", "", ""); err != nil || len(list) != 2 {
		t.Errorf("endpoints listed: %+v, %v", list, err)
	}
	if list, err := HNSListNetworkRequest("GET", "", ""); err != nil || len(list) != 1 || list[0].Id != n.Id {
		t.Errorf("networks listed: %+v, %v", list, err)
	}

	for _, tc := range []struct {
		method, path, body string
		want               error
	}{
		{"POST", "", `{"Name":"x","Type":"overlay","Subnets":[{"AddressPrefix":"10.232.0.0/24"}]}`, errors.ErrUnsupported},
		{"POST", "", `{"Name":"x","Type":"nat","Policies":[{"Type":"VLAN","VLAN":5}],"Subnets":[{"AddressPrefix":"10.232.0.0/24"}]}`, errors.ErrUnsupported},
		{"POST", "", `{"Name":"x","Type":"nat","ManagementIP":"10.0.0.1","Subnets":[{"AddressPrefix":"10.232.0.0/24"}]}`, errors.ErrUnsupported},
		{"POST", "", `{"Name":"x","Type":"nat"`, hns.ErrInvalid},
		{"GET", "", "", hns.ErrInvalid},
		{"GET", "00000000-0000-4000-8000-000000000000", "", os.ErrNotExist},
		{"DELETE", n.Id, "", hns.ErrInUse},
		{"POST", n.Id + "/attach", "{}", errors.ErrUnsupported},
	} {
		if _, err := HNSNetworkRequest(tc.method, tc.path, tc.body); !errors.Is(err, tc.want) {
			t.Errorf("%s networks/%s %s: %v, want %v", tc.method, tc.path, tc.body, err, tc.want)
		}
	}
	if _, err := HNSEndpointRequest("POST", "", `{"VirtualNetwork":"`+n.Id+`","Policies":[{"Type":"VSID","VSID":1}]}`); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("VSID policy: %v", err)
	}
	if _, err := HNSEndpointRequest("POST", "", `{"VirtualNetwork":"`+n.Id+`","VirtualNetworkName":"other"}`); !errors.Is(err, hns.ErrInvalid) {
		t.Errorf("VirtualNetwork and VirtualNetworkName naming different networks: %v, want ErrInvalid", err)
	}
	if _, err := HNSEndpointRequest("POST", "", `{"VirtualNetwork":"`+n.Id+`","IPAddress":"10.0.0.1"}`); !errors.Is(err, hns.ErrInvalid) {
		t.Errorf("IPAddress outside the subnets: %v, want ErrInvalid", err)
	}
	if _, err := HNSEndpointRequest("GET", "nothing", ""); !IsNotExist(err) {
		t.Errorf("GET of a missing endpoint: %v, want IsNotExist", err)
	}

	for _, e := range eps {
		if _, err := HNSEndpointRequest("DELETE", e.Id, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(netnsOf(t, e.Id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace of %s left: %v", e.Id, err)
		}
	}
	if _, err := HNSNetworkRequest("DELETE", n.Id, ""); err != nil {
		t.Fatal(err)
	}
	words := []string{n.Id, eps[0].Id, eps[1].Id, strings.TrimSuffix(p.Addr().String(), "0")}
	if left := cnitest.IPTablesMentions(t, false, words...); len(left) > 0 {
		t.Errorf("iptables left: %q", left)
	}
	if list, err := HNSListNetworkRequest("GET", "", ""); err != nil || len(list) != 0 {
		t.Errorf("networks left: %+v, %v", list, err)
	}
}

func netnsOf(t *testing.T, id string) string {
	return os.Getenv("HOSTCOMPUTE_NETNS_DIR") + "/hcs-" + id
}
