package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/hns"
)

func (a *app) newEndpointCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "endpoint",
		Short: "Manage HNS endpoints (network namespaces on a network)",
		Long: `Manage endpoints as the Host Network Service does: each endpoint is a network
namespace joined to its network's bridge by CNI ADD (interface eth0), with its
address, MAC address, published ports and a resolv.conf for containers that join
it (runc: the namespace path as the spec's network namespace).

` + hnsStateHelp,
	}
	cmd.AddCommand(a.newEndpointCreateCommand(), a.newEndpointLsCommand(), a.newEndpointInspectCommand(),
		a.newEndpointRmCommand(), a.newEndpointCheckCommand(), a.newEndpointStatsCommand())
	return cmd
}

func (a *app) newEndpointCreateCommand() *cobra.Command {
	var (
		e         hns.Endpoint
		ip        string
		publish   []string
		maxEgress uint64
	)
	cmd := &cobra.Command{
		Use:   "create [flags] --network NETWORK [NAME]",
		Short: "Create an endpoint",
		Long: `Create an endpoint on NETWORK (ID or name) and print its ID and address.
--publish HOSTPORT:PORT[/tcp|/udp] forwards HOSTPORT on every host address
(127.0.0.1 included) to PORT in the endpoint (an HNS NAT policy); --max-egress
limits its outgoing traffic in bytes per second (a QOS policy). A name, MAC
address or host port in use gives exit code 4, a missing network exit code 5,
a bad address exit code 3.`,
		Args: cobra.MaximumNArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				e.Name = args[0]
			}
			if ip != "" {
				if e.IPAddress = net.ParseIP(ip); e.IPAddress == nil {
					return usageErrorf("--ip %q is not an IP address", ip)
				}
			}
			for _, p := range publish {
				pol, err := parsePublish(p)
				if err != nil {
					return err
				}
				raw, _ := json.Marshal(pol)
				e.Policies = append(e.Policies, raw)
			}
			if maxEgress > 0 {
				raw, _ := json.Marshal(hns.QosPolicy{Type: hns.PolicyQOS, MaximumOutgoingBandwidthInBytes: maxEgress})
				e.Policies = append(e.Policies, raw)
			}
			s, err := hns.Default(cmd.Context())
			if err != nil {
				return err
			}
			created, err := s.CreateEndpoint(cmd.Context(), e)
			if err != nil {
				return err
			}
			return a.result(fmt.Sprintf("%s %s/%d", created.ID, created.IPAddress, created.PrefixLength), created)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&e.VirtualNetwork, "network", "", "`NETWORK` (ID or name) to join")
	f.StringVar(&ip, "ip", "", "`IP` address to ask for (default: the next free one)")
	f.StringVar(&e.MacAddress, "mac", "", "`MAC` address to ask for (default: from the network's MAC pools, else random)")
	f.StringArrayVar(&publish, "publish", nil, "publish `HOSTPORT:PORT[/PROTO]` (repeatable)")
	f.Uint64Var(&maxEgress, "max-egress", 0, "limit outgoing traffic to `BYTES` per second")
	f.StringVar(&e.DNSServerList, "dns-server", "", "comma-separated name server `IPs` (default: the network's)")
	f.StringVar(&e.DNSSuffix, "dns-suffix", "", "DNS search `SUFFIX` (default: the network's)")
	cmd.MarkFlagRequired("network")
	return cmd
}

// parsePublish parses HOSTPORT:PORT[/PROTO] into a NAT policy.
func parsePublish(s string) (hns.NatPolicy, error) {
	spec, proto, _ := strings.Cut(s, "/")
	hp, cp, ok := strings.Cut(spec, ":")
	h, err1 := strconv.ParseUint(hp, 10, 16)
	c, err2 := strconv.ParseUint(cp, 10, 16)
	if !ok || err1 != nil || err2 != nil || h == 0 || c == 0 {
		return hns.NatPolicy{}, usageErrorf("--publish %q: want HOSTPORT:PORT[/tcp|/udp]", s)
	}
	if proto == "" {
		proto = "tcp"
	}
	return hns.NatPolicy{Type: hns.PolicyNAT, Protocol: strings.ToUpper(proto), ExternalPort: uint16(h), InternalPort: uint16(c)}, nil
}

func (a *app) newEndpointLsCommand() *cobra.Command {
	var network string
	cmd := &cobra.Command{
		Use:     "ls [--network NETWORK]",
		Aliases: []string{"list"},
		Short:   "List endpoints",
		Args:    cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, err := hns.Default(cmd.Context())
			if err != nil {
				return err
			}
			eps, err := s.Endpoints(cmd.Context(), network)
			if err != nil {
				return err
			}
			var b strings.Builder
			tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tNETWORK\tIP\tMAC")
			for _, e := range eps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%d\t%s\n", e.ID, orDash(e.Name), e.VirtualNetworkName, e.IPAddress, e.PrefixLength, e.MacAddress)
			}
			tw.Flush()
			return a.result(strings.TrimSuffix(b.String(), "\n"), eps)
		}),
	}
	cmd.Flags().StringVar(&network, "network", "", "only the endpoints of `NETWORK` (ID or name)")
	return cmd
}

func (a *app) newEndpointInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect ID|NAME...",
		Short: "Show endpoints",
		Long: `Show each endpoint: its HNS fields, its namespace and resolv.conf paths, its
interfaces and published ports. With -o json, one endpoint is an object and
several an array. A missing endpoint gives exit code 5.`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, err := hns.Default(cmd.Context())
			if err != nil {
				return err
			}
			var eps []*hns.Endpoint
			var b strings.Builder
			for _, arg := range args {
				e, err := s.Endpoint(cmd.Context(), arg)
				if err != nil {
					return err
				}
				eps = append(eps, e)
				fmt.Fprintf(&b, "ID:         %s\nName:       %s\nNetwork:    %s (%s)\nIP:         %s/%d gateway %s\nMAC:        %s\n",
					e.ID, orDash(e.Name), e.VirtualNetworkName, e.VirtualNetwork, e.IPAddress, e.PrefixLength, orDash(e.GatewayAddress), e.MacAddress)
				fmt.Fprintf(&b, "NetNS:      %s\nResolvConf: %s\nInterfaces: %s (host %s)\n", e.NetNS, e.ResolvConf, e.Interface, e.HostInterface)
				for _, p := range e.PortMappings {
					fmt.Fprintf(&b, "Publish:    %d:%d/%s\n", p.HostPort, p.ContainerPort, p.Protocol)
				}
				if e.MaxEgressBytes > 0 {
					fmt.Fprintf(&b, "MaxEgress:  %d B/s\n", e.MaxEgressBytes)
				}
			}
			if len(eps) == 1 {
				return a.result(strings.TrimSuffix(b.String(), "\n"), eps[0])
			}
			return a.result(strings.TrimSuffix(b.String(), "\n"), eps)
		}),
	}
}

func (a *app) newEndpointRmCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "rm ID|NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove endpoints",
		Long: `Remove each endpoint: CNI DEL (its veth pair, iptables rules and address
lease), its namespace and its resolv.conf. A missing endpoint gives exit code
5. All are tried; the exit code is that of the first failure.`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, err := hns.Default(cmd.Context())
			if err != nil {
				return err
			}
			return a.each(args, func(arg string) error { return s.DeleteEndpoint(cmd.Context(), arg) })
		}),
	}
}

func (a *app) newEndpointCheckCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "check ID|NAME...",
		Short: "Run CNI CHECK for endpoints",
		Long: `Run CNI CHECK for each endpoint: every plugin verifies that what it set up
(interfaces, addresses, routes, iptables rules) is still in place. Prints
nothing on success; exit code 1 names what is wrong. With -o json, {"ok",
"problems"}: one problem per endpoint that failed.`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, err := hns.Default(cmd.Context())
			if err != nil {
				return err
			}
			problems := []string{}
			err = a.each(args, func(arg string) error {
				err := s.CheckEndpoint(cmd.Context(), arg)
				if err != nil {
					problems = append(problems, err.Error())
				}
				return err
			})
			if a.output == outputJSON {
				if rerr := a.result("", newCheckResult(problems)); rerr != nil {
					return rerr
				}
			}
			return err
		}),
	}
}

func (a *app) newEndpointStatsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stats ID|NAME",
		Short: "Show an endpoint's interface counters",
		Args:  cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, err := hns.Default(cmd.Context())
			if err != nil {
				return err
			}
			st, err := s.EndpointStats(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.result(fmt.Sprintf("rx %d bytes %d packets %d dropped, tx %d bytes %d packets %d dropped",
				st.BytesReceived, st.PacketsReceived, st.DroppedIncoming, st.BytesSent, st.PacketsSent, st.DroppedOutgoing), st)
		}),
	}
}
