package hostcompute

import (
	"fmt"
	"os"

	"github.com/hostcompute/hostcompute/compute"
	"github.com/hostcompute/hostcompute/hns"
)

// joinEndpoints makes a container join its endpoints (ContainerConfig.EndpointList):
// the container runs in the endpoint's network namespace. An endpoint is one
// namespace, so a container joins one endpoint; several are refused. The endpoint's
// resolv.conf (its DNSServerList and DNSSuffix, written by package hns) is bound
// read-only at the container's /etc/resolv.conf, as Windows gives a container its
// endpoint's DNS settings.
func joinEndpoints(cfg *compute.Config, endpoints []string) error {
	if len(endpoints) > 1 {
		return fmt.Errorf("%w: EndpointList %v: a container joins one endpoint's network namespace; several network interfaces per container are not supported", compute.ErrUnsupported, endpoints)
	}
	netns, resolvConf, err := hns.EndpointNamespacePath(endpoints[0])
	if err != nil {
		return fmt.Errorf("%w: EndpointList: %w", compute.ErrInvalidArgument, err)
	}
	cfg.NetNS, cfg.Endpoints = netns, endpoints
	if resolvConf != "" {
		if _, err := os.Stat(resolvConf); err != nil {
			return fmt.Errorf("endpoint %s: its resolv.conf: %w", endpoints[0], err)
		}
		cfg.Mounts = append(cfg.Mounts, compute.Mount{Source: resolvConf, Destination: "/etc/resolv.conf", ReadOnly: true})
	}
	return nil
}

// endpointStatistics returns the counters of a container's endpoints. An endpoint
// removed meanwhile is left out.
func endpointStatistics(endpoints []string) []NetworkStats {
	var out []NetworkStats
	for _, id := range endpoints {
		st, err := hns.EndpointStats(id)
		if err != nil {
			continue
		}
		out = append(out, NetworkStats{
			BytesReceived: st.BytesReceived, BytesSent: st.BytesSent,
			PacketsReceived: st.PacketsReceived, PacketsSent: st.PacketsSent,
			DroppedPacketsIncoming: st.DroppedIncoming, DroppedPacketsOutgoing: st.DroppedOutgoing,
			EndpointId: st.EndpointID,
		})
	}
	return out
}
