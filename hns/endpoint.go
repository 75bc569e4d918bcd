package hns

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// ifName is the endpoint's interface inside its namespace.
const ifName = "eth0"

// stepHook, when set (by tests), runs after each step of making an endpoint
// ("netns": the namespace is bound, ADD has not run; "added": ADD succeeded, the
// record does not say so yet), so that a test can kill the process there.
var stepHook func(step string)

// CreateEndpoint makes an endpoint on the network named by e.VirtualNetwork (an ID)
// or e.VirtualNetworkName: a network namespace and CNI ADD into it. e.IPAddress and
// e.MacAddress, when set, are requested; otherwise host-local picks the address and
// the network's MacPools (or the kernel) the MAC. NAT policies become port mappings,
// a QOS policy an egress limit. The endpoint returned has its ID, addresses, gateway,
// prefix length, namespace and resolv.conf paths filled in.
func (s *Store) CreateEndpoint(ctx context.Context, e Endpoint) (*Endpoint, error) {
	ep, err := s.createEndpoint(ctx, e)
	if err != nil {
		return nil, &Error{Op: "create endpoint", ID: e.Name, Err: err}
	}
	return ep, nil
}

func (s *Store) createEndpoint(ctx context.Context, e Endpoint) (*Endpoint, error) {
	caps, err := endpointPolicies(&e)
	if err != nil {
		return nil, err
	}
	if e.Name != "" && (len(e.Name) > 255 || strings.ContainsFunc(e.Name, func(r rune) bool { return r < 0x20 || r == 0x7f })) {
		return nil, invalidf("endpoint Name %q: at most 255 characters, no control characters", e.Name)
	}
	if err := validDNS(e.DNSServerList, "DNSServerList"); err != nil {
		return nil, err
	}
	if e.MacAddress != "" {
		m, err := net.ParseMAC(e.MacAddress)
		if err != nil || len(m) != 6 {
			return nil, invalidf("MacAddress %q is not a 48-bit MAC address", e.MacAddress)
		}
		if m[0]&1 != 0 {
			return nil, invalidf("MacAddress %q is a multicast address", e.MacAddress)
		}
		e.MacAddress = m.String()
	}

	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	netName := e.VirtualNetwork
	if netName == "" {
		netName = e.VirtualNetworkName
	}
	if netName == "" {
		return nil, invalidf("the endpoint names no network (VirtualNetwork or VirtualNetworkName)")
	}
	nr, err := s.findNetwork(netName)
	if err != nil {
		return nil, err
	}
	n := &nr.Network
	if e.VirtualNetwork != "" && e.VirtualNetworkName != "" && e.VirtualNetworkName != n.Name {
		return nil, invalidf("VirtualNetwork %s is network %q, not VirtualNetworkName %q", e.VirtualNetwork, n.Name, e.VirtualNetworkName)
	}
	if len(e.IPAddress) == 0 {
		e.IPAddress = nil
	} else {
		a, ok := netip.AddrFromSlice(e.IPAddress)
		if !ok || !inSubnets(a.Unmap(), n.Subnets) {
			return nil, invalidf("IPAddress %s is not in a subnet of network %q", e.IPAddress, n.Name)
		}
		caps["ips"] = []string{a.Unmap().String()}
	}
	others, err := s.endpointRecords()
	if err != nil {
		return nil, err
	}
	for _, o := range others {
		if e.Name != "" && o.Endpoint.Name == e.Name {
			return nil, fmt.Errorf("%w: endpoint %q is %s", ErrExists, e.Name, o.Endpoint.ID)
		}
		for _, p := range o.Endpoint.PortMappings {
			for _, q := range e.PortMappings {
				if p.HostPort == q.HostPort && p.Protocol == q.Protocol {
					return nil, fmt.Errorf("%w: host port %d/%s is published by endpoint %s", ErrExists, q.HostPort, q.Protocol, o.Endpoint.ID)
				}
			}
		}
		if e.MacAddress != "" && o.Endpoint.MacAddress == e.MacAddress {
			return nil, fmt.Errorf("%w: MAC address %s is endpoint %s's", ErrExists, e.MacAddress, o.Endpoint.ID)
		}
	}
	if e.MacAddress == "" && len(n.MacPools) > 0 {
		if e.MacAddress, err = poolMAC(n, others); err != nil {
			return nil, err
		}
	}
	if e.MacAddress != "" {
		caps["mac"] = e.MacAddress
	}
	list, err := libcniConfList(n.CNIConfig)
	if err != nil {
		return nil, err
	}

	e.ID = newID()
	e.VirtualNetwork = n.ID
	e.VirtualNetworkName = n.Name
	e.NetNS = s.netnsPath(e.ID)
	e.ResolvConf = s.resolvConfFile(e.ID)
	e.Interface = ifName
	if e.DNSServerList == "" && e.DNSSuffix == "" {
		e.DNSServerList, e.DNSSuffix = n.DNSServerList, n.DNSSuffix
	}
	rec := endpointRecord{
		Version: recordVersion, State: stateCreating, Endpoint: e,
		ContainerID: e.ID, IfName: ifName, CapabilityArgs: caps, CNIConfig: n.CNIConfig,
	}
	if err := writeRecord(s.endpointFile(e.ID), rec); err != nil {
		return nil, err
	}
	undo := func(err error) (*Endpoint, error) {
		if terr := s.teardownEndpoint(context.WithoutCancel(ctx), &rec); terr != nil {
			s.opts.Logger.Warn("undoing a failed endpoint", "endpoint", e.ID, "error", terr)
			return nil, fmt.Errorf("%w (and undoing it: %v; the next open retries)", err, terr)
		}
		return nil, err
	}
	if err := createNetNS(e.NetNS); err != nil {
		return undo(err)
	}
	if stepHook != nil {
		stepHook("netns")
	}
	res, err := s.cni.AddNetworkList(ctx, list, rec.runtimeConf(e.NetNS))
	if err != nil {
		return undo(fmt.Errorf("CNI ADD: %w%s", err, pluginHint(err)))
	}
	if stepHook != nil {
		stepHook("added")
	}
	if err := fillFromResult(&e, res, n.Bridge); err != nil {
		return undo(err)
	}
	if n.Type == TypeTransparent || n.Type == TypePrivate {
		if err := pinBridgeMAC(n.Bridge); err != nil {
			return undo(err)
		}
	}
	if err := writeFileVolatile(e.ResolvConf, resolvConf(e.DNSServerList, e.DNSSuffix)); err != nil {
		return undo(err)
	}
	rec.Endpoint = e
	rec.State = stateReady
	if err := writeRecord(s.endpointFile(e.ID), rec); err != nil {
		return undo(err)
	}
	return &e, nil
}

// runtimeConf is the CNI invocation of the endpoint; netns may be empty (DEL of an
// endpoint whose namespace is gone).
func (r *endpointRecord) runtimeConf(netns string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: r.ContainerID, NetNS: netns, IfName: r.IfName, CapabilityArgs: r.CapabilityArgs}
}

// pluginHint says where plugins come from when libcni could not find one.
func pluginHint(err error) string {
	if strings.Contains(err.Error(), "failed to find plugin") {
		return " (make deps builds the CNI plugins " + PluginsVersion + " into bin/cni/" + PluginsVersion + "; point HOSTCOMPUTE_CNI_PATH at them)"
	}
	return ""
}

func libcniConfList(conf []byte) (*libcni.NetworkConfigList, error) {
	l, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		return nil, fmt.Errorf("the network's CNI configuration: %w", err)
	}
	return l, nil
}

// endpointPolicies turns the endpoint's policies into its PortMappings and
// MaxEgressBytes, and returns the CNI capability arguments they make.
func endpointPolicies(e *Endpoint) (map[string]any, error) {
	caps := map[string]any{}
	e.PortMappings, e.MaxEgressBytes = nil, 0
	for i, raw := range e.Policies {
		t, err := policyType(raw)
		if err != nil {
			return nil, err
		}
		switch strings.ToUpper(t) {
		case PolicyNAT:
			var p NatPolicy
			if err := json.Unmarshal(raw, &p); err != nil {
				return nil, invalidf("endpoint Policies[%d]: %v", i, err)
			}
			proto := strings.ToLower(p.Protocol)
			if proto == "" {
				proto = "tcp"
			}
			if proto != "tcp" && proto != "udp" {
				return nil, unsupportedf("endpoint Policies[%d]: NAT protocol %q (TCP or UDP)", i, p.Protocol)
			}
			if p.InternalPort == 0 || p.ExternalPort == 0 {
				return nil, invalidf("endpoint Policies[%d]: NAT policy needs InternalPort and ExternalPort", i)
			}
			for _, q := range e.PortMappings {
				if q.HostPort == p.ExternalPort && q.Protocol == proto {
					return nil, invalidf("endpoint Policies[%d]: ExternalPort %d/%s is published twice", i, p.ExternalPort, proto)
				}
			}
			e.PortMappings = append(e.PortMappings, PortMapping{Protocol: proto, HostPort: p.ExternalPort, ContainerPort: p.InternalPort})
		case PolicyQOS:
			var p QosPolicy
			if err := json.Unmarshal(raw, &p); err != nil {
				return nil, invalidf("endpoint Policies[%d]: %v", i, err)
			}
			if p.MaximumOutgoingBandwidthInBytes == 0 {
				return nil, invalidf("endpoint Policies[%d]: QOS policy without MaximumOutgoingBandwidthInBytes", i)
			}
			if p.MaximumOutgoingBandwidthInBytes > math.MaxUint64/8 {
				return nil, invalidf("endpoint Policies[%d]: MaximumOutgoingBandwidthInBytes %d is too large", i, p.MaximumOutgoingBandwidthInBytes)
			}
			if e.MaxEgressBytes != 0 {
				return nil, invalidf("endpoint Policies[%d]: a second QOS policy", i)
			}
			e.MaxEgressBytes = p.MaximumOutgoingBandwidthInBytes
		case PolicyVLAN, PolicyVSID:
			return nil, unsupportedf("endpoint Policies[%d]: %s (no VLAN tagging or virtual subnets)", i, strings.ToUpper(t))
		default:
			return nil, unsupportedf("endpoint Policies[%d]: policy type %q", i, t)
		}
	}
	if len(e.PortMappings) > 0 {
		pm := make([]map[string]any, 0, len(e.PortMappings))
		for _, p := range e.PortMappings {
			pm = append(pm, map[string]any{"hostPort": p.HostPort, "containerPort": p.ContainerPort, "protocol": p.Protocol})
		}
		caps["portMappings"] = pm
	}
	if e.MaxEgressBytes > 0 {
		rate := e.MaxEgressBytes * 8
		// The token bucket holds 100 ms of traffic, and at least 64 KiB so that
		// full-size packets pass at low rates.
		burst := max(rate/10, 64<<10*8)
		burst = min(burst, (math.MaxUint32-1)*8)
		caps["bandwidth"] = map[string]uint64{"egressRate": rate, "egressBurst": burst}
	}
	return caps, nil
}

func inSubnets(a netip.Addr, subs []Subnet) bool {
	for _, sn := range subs {
		if p, err := netip.ParsePrefix(sn.AddressPrefix); err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}

// poolMAC returns the first address of n's MAC pools that no endpoint of n has.
func poolMAC(n *Network, others []endpointRecord) (string, error) {
	used := map[uint64]bool{}
	for _, o := range others {
		if m, err := net.ParseMAC(o.Endpoint.MacAddress); err == nil {
			used[macInt(m)] = true
		}
	}
	for _, mp := range n.MacPools {
		start, _ := net.ParseMAC(mp.StartMacAddress)
		end, _ := net.ParseMAC(mp.EndMacAddress)
		for v := macInt(start); v <= macInt(end); v++ {
			if !used[v] && v>>40&1 == 0 {
				return intMAC(v).String(), nil
			}
		}
	}
	return "", fmt.Errorf("hns: the MAC pools of network %q are exhausted", n.Name)
}

// fillFromResult copies the addresses of a CNI result into e.
func fillFromResult(e *Endpoint, res types.Result, bridge string) error {
	if res == nil {
		return fmt.Errorf("CNI ADD returned no result")
	}
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return fmt.Errorf("CNI ADD result: %w", err)
	}
	for _, ifc := range cur.Interfaces {
		switch {
		case ifc.Sandbox != "" && ifc.Name == ifName:
			e.MacAddress = ifc.Mac
		case ifc.Sandbox == "" && ifc.Name != bridge:
			e.HostInterface = ifc.Name
		}
	}
	if len(cur.IPs) == 0 {
		return fmt.Errorf("CNI ADD gave the endpoint no IP address")
	}
	ipc := cur.IPs[0]
	e.IPAddress = ipc.Address.IP
	if v4 := e.IPAddress.To4(); v4 != nil {
		e.IPAddress = v4
	}
	ones, _ := ipc.Address.Mask.Size()
	e.PrefixLength = uint8(ones)
	if ipc.Gateway != nil {
		e.GatewayAddress = ipc.Gateway.String()
	}
	return nil
}

// resolvConf is the resolv.conf of an endpoint: its name servers and search suffix,
// or, when it has none, the host's non-loopback name servers and search list.
func resolvConf(servers, suffix string) []byte {
	var b bytes.Buffer
	if servers != "" || suffix != "" {
		b.WriteString("# written by hostcompute from the endpoint's DNS settings\n")
		if suffix != "" {
			fmt.Fprintf(&b, "search %s\n", strings.Join(strings.Fields(strings.ReplaceAll(suffix, ",", " ")), " "))
		}
		for _, sv := range splitList(servers) {
			fmt.Fprintf(&b, "nameserver %s\n", sv)
		}
		return b.Bytes()
	}
	b.WriteString("# written by hostcompute from the host's resolv.conf (loopback name servers left out)\n")
	host, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return b.Bytes()
	}
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err != nil || a.IsLoopback() {
				continue
			}
		case "search", "domain", "options":
		default:
			continue
		}
		b.WriteString(strings.Join(f, " ") + "\n")
	}
	return b.Bytes()
}

// Endpoint returns the endpoint with the given ID (without regard to case) or name.
func (s *Store) Endpoint(ctx context.Context, idOrName string) (*Endpoint, error) {
	r, err := s.findEndpoint(idOrName)
	if err != nil {
		return nil, &Error{Op: "get endpoint", ID: idOrName, Err: err}
	}
	return &r.Endpoint, nil
}

func (s *Store) findEndpoint(idOrName string) (*endpointRecord, error) {
	return s.findEndpointIn(idOrName, stateReady)
}

// findEndpointIn finds an endpoint whose record is in one of states.
func (s *Store) findEndpointIn(idOrName string, states ...string) (*endpointRecord, error) {
	if idOrName == "" {
		return nil, invalidf("no endpoint ID or name")
	}
	if validID(idOrName) {
		var r endpointRecord
		err := readRecord(s.endpointFile(strings.ToLower(idOrName)), &r)
		if err == nil && slices.Contains(states, r.State) {
			return &r, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	recs, err := s.endpointRecords()
	if err != nil {
		return nil, err
	}
	for i := range recs {
		if slices.Contains(states, recs[i].State) && recs[i].Endpoint.Name == idOrName {
			return &recs[i], nil
		}
	}
	return nil, fmt.Errorf("%w: no endpoint %q", ErrNotFound, idOrName)
}

// Endpoints lists the endpoints, by ID; with network set, those of that network (ID
// or name).
func (s *Store) Endpoints(ctx context.Context, network string) ([]Endpoint, error) {
	netID := ""
	if network != "" {
		nr, err := s.findNetwork(network)
		if err != nil {
			return nil, &Error{Op: "list endpoints", ID: network, Err: err}
		}
		netID = nr.Network.ID
	}
	recs, err := s.endpointRecords()
	if err != nil {
		return nil, &Error{Op: "list endpoints", Err: err}
	}
	eps := []Endpoint{}
	for _, r := range recs {
		if r.State == stateReady && (netID == "" || r.Endpoint.VirtualNetwork == netID) {
			eps = append(eps, r.Endpoint)
		}
	}
	return eps, nil
}

// DeleteEndpoint runs CNI DEL for the endpoint and removes its namespace, its
// resolv.conf and its record.
func (s *Store) DeleteEndpoint(ctx context.Context, idOrName string) error {
	fail := func(err error) error { return &Error{Op: "delete endpoint", ID: idOrName, Err: err} }
	unlock, err := s.lock()
	if err != nil {
		return fail(err)
	}
	defer unlock()
	// A removal that failed half way (its record says so) can be retried.
	r, err := s.findEndpointIn(idOrName, stateReady, stateDeleting)
	if err != nil {
		return fail(err)
	}
	r.State = stateDeleting
	if err := writeRecordSync(s.endpointFile(r.Endpoint.ID), r, false); err != nil {
		return fail(err)
	}
	if err := s.teardownEndpoint(ctx, r); err != nil {
		return fail(err)
	}
	return nil
}

// teardownEndpoint undoes an endpoint whatever state it reached: CNI DEL (with no
// namespace if it is gone or was never bound), the namespace, the resolv.conf and the
// record.
func (s *Store) teardownEndpoint(ctx context.Context, r *endpointRecord) error {
	list, err := libcniConfList(r.CNIConfig)
	if err != nil {
		return err
	}
	path := s.netnsPath(r.ContainerID)
	nsArg := path
	if !isNetNS(path) {
		nsArg = ""
	}
	if err := s.cni.DelNetworkList(ctx, list, r.runtimeConf(nsArg)); err != nil {
		return fmt.Errorf("CNI DEL: %w%s", err, pluginHint(err))
	}
	if nsArg == "" {
		if err := removeEndpointRules(r.ContainerID, r.Endpoint.IPAddress != nil && r.Endpoint.IPAddress.To4() == nil); err != nil {
			return err
		}
	}
	if err := removeNetNS(path); err != nil {
		return err
	}
	if err := removeFile(s.resolvConfFile(r.ContainerID)); err != nil {
		return err
	}
	return removeFile(s.endpointFile(r.ContainerID))
}

// CheckEndpoint runs CNI CHECK for the endpoint: every plugin verifies that what it
// set up is still there.
func (s *Store) CheckEndpoint(ctx context.Context, idOrName string) error {
	r, err := s.findEndpoint(idOrName)
	if err == nil {
		var list *libcni.NetworkConfigList
		if list, err = libcniConfList(r.CNIConfig); err == nil {
			err = s.cni.CheckNetworkList(ctx, list, r.runtimeConf(r.Endpoint.NetNS))
		}
	}
	if err != nil {
		return &Error{Op: "check endpoint", ID: idOrName, Err: err}
	}
	return nil
}

// EndpointNamespace returns the paths a container needs to join the endpoint: its
// network namespace (for the runtime-spec's network namespace) and its resolv.conf.
func (s *Store) EndpointNamespace(ctx context.Context, idOrName string) (netns, resolvConf string, err error) {
	e, err := s.Endpoint(ctx, idOrName)
	if err != nil {
		return "", "", err
	}
	return e.NetNS, e.ResolvConf, nil
}

// EndpointNamespacePath returns the network namespace path and resolv.conf path of the
// endpoint with the given ID in the default store (see Default): what a container
// names in its runtime-spec to join the endpoint.
func EndpointNamespacePath(id string) (netns, resolvConf string, err error) {
	ctx := context.Background()
	s, err := Default(ctx)
	if err != nil {
		return "", "", err
	}
	return s.EndpointNamespace(ctx, id)
}

// EndpointStats returns the interface counters of the endpoint with the given ID in
// the default store.
func EndpointStats(id string) (Stats, error) {
	ctx := context.Background()
	s, err := Default(ctx)
	if err != nil {
		return Stats{}, err
	}
	return s.EndpointStats(ctx, id)
}

// EndpointStats returns the counters of the endpoint's interface, read inside its
// namespace.
func (s *Store) EndpointStats(ctx context.Context, idOrName string) (Stats, error) {
	e, err := s.Endpoint(ctx, idOrName)
	if err != nil {
		return Stats{}, err
	}
	st, err := interfaceStats(e.NetNS, ifName)
	if err != nil {
		return Stats{}, &Error{Op: "endpoint statistics", ID: idOrName, Err: err}
	}
	st.EndpointID = e.ID
	return st, nil
}
