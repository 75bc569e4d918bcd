package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hostcompute/hostcompute/hns"
)

const hnsStateHelp = `State is kept in $HOSTCOMPUTE_HNS_STATE_DIR (default /run/hostcompute/hns),
namespaces are bound in $HOSTCOMPUTE_NETNS_DIR (default /run/netns, where
"ip netns" looks), and the CNI plugins are looked for in $HOSTCOMPUTE_CNI_PATH,
then in cni/` + hns.PluginsVersion + ` beside this program (make deps builds them into
bin/cni/` + hns.PluginsVersion + `, beside make's bin/hcs), then /opt/cni/bin and
/usr/lib/cni. Needs root.`

func (a *app) newNetworkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Manage HNS networks (CNI bridge networks)",
		Long: `Manage networks as the Host Network Service does, built from CNI plugins: each
network is a Linux bridge with host-local addresses from its subnets, isolated
from other networks, with port mappings (portmap) and bandwidth limits for its
endpoints. Types: nat (the bridge is the gateway and masquerades outgoing
traffic), l2bridge (gateway, no masquerading), internal (the gateway of the
subnet alone: endpoints and the host), transparent and private (no gateway:
endpoints only).

` + hnsStateHelp,
	}
	cmd.AddCommand(a.newNetworkCreateCommand(), a.newNetworkLsCommand(), a.newNetworkInspectCommand(), a.newNetworkRmCommand())
	return cmd
}

func (a *app) newNetworkCreateCommand() *cobra.Command {
	var (
		n        hns.Network
		subnets  []string
		gateways []string
		macPools []string
	)
	cmd := &cobra.Command{
		Use:   "create [flags] --subnet CIDR NAME",
		Short: "Create a network",
		Long: `Create a network and print its ID. Nothing changes in the kernel until the
first endpoint joins it. --gateway gives the gateway of the --subnet in the same
position (default: the subnet's first address). A name used by another network
gives exit code 4; a bad subnet, gateway or address exit code 3; a type or
option Linux has no mapping for exit code 1.`,
		Args: cobra.ExactArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			n.Name = args[0]
			if len(gateways) > len(subnets) {
				return usageErrorf("%d --gateway for %d --subnet", len(gateways), len(subnets))
			}
			for i, sn := range subnets {
				s := hns.Subnet{AddressPrefix: sn}
				if i < len(gateways) {
					s.GatewayAddress = gateways[i]
				}
				n.Subnets = append(n.Subnets, s)
			}
			for _, mp := range macPools {
				start, end, ok := strings.Cut(mp, "/")
				if !ok {
					return usageErrorf("--mac-pool %q: want START/END", mp)
				}
				n.MacPools = append(n.MacPools, hns.MacPool{StartMacAddress: start, EndMacAddress: end})
			}
			s, err := hns.Default(cmd.Context())
			if err != nil {
				return err
			}
			created, err := s.CreateNetwork(cmd.Context(), n)
			if err != nil {
				return err
			}
			return a.result(created.ID, created)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&n.Type, "type", hns.TypeNAT, "network `TYPE`: nat, l2bridge, internal, transparent or private")
	f.StringArrayVar(&subnets, "subnet", nil, "address range `CIDR` of the network (repeatable)")
	f.StringArrayVar(&gateways, "gateway", nil, "gateway `IP` of the --subnet in the same position (repeatable)")
	f.StringVar(&n.DNSServerList, "dns-server", "", "comma-separated name server `IPs` for endpoints")
	f.StringVar(&n.DNSSuffix, "dns-suffix", "", "DNS search `SUFFIX` for endpoints")
	f.StringArrayVar(&macPools, "mac-pool", nil, "MAC addresses `START/END` endpoints get theirs from (repeatable)")
	cmd.MarkFlagRequired("subnet")
	return cmd
}

func subnetList(subs []hns.Subnet) string {
	var parts []string
	for _, s := range subs {
		parts = append(parts, s.AddressPrefix)
	}
	return strings.Join(parts, ",")
}

func (a *app) newNetworkLsCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    cobra.NoArgs,
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, err := hns.Default(cmd.Context())
			if err != nil {
				return err
			}
			nets, err := s.Networks(cmd.Context())
			if err != nil {
				return err
			}
			var b strings.Builder
			tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tTYPE\tSUBNETS\tBRIDGE")
			for _, n := range nets {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.ID, n.Name, n.Type, subnetList(n.Subnets), n.Bridge)
			}
			tw.Flush()
			return a.result(strings.TrimSuffix(b.String(), "\n"), nets)
		}),
	}
}

func (a *app) newNetworkInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect ID|NAME...",
		Short: "Show networks",
		Long: `Show each network: its HNS fields, its bridge and its CNI configuration list.
With -o json, one network is an object and several an array. A missing network
gives exit code 5.`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, err := hns.Default(cmd.Context())
			if err != nil {
				return err
			}
			var nets []*hns.Network
			var b strings.Builder
			for _, arg := range args {
				n, err := s.Network(cmd.Context(), arg)
				if err != nil {
					return err
				}
				nets = append(nets, n)
				fmt.Fprintf(&b, "ID:        %s\nName:      %s\nType:      %s\nBridge:    %s\n", n.ID, n.Name, n.Type, n.Bridge)
				for _, sn := range n.Subnets {
					fmt.Fprintf(&b, "Subnet:    %s gateway %s\n", sn.AddressPrefix, orDash(sn.GatewayAddress))
				}
				for _, mp := range n.MacPools {
					fmt.Fprintf(&b, "MacPool:   %s-%s\n", mp.StartMacAddress, mp.EndMacAddress)
				}
				if n.DNSServerList != "" || n.DNSSuffix != "" {
					fmt.Fprintf(&b, "DNS:       %s search %s\n", orDash(n.DNSServerList), orDash(n.DNSSuffix))
				}
				fmt.Fprintf(&b, "CNIConfig: %s\n", n.CNIConfig)
			}
			if len(nets) == 1 {
				return a.result(strings.TrimSuffix(b.String(), "\n"), nets[0])
			}
			return a.result(strings.TrimSuffix(b.String(), "\n"), nets)
		}),
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) newNetworkRmCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "rm ID|NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove networks",
		Long: `Remove each network: its bridge, the iptables rules naming it and its address
leases. A network with endpoints is refused (exit code 1); a missing one gives
exit code 5. All are tried; the exit code is that of the first failure.`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.runE(func(cmd *cobra.Command, args []string) error {
			s, err := hns.Default(cmd.Context())
			if err != nil {
				return err
			}
			return a.each(args, func(arg string) error { return s.DeleteNetwork(cmd.Context(), arg) })
		}),
	}
}

// each runs fn for every argument, reporting failures as they come, and returns the
// first one (already reported).
func (a *app) each(args []string, fn func(string) error) error {
	var first error
	for _, arg := range args {
		if err := fn(arg); err != nil {
			fmt.Fprintf(a.stderr, "hcs: %v\n", err)
			if first == nil {
				first = err
			}
		}
	}
	if first != nil {
		return reportedError{first}
	}
	return nil
}
