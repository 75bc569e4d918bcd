// Package hns is the engine of the Host Network Service model on Linux: networks and
// endpoints built from CNI plugins.
//
// # Model
//
// A network is a stored CNI configuration list: the bridge plugin (one Linux bridge per
// network, named from the network's ID), host-local IPAM over the network's subnets
// and gateways, firewall (with cross-network isolation), tuning (MAC addresses),
// portmap (port mappings) and bandwidth (egress limits). Nothing is created in the
// kernel until the first endpoint joins: the bridge appears with it.
//
// An endpoint is a named network namespace plus one CNI ADD of its network's list into
// it (container ID = endpoint ID, interface eth0). The ADD result gives the endpoint's
// IP address, MAC address, gateway and prefix length. The endpoint's DNS settings (its
// own, else its network's, else the host's non-loopback name servers) are written as a
// resolv.conf file in the state directory for containers that join the endpoint; see
// [Store.Endpoint] for its path and the namespace's.
//
// HNS network types map as follows: "nat" is a bridge that is the subnet's gateway with
// outbound masquerading; "l2bridge" is a bridge that is the gateway without
// masquerading; "internal" is a bridge that is the gateway of the subnet alone (no
// default route: endpoints reach each other and the host); "transparent" and
// "private" are bridges without a gateway address (endpoints reach each other and
// nothing else). Attaching a host adapter (NetworkAdapterName) and every
// other type are refused with an error matching [errors.ErrUnsupported].
//
// Policies: endpoint NAT policies become CNI port mappings (portmap, host addresses
// including 127.0.0.1), QOS policies an egress rate limit (bandwidth plugin). VLAN,
// VSID and the other HNS policy types are refused with an error matching
// [errors.ErrUnsupported].
//
// # State and crash safety
//
// State lives under one directory, hns/ under the project's state root
// (internal/state: /run/hostcompute, or $HOSTCOMPUTE_STATE_DIR), or
// $HOSTCOMPUTE_HNS_STATE_DIR: one versioned JSON record per network and endpoint,
// written as internal/state writes records (stage, fsync, rename, fsync of the
// directory); host-local's address leases and libcni's result cache live beside them. Every change holds an exclusive flock on the directory's lock file.
// An endpoint record is written, marked "creating", before its namespace is made and
// ADD runs; [Open] finds records left in that state by a process that died (the lock
// is free, so their creator is gone), runs CNI DEL for them and removes their
// namespace, so a crash at any point leaves nothing after the next open.
//
// Deleting an endpoint runs CNI DEL (which removes the veth pair, its iptables chains
// and its address lease) and removes the namespace; deleting a network removes its
// bridge, the iptables rules that name the bridge, its lease directory, and, when it
// was the store's last network, the shared CNI chains that are left empty.
//
// # Concurrency
//
// A Store is safe for use by several goroutines, and several processes may open the
// same directory: changes are serialised by the lock file; reads see whole records.
package hns
