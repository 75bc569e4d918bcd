package hostcompute

import (
	"context"
	"encoding/json"
	"fmt"
	"net"

	"github.com/hostcompute/hostcompute/hns"
)

// HNSEndpoint represents a network endpoint in HNS.
//
// In a POST request, VirtualNetwork (a network ID) or VirtualNetworkName names the
// network; IPAddress and MacAddress, when set, are the addresses asked for; Policies
// hold NatPolicy and QosPolicy values; DNSSuffix and DNSServerList, when set, take
// the place of the network's. GatewayAddress and PrefixLength are filled in by the
// service. Containers join an endpoint through ContainerConfig.EndpointList; the
// namespace and resolv.conf paths are hns.EndpointNamespacePath's.
type HNSEndpoint struct {
	Id                 string            `json:",omitempty"`
	Name               string            `json:",omitempty"`
	VirtualNetwork     string            `json:",omitempty"`
	VirtualNetworkName string            `json:",omitempty"`
	Policies           []json.RawMessage `json:",omitempty"`
	MacAddress         string            `json:",omitempty"`
	IPAddress          net.IP            `json:",omitempty"`
	DNSSuffix          string            `json:",omitempty"`
	DNSServerList      string            `json:",omitempty"`
	GatewayAddress     string            `json:",omitempty"`
	PrefixLength       uint8             `json:",omitempty"`
}

func endpointFromHNS(e *hns.Endpoint) *HNSEndpoint {
	return &HNSEndpoint{
		Id: e.ID, Name: e.Name, VirtualNetwork: e.VirtualNetwork, VirtualNetworkName: e.VirtualNetworkName,
		Policies: e.Policies, MacAddress: e.MacAddress, IPAddress: e.IPAddress, DNSSuffix: e.DNSSuffix,
		DNSServerList: e.DNSServerList, GatewayAddress: e.GatewayAddress, PrefixLength: e.PrefixLength,
	}
}

// HNSEndpointRequest makes a HNS call to modify/query a network endpoint: POST ""
// with an HNSEndpoint body creates one, GET and DELETE with its ID (or name) get and
// remove it.
func HNSEndpointRequest(method, path, request string) (*HNSEndpoint, error) {
	ctx := context.Background()
	m, id, err := hnsRequest("endpoints", method, path)
	if err != nil {
		return nil, err
	}
	s, err := hns.Default(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case m == "POST" && id == "":
		var req HNSEndpoint
		if err := decodeRequest("endpoint", request, &req); err != nil {
			return nil, err
		}
		e, err := s.CreateEndpoint(ctx, hns.Endpoint{
			Name: req.Name, VirtualNetwork: req.VirtualNetwork, VirtualNetworkName: req.VirtualNetworkName,
			Policies: req.Policies, MacAddress: req.MacAddress, IPAddress: req.IPAddress,
			DNSSuffix: req.DNSSuffix, DNSServerList: req.DNSServerList,
		})
		if err != nil {
			return nil, err
		}
		return endpointFromHNS(e), nil
	case m == "GET" && id != "":
		e, err := s.Endpoint(ctx, id)
		if err != nil {
			return nil, err
		}
		return endpointFromHNS(e), nil
	case m == "DELETE" && id != "":
		if err := s.DeleteEndpoint(ctx, id); err != nil {
			return nil, err
		}
		return &HNSEndpoint{}, nil
	case m == "GET":
		return nil, fmt.Errorf("%w: GET endpoints/ lists endpoints: use HNSListEndpointRequest", hns.ErrInvalid)
	case m == "POST":
		return nil, fmt.Errorf("%w: HNS request POST endpoints/%s: endpoints cannot be modified", hns.ErrUnsupported, id)
	}
	return nil, fmt.Errorf("%w: HNS request %s endpoints/%s", hns.ErrInvalid, m, id)
}

// HNSListEndpointRequest makes a HNS call to query the list of available endpoints:
// GET with an empty path. (Later hcsshim releases have it; the seed does not.)
func HNSListEndpointRequest(method, path, request string) ([]HNSEndpoint, error) {
	ctx := context.Background()
	m, id, err := hnsRequest("endpoints", method, path)
	if err != nil {
		return nil, err
	}
	if m != "GET" || id != "" {
		return nil, fmt.Errorf("%w: HNS list request %s endpoints/%s (want GET endpoints/)", hns.ErrInvalid, m, id)
	}
	s, err := hns.Default(ctx)
	if err != nil {
		return nil, err
	}
	eps, err := s.Endpoints(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]HNSEndpoint, 0, len(eps))
	for i := range eps {
		out = append(out, *endpointFromHNS(&eps[i]))
	}
	return out, nil
}
