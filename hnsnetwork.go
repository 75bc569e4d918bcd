package hostcompute

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hostcompute/hostcompute/hns"
)

// HNS on Linux
//
// HNSNetworkRequest, HNSListNetworkRequest and HNSEndpointRequest take the requests
// hcsshim sends to the Host Network Service — a method, a path below "networks/" or
// "endpoints/", and a JSON body — and serve them from package hns: a network is a
// stored CNI configuration list, an endpoint a named network namespace joined to the
// network's bridge by CNI ADD. They use the default store of package hns (state in
// $HOSTCOMPUTE_HNS_STATE_DIR or /run/hostcompute/hns, plugins from
// $HOSTCOMPUTE_CNI_PATH). Requests that cannot be served return errors matching
// hns.ErrInvalid, hns.ErrUnsupported (and errors.ErrUnsupported) or hns.ErrNotFound
// (and fs.ErrNotExist, so IsNotExist is true).
//
// Served requests:
//
//	POST   networks/       body: HNSNetwork       creates a network
//	GET    networks/<id>                          the network (ID or name)
//	GET    networks/       (HNSListNetworkRequest) every network
//	DELETE networks/<id>                          removes it (it must have no endpoints)
//	POST   endpoints/      body: HNSEndpoint      creates an endpoint
//	GET    endpoints/<id>                         the endpoint (ID or name)
//	GET    endpoints/      (HNSListEndpointRequest) every endpoint
//	DELETE endpoints/<id>                         removes it

// HNSNetwork represents a network in HNS.
type HNSNetwork struct {
	Id                 string            `json:",omitempty"`
	Name               string            `json:",omitempty"`
	Type               string            `json:",omitempty"`
	NetworkAdapterName string            `json:",omitempty"`
	SourceMac          string            `json:",omitempty"`
	Policies           []json.RawMessage `json:",omitempty"`
	MacPools           []MacPool         `json:",omitempty"`
	Subnets            []Subnet          `json:",omitempty"`
	DNSSuffix          string            `json:",omitempty"`
	DNSServerList      string            `json:",omitempty"`
}

func networkFromHNS(n *hns.Network) *HNSNetwork {
	return &HNSNetwork{
		Id: n.ID, Name: n.Name, Type: n.Type, NetworkAdapterName: n.NetworkAdapterName,
		SourceMac: n.SourceMac, Policies: n.Policies, MacPools: n.MacPools, Subnets: n.Subnets,
		DNSSuffix: n.DNSSuffix, DNSServerList: n.DNSServerList,
	}
}

// hnsRequest splits a request into its method (upper case) and the ID or name it
// names ("" for the collection); sub-paths such as "<id>/attach" are refused.
func hnsRequest(kind, method, path string) (string, string, error) {
	m := strings.ToUpper(method)
	p := strings.Trim(path, "/")
	if strings.Contains(p, "/") || strings.ContainsAny(p, "?#") {
		return "", "", fmt.Errorf("%w: HNS request %s %s/%s: sub-paths and queries", hns.ErrUnsupported, m, kind, path)
	}
	return m, p, nil
}

// HNSNetworkRequest makes a call into HNS to update/query a single network: POST ""
// with an HNSNetwork body creates one, GET and DELETE with its ID (or name) get and
// remove it.
func HNSNetworkRequest(method, path, request string) (*HNSNetwork, error) {
	ctx := context.Background()
	m, id, err := hnsRequest("networks", method, path)
	if err != nil {
		return nil, err
	}
	s, err := hns.Default(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case m == "POST" && id == "":
		var req HNSNetwork
		if err := decodeRequest("network", request, &req); err != nil {
			return nil, err
		}
		n, err := s.CreateNetwork(ctx, hns.Network{
			Name: req.Name, Type: req.Type, NetworkAdapterName: req.NetworkAdapterName,
			SourceMac: req.SourceMac, Policies: req.Policies, MacPools: req.MacPools,
			Subnets: req.Subnets, DNSSuffix: req.DNSSuffix, DNSServerList: req.DNSServerList,
		})
		if err != nil {
			return nil, err
		}
		return networkFromHNS(n), nil
	case m == "GET" && id != "":
		n, err := s.Network(ctx, id)
		if err != nil {
			return nil, err
		}
		return networkFromHNS(n), nil
	case m == "DELETE" && id != "":
		if err := s.DeleteNetwork(ctx, id); err != nil {
			return nil, err
		}
		return &HNSNetwork{}, nil
	case m == "GET":
		return nil, fmt.Errorf("%w: GET networks/ lists networks: use HNSListNetworkRequest", hns.ErrInvalid)
	case m == "POST":
		return nil, fmt.Errorf("%w: HNS request POST networks/%s: networks cannot be modified", hns.ErrUnsupported, id)
	}
	return nil, fmt.Errorf("%w: HNS request %s networks/%s", hns.ErrInvalid, m, id)
}

// HNSListNetworkRequest makes a HNS call to query the list of available networks: GET
// with an empty path.
func HNSListNetworkRequest(method, path, request string) ([]HNSNetwork, error) {
	ctx := context.Background()
	m, id, err := hnsRequest("networks", method, path)
	if err != nil {
		return nil, err
	}
	if m != "GET" || id != "" {
		return nil, fmt.Errorf("%w: HNS list request %s networks/%s (want GET networks/)", hns.ErrInvalid, m, id)
	}
	s, err := hns.Default(ctx)
	if err != nil {
		return nil, err
	}
	nets, err := s.Networks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]HNSNetwork, 0, len(nets))
	for i := range nets {
		out = append(out, *networkFromHNS(&nets[i]))
	}
	return out, nil
}
