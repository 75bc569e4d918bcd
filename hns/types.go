package hns

import (
	"encoding/json"
	"net"
)

// Subnet is an address range of a network, with its gateway (hcsshim's Subnet).
// AddressPrefix is a CIDR ("10.0.0.0/24"); GatewayAddress, when empty, is the first
// address of the range.
type Subnet struct {
	AddressPrefix  string `json:",omitempty"`
	GatewayAddress string `json:",omitempty"`
}

// MacPool is a range of MAC addresses that endpoints of a network get theirs from
// when they do not ask for one (hcsshim's MacPool).
type MacPool struct {
	StartMacAddress string `json:",omitempty"`
	EndMacAddress   string `json:",omitempty"`
}

// Policy types, as HNS spells them in a policy's "Type" (compared without regard to
// case).
const (
	PolicyNAT  = "NAT"
	PolicyQOS  = "QOS"
	PolicyVLAN = "VLAN"
	PolicyVSID = "VSID"
)

// NatPolicy publishes an endpoint's port on the host: ExternalPort on every host
// address (127.0.0.1 included) forwards to InternalPort of the endpoint. Protocol is
// "TCP" or "UDP" (default TCP).
type NatPolicy struct {
	Type         string
	Protocol     string
	InternalPort uint16
	ExternalPort uint16
}

// QosPolicy limits an endpoint's outgoing traffic to MaximumOutgoingBandwidthInBytes
// bytes per second.
type QosPolicy struct {
	Type                            string
	MaximumOutgoingBandwidthInBytes uint64
}

// VlanPolicy tags a network's traffic with a VLAN. Not supported on Linux here.
type VlanPolicy struct {
	Type string
	VLAN uint
}

// VsidPolicy puts a network in a virtual subnet. Not supported on Linux here.
type VsidPolicy struct {
	Type string
	VSID uint
}

// Network types.
const (
	TypeNAT         = "nat"
	TypeL2Bridge    = "l2bridge"
	TypeTransparent = "transparent"
	TypeInternal    = "internal" // endpoints and the host, nothing beyond
	TypePrivate     = "private"  // endpoints only
)

// Network is a network: the fields of an HNS network (with HNS's JSON names), and
// what it is on Linux.
type Network struct {
	ID                 string            `json:"Id,omitempty"`
	Name               string            `json:",omitempty"`
	Type               string            `json:",omitempty"`
	NetworkAdapterName string            `json:",omitempty"`
	SourceMac          string            `json:",omitempty"`
	Policies           []json.RawMessage `json:",omitempty"`
	MacPools           []MacPool         `json:",omitempty"`
	Subnets            []Subnet          `json:",omitempty"`
	DNSSuffix          string            `json:",omitempty"`
	DNSServerList      string            `json:",omitempty"`

	// Bridge is the Linux bridge of the network; it exists while the network has
	// endpoints.
	Bridge string `json:",omitempty"`
	// CNIConfig is the network's CNI configuration list.
	CNIConfig json.RawMessage `json:",omitempty"`
}

// PortMapping is one published port of an endpoint (from a NAT policy).
type PortMapping struct {
	Protocol      string `json:"protocol"` // "tcp" or "udp"
	HostPort      uint16 `json:"hostPort"`
	ContainerPort uint16 `json:"containerPort"`
}

// Endpoint is an endpoint: the fields of an HNS endpoint (with HNS's JSON names),
// and what it is on Linux.
type Endpoint struct {
	ID                 string            `json:"Id,omitempty"`
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

	// NetNS is the path of the endpoint's network namespace: what a container's
	// runtime-spec names to join it.
	NetNS string `json:",omitempty"`
	// ResolvConf is the path of the resolv.conf file for containers that join it.
	ResolvConf string `json:",omitempty"`
	// Interface is the endpoint's interface inside the namespace (eth0), HostInterface
	// its veth peer on the bridge.
	Interface     string `json:",omitempty"`
	HostInterface string `json:",omitempty"`
	// PortMappings and MaxEgressBytes are the NAT and QOS policies as applied.
	PortMappings   []PortMapping `json:",omitempty"`
	MaxEgressBytes uint64        `json:",omitempty"`
}

// Stats are the interface counters of an endpoint, seen from inside its namespace.
type Stats struct {
	EndpointID      string
	BytesReceived   uint64
	BytesSent       uint64
	PacketsReceived uint64
	PacketsSent     uint64
	DroppedIncoming uint64
	DroppedOutgoing uint64
}
