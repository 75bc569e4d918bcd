package hns_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hostcompute/hostcompute/hns"
)

// A nat network with one endpoint that publishes its port 80 on the host's port
// 8080, and what a container needs to join it. It needs root, iptables and the CNI
// plugins, so it is compiled, not run.
func Example() {
	ctx := context.Background()
	s, err := hns.Open(ctx, hns.Options{}) // $HOSTCOMPUTE_HNS_STATE_DIR or /run/hostcompute/hns
	if err != nil {
		fmt.Println(err)
		return
	}
	n, err := s.CreateNetwork(ctx, hns.Network{
		Name: "web", Type: hns.TypeNAT,
		Subnets: []hns.Subnet{{AddressPrefix: "10.231.5.0/24", GatewayAddress: "10.231.5.1"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.DeleteNetwork(ctx, n.ID)
	e, err := s.CreateEndpoint(ctx, hns.Endpoint{
		VirtualNetwork: n.ID,
		Policies:       []json.RawMessage{[]byte(`{"Type":"NAT","Protocol":"TCP","InternalPort":80,"ExternalPort":8080}`)},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.DeleteEndpoint(ctx, e.ID)
	fmt.Println(e.IPAddress, e.NetNS, e.ResolvConf) // the runtime-spec's network namespace, and /etc/resolv.conf
}
