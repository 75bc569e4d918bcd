//go:build !linux

package hns

import "net/netip"

// Network namespaces, bridges and iptables are Linux's: elsewhere every operation that
// needs them fails with an error matching ErrUnsupported.

func createNetNS(path string) error { return unsupportedf("network namespaces (Linux only)") }
func isNetNS(path string) bool      { return false }
func removeNetNS(path string) error { return nil }
func removeBridge(name string) error {
	return nil
}
func removeIPTablesRules(bridge string, subnets []netip.Prefix) error { return nil }
func interfaceStats(path, ifc string) (Stats, error) {
	return Stats{}, unsupportedf("interface counters (Linux only)")
}
func removeEndpointRules(containerID string, v6 bool) error { return nil }
func pinBridgeMAC(name string) error                        { return nil }
func routeOverlap(p netip.Prefix) error                     { return nil }
