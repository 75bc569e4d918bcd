package hns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// CreateNetwork stores a new network from n (its ID is ignored and assigned) and
// returns it. Nothing changes in the kernel until an endpoint joins it.
func (s *Store) CreateNetwork(ctx context.Context, n Network) (*Network, error) {
	fail := func(err error) (*Network, error) {
		return nil, &Error{Op: "create network", ID: n.Name, Err: err}
	}
	if err := s.validateNetwork(&n); err != nil {
		return fail(err)
	}
	unlock, err := s.lock()
	if err != nil {
		return fail(err)
	}
	defer unlock()
	recs, err := s.networkRecords()
	if err != nil {
		return fail(err)
	}
	for _, r := range recs {
		if strings.EqualFold(r.Network.Name, n.Name) {
			return fail(fmt.Errorf("%w: network %q is %s", ErrExists, n.Name, r.Network.ID))
		}
		if err := overlaps(n.Subnets, r.Network.Subnets); err != nil {
			return fail(fmt.Errorf("%w with network %q (%s)", err, r.Network.Name, r.Network.ID))
		}
	}
	for _, p := range subnetPrefixes(n.Subnets) {
		if err := routeOverlap(p); err != nil {
			return fail(err)
		}
	}
	n.ID = newID()
	n.Bridge = bridgeName(n.ID)
	conf, err := s.conflist(&n)
	if err != nil {
		return fail(err)
	}
	n.CNIConfig = conf
	if _, err := libcniConfList(conf); err != nil {
		return fail(err)
	}
	if err := writeRecord(s.networkFile(n.ID), networkRecord{Version: recordVersion, State: stateReady, Network: n}); err != nil {
		return fail(err)
	}
	return &n, nil
}

// bridgeName names the Linux bridge of network id: "hcs" and 12 hex digits (15
// characters, the kernel's limit).
func bridgeName(id string) string {
	return "hcs" + strings.ReplaceAll(id, "-", "")[:12]
}

// Network returns the network with the given ID (without regard to case) or name.
func (s *Store) Network(ctx context.Context, idOrName string) (*Network, error) {
	r, err := s.findNetwork(idOrName)
	if err != nil {
		return nil, &Error{Op: "get network", ID: idOrName, Err: err}
	}
	return &r.Network, nil
}

func (s *Store) findNetwork(idOrName string) (*networkRecord, error) {
	return s.findNetworkIn(idOrName, stateReady)
}

// findNetworkIn finds a network whose record is in one of states.
func (s *Store) findNetworkIn(idOrName string, states ...string) (*networkRecord, error) {
	if idOrName == "" {
		return nil, invalidf("no network ID or name")
	}
	if validID(idOrName) {
		var r networkRecord
		err := readRecord(s.networkFile(strings.ToLower(idOrName)), &r)
		if err == nil && slices.Contains(states, r.State) {
			return &r, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	recs, err := s.networkRecords()
	if err != nil {
		return nil, err
	}
	for i := range recs {
		if slices.Contains(states, recs[i].State) && recs[i].Network.Name == idOrName {
			return &recs[i], nil
		}
	}
	return nil, fmt.Errorf("%w: no network %q", ErrNotFound, idOrName)
}

// validID reports whether id has the form of the IDs the store assigns (a GUID).
func validID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i, c := range id {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// Networks lists the networks, by ID.
func (s *Store) Networks(ctx context.Context) ([]Network, error) {
	recs, err := s.networkRecords()
	if err != nil {
		return nil, &Error{Op: "list networks", Err: err}
	}
	nets := []Network{}
	for _, r := range recs {
		if r.State == stateReady {
			nets = append(nets, r.Network)
		}
	}
	return nets, nil
}

// DeleteNetwork removes a network that has no endpoints: its record, its bridge, the
// iptables rules that name the bridge and its address leases.
func (s *Store) DeleteNetwork(ctx context.Context, idOrName string) error {
	fail := func(err error) error { return &Error{Op: "delete network", ID: idOrName, Err: err} }
	unlock, err := s.lock()
	if err != nil {
		return fail(err)
	}
	defer unlock()
	// A removal that failed half way (its record says so) can be retried.
	r, err := s.findNetworkIn(idOrName, stateReady, stateDeleting)
	if err != nil {
		return fail(err)
	}
	eps, err := s.endpointRecords()
	if err != nil {
		return fail(err)
	}
	for _, e := range eps {
		if e.Endpoint.VirtualNetwork == r.Network.ID {
			return fail(fmt.Errorf("%w: endpoint %s is on it", ErrInUse, e.Endpoint.ID))
		}
	}
	r.State = stateDeleting
	if err := writeRecord(s.networkFile(r.Network.ID), r); err != nil {
		return fail(err)
	}
	if err := s.teardownNetwork(ctx, r); err != nil {
		return fail(err)
	}
	return nil
}

// teardownNetwork removes what a network left in the kernel and on disk, then its
// record.
func (s *Store) teardownNetwork(ctx context.Context, r *networkRecord) error {
	if err := removeBridge(r.Network.Bridge); err != nil {
		return err
	}
	if err := removeIPTablesRules(r.Network.Bridge, subnetPrefixes(r.Network.Subnets)); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(s.ipamDir(), r.Network.ID)); err != nil {
		return err
	}
	return removeFile(s.networkFile(r.Network.ID))
}

func subnetPrefixes(subs []Subnet) []netip.Prefix {
	var ps []netip.Prefix
	for _, sn := range subs {
		if p, err := netip.ParsePrefix(sn.AddressPrefix); err == nil {
			ps = append(ps, p.Masked())
		}
	}
	return ps
}

// validateNetwork checks a network request and normalises it (type in lower case,
// prefixes masked).
func (s *Store) validateNetwork(n *Network) error {
	if strings.TrimSpace(n.Name) == "" {
		return invalidf("the network has no Name")
	}
	if len(n.Name) > 255 || strings.ContainsFunc(n.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return invalidf("network Name %q: at most 255 characters, no control characters", n.Name)
	}
	switch t := strings.ToLower(n.Type); t {
	case TypeNAT, TypeL2Bridge, TypeTransparent, TypeInternal, TypePrivate:
		n.Type = t
	case "":
		return invalidf("network %q has no Type (nat, l2bridge or transparent)", n.Name)
	default:
		return unsupportedf("network Type %q (Linux supports nat, l2bridge, transparent, internal and private)", n.Type)
	}
	if n.NetworkAdapterName != "" {
		return unsupportedf("NetworkAdapterName %q: attaching a host adapter to a network's bridge", n.NetworkAdapterName)
	}
	if n.SourceMac != "" {
		return unsupportedf("SourceMac %q: a network has no host adapter here", n.SourceMac)
	}
	if len(n.Policies) > 0 {
		if err := networkPolicies(n.Policies); err != nil {
			return err
		}
	}
	if len(n.Subnets) == 0 {
		return invalidf("network %q has no Subnets", n.Name)
	}
	for i := range n.Subnets {
		sn := &n.Subnets[i]
		p, err := netip.ParsePrefix(sn.AddressPrefix)
		if err != nil {
			return invalidf("Subnets[%d].AddressPrefix %q: %v", i, sn.AddressPrefix, err)
		}
		if p.Bits() > p.Addr().BitLen()-2 {
			return invalidf("Subnets[%d].AddressPrefix %q leaves no address for endpoints", i, sn.AddressPrefix)
		}
		sn.AddressPrefix = p.Masked().String()
		if sn.GatewayAddress != "" {
			g, err := netip.ParseAddr(sn.GatewayAddress)
			if err != nil {
				return invalidf("Subnets[%d].GatewayAddress %q: %v", i, sn.GatewayAddress, err)
			}
			if !p.Masked().Contains(g) || g == p.Masked().Addr() {
				return invalidf("Subnets[%d].GatewayAddress %s is not a host address of %s", i, g, p.Masked())
			}
		}
		if err := overlaps(n.Subnets[:i], n.Subnets[i:i+1]); err != nil {
			return err
		}
	}
	if err := validDNS(n.DNSServerList, "DNSServerList"); err != nil {
		return err
	}
	for i, mp := range n.MacPools {
		start, err1 := net.ParseMAC(mp.StartMacAddress)
		end, err2 := net.ParseMAC(mp.EndMacAddress)
		if err1 != nil || err2 != nil || len(start) != 6 || len(end) != 6 || macInt(start) > macInt(end) {
			return invalidf("MacPools[%d]: want two 48-bit MAC addresses, start <= end, got %q-%q", i, mp.StartMacAddress, mp.EndMacAddress)
		}
	}
	return nil
}

// overlaps returns an error matching ErrInvalid if a prefix of a overlaps one of b.
func overlaps(a, b []Subnet) error {
	for _, x := range a {
		px, err := netip.ParsePrefix(x.AddressPrefix)
		if err != nil {
			continue
		}
		for _, y := range b {
			py, err := netip.ParsePrefix(y.AddressPrefix)
			if err == nil && px.Overlaps(py) {
				return invalidf("subnet %s overlaps %s", py.Masked(), px.Masked())
			}
		}
	}
	return nil
}

func validDNS(list, field string) error {
	for _, a := range splitList(list) {
		if _, err := netip.ParseAddr(a); err != nil {
			return invalidf("%s: %q is not an IP address", field, a)
		}
	}
	return nil
}

// splitList splits HNS's comma-separated lists.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func macInt(m net.HardwareAddr) uint64 {
	var v uint64
	for _, b := range m {
		v = v<<8 | uint64(b)
	}
	return v
}

func intMAC(v uint64) net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	for i := 5; i >= 0; i-- {
		m[i] = byte(v)
		v >>= 8
	}
	return m
}

// policyType reads the Type of a raw policy.
func policyType(raw json.RawMessage) (string, error) {
	var p struct{ Type string }
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", invalidf("policy %s: %v", raw, err)
	}
	return p.Type, nil
}

// networkPolicies checks a network's policies: Linux has none of HNS's network
// policies here.
func networkPolicies(ps []json.RawMessage) error {
	for i, raw := range ps {
		t, err := policyType(raw)
		if err != nil {
			return err
		}
		switch strings.ToUpper(t) {
		case PolicyVLAN:
			var v VlanPolicy
			json.Unmarshal(raw, &v)
			return unsupportedf("network Policies[%d]: VLAN %d (no VLAN tagging of a network's bridge)", i, v.VLAN)
		case PolicyVSID:
			var v VsidPolicy
			json.Unmarshal(raw, &v)
			return unsupportedf("network Policies[%d]: VSID %d (no virtual subnets)", i, v.VSID)
		default:
			return unsupportedf("network Policies[%d]: policy type %q", i, t)
		}
	}
	return nil
}

// conflist builds the CNI configuration list of network n.
func (s *Store) conflist(n *Network) (json.RawMessage, error) {
	var ranges []map[string]string
	var routes []map[string]string
	v4, v6 := false, false
	for _, sn := range n.Subnets {
		r := map[string]string{"subnet": sn.AddressPrefix}
		if sn.GatewayAddress != "" {
			r["gateway"] = sn.GatewayAddress
		}
		ranges = append(ranges, r)
		p := netip.MustParsePrefix(sn.AddressPrefix)
		if p.Addr().Is4() && !v4 {
			v4 = true
			routes = append(routes, map[string]string{"dst": "0.0.0.0/0"})
		} else if p.Addr().Is6() && !v6 {
			v6 = true
			routes = append(routes, map[string]string{"dst": "::/0"})
		}
	}
	ipam := map[string]any{
		"type":    "host-local",
		"dataDir": s.ipamDir(),
		"ranges":  [][]map[string]string{ranges},
	}
	// The bridge is the endpoints' gateway except on transparent and private
	// networks; internal networks reach the host but have no route beyond.
	gateway := n.Type != TypeTransparent && n.Type != TypePrivate
	if gateway && n.Type != TypeInternal {
		ipam["routes"] = routes
	}
	list := map[string]any{
		"cniVersion": cniVersion,
		"name":       n.ID,
		"plugins": []any{
			map[string]any{
				"type":         "bridge",
				"bridge":       n.Bridge,
				"isGateway":    gateway,
				"ipMasq":       n.Type == TypeNAT,
				"hairpinMode":  true,
				"capabilities": map[string]bool{"ips": true},
				"ipam":         ipam,
			},
			map[string]any{"type": "firewall", "backend": "iptables", "ingressPolicy": "same-bridge"},
			map[string]any{"type": "tuning", "capabilities": map[string]bool{"mac": true}},
			map[string]any{"type": "portmap", "backend": "iptables", "snat": true, "capabilities": map[string]bool{"portMappings": true}},
			map[string]any{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}},
		},
	}
	return json.Marshal(list)
}

// cniVersion is the CNI specification version of the configuration lists.
const cniVersion = "1.0.0"
