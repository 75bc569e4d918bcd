package hns

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestValidateNetwork(t *testing.T) {
	s := &Store{opts: Options{StateDir: "/state"}}
	sub := []Subnet{{AddressPrefix: "10.231.7.9/24"}}
	vlan, _ := json.Marshal(VlanPolicy{Type: "VLAN", VLAN: 7})
	vsid, _ := json.Marshal(VsidPolicy{Type: "VSID", VSID: 4096})
	for _, tc := range []struct {
		name string
		n    Network
		want error // nil: valid
		msg  string
	}{
		{"nat", Network{Name: "n", Type: "NAT", Subnets: sub}, nil, ""},
		{"l2bridge", Network{Name: "n", Type: "l2bridge", Subnets: sub}, nil, ""},
		{"transparent", Network{Name: "n", Type: "transparent", Subnets: sub}, nil, ""},
		{"internal", Network{Name: "n", Type: "Internal", Subnets: sub}, nil, ""},
		{"private", Network{Name: "n", Type: "private", Subnets: sub}, nil, ""},
		{"no name", Network{Type: "nat", Subnets: sub}, ErrInvalid, "no Name"},
		{"no type", Network{Name: "n", Subnets: sub}, ErrInvalid, "no Type"},
		{"overlay", Network{Name: "n", Type: "overlay", Subnets: sub}, errors.ErrUnsupported, `"overlay"`},
		{"ics", Network{Name: "n", Type: "ics", Subnets: sub}, ErrUnsupported, `"ics"`},
		{"adapter", Network{Name: "n", Type: "l2bridge", NetworkAdapterName: "eth0", Subnets: sub}, ErrUnsupported, "eth0"},
		{"no subnet", Network{Name: "n", Type: "nat"}, ErrInvalid, "no Subnets"},
		{"bad prefix", Network{Name: "n", Type: "nat", Subnets: []Subnet{{AddressPrefix: "10.0.0.0/33"}}}, ErrInvalid, "Subnets[0].AddressPrefix"},
		{"tiny prefix", Network{Name: "n", Type: "nat", Subnets: []Subnet{{AddressPrefix: "10.0.0.0/31"}}}, ErrInvalid, "no address"},
		{"gateway outside", Network{Name: "n", Type: "nat", Subnets: []Subnet{{AddressPrefix: "10.0.0.0/24", GatewayAddress: "10.0.1.1"}}}, ErrInvalid, "GatewayAddress"},
		{"overlap", Network{Name: "n", Type: "nat", Subnets: []Subnet{{AddressPrefix: "10.0.0.0/16"}, {AddressPrefix: "10.0.3.0/24"}}}, ErrInvalid, "overlaps"},
		{"dns", Network{Name: "n", Type: "nat", Subnets: sub, DNSServerList: "10.0.0.1,x"}, ErrInvalid, `"x"`},
		{"vlan", Network{Name: "n", Type: "nat", Subnets: sub, Policies: []json.RawMessage{vlan}}, errors.ErrUnsupported, "VLAN 7"},
		{"vsid", Network{Name: "n", Type: "nat", Subnets: sub, Policies: []json.RawMessage{vsid}}, ErrUnsupported, "VSID 4096"},
		{"mac pool", Network{Name: "n", Type: "nat", Subnets: sub, MacPools: []MacPool{{"00-15-5D-52-C0-00", "00-15-5D-52-CF-FF"}}}, nil, ""},
		{"bad mac pool", Network{Name: "n", Type: "nat", Subnets: sub, MacPools: []MacPool{{"00-15-5D-52-CF-FF", "00-15-5D-52-C0-00"}}}, ErrInvalid, "MacPools[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.validateNetwork(&tc.n)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if tc.n.Subnets[0].AddressPrefix != "10.231.7.0/24" || tc.n.Type != strings.ToLower(tc.n.Type) {
					t.Errorf("not normalised: %+v", tc.n)
				}
				conf, err := s.conflist(&tc.n)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := libcniConfList(conf); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %v, want %v mentioning %s", err, tc.want, tc.msg)
			}
		})
	}
}

func TestEndpointPolicies(t *testing.T) {
	raw := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	e := Endpoint{Policies: []json.RawMessage{
		raw(NatPolicy{Type: "NAT", Protocol: "TCP", InternalPort: 80, ExternalPort: 8080}),
		raw(NatPolicy{Type: "nat", Protocol: "udp", InternalPort: 53, ExternalPort: 5353}),
		raw(QosPolicy{Type: "QOS", MaximumOutgoingBandwidthInBytes: 1000}),
	}}
	caps, err := endpointPolicies(&e)
	if err != nil {
		t.Fatal(err)
	}
	want := []PortMapping{{"tcp", 8080, 80}, {"udp", 5353, 53}}
	if !reflect.DeepEqual(e.PortMappings, want) || e.MaxEgressBytes != 1000 {
		t.Errorf("got %+v %d", e.PortMappings, e.MaxEgressBytes)
	}
	if bw := caps["bandwidth"].(map[string]uint64); bw["egressRate"] != 8000 || bw["egressBurst"] != 64<<10*8 {
		t.Errorf("bandwidth %v", bw)
	}
	for _, tc := range []struct {
		p    json.RawMessage
		want error
	}{
		{raw(VlanPolicy{Type: "VLAN", VLAN: 3}), errors.ErrUnsupported},
		{raw(VsidPolicy{Type: "VSID", VSID: 3}), errors.ErrUnsupported},
		{raw(map[string]string{"Type": "ACL"}), errors.ErrUnsupported},
		{raw(NatPolicy{Type: "NAT", Protocol: "SCTP", InternalPort: 1, ExternalPort: 1}), errors.ErrUnsupported},
		{raw(NatPolicy{Type: "NAT", InternalPort: 1}), ErrInvalid},
		{raw(QosPolicy{Type: "QOS"}), ErrInvalid},
		{json.RawMessage(`{"Type":`), ErrInvalid},
	} {
		e := Endpoint{Policies: []json.RawMessage{tc.p}}
		if _, err := endpointPolicies(&e); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.p, err, tc.want)
		}
	}
}

func TestSplitRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`-A CNI-ISOLATION-STAGE-1 -i hcs1 ! -o hcs1 -j CNI-ISOLATION-STAGE-2`, []string{"-A", "CNI-ISOLATION-STAGE-1", "-i", "hcs1", "!", "-o", "hcs1", "-j", "CNI-ISOLATION-STAGE-2"}},
		{`-A X -m comment --comment "name: \"n\" id: \"e\"" -j RETURN`, []string{"-A", "X", "-m", "comment", "--comment", `name: "n" id: "e"`, "-j", "RETURN"}},
		{`-A X -m comment --comment ""`, []string{"-A", "X", "-m", "comment", "--comment", ""}},
	} {
		got, err := splitRule(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitRule(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := splitRule(`-A X "open`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

// FuzzSplitRule: splitting never panics, and words without quotes or backslashes
// come back as they were.
func FuzzSplitRule(f *testing.F) {
	f.Add(`-A CNI-FORWARD -m comment --comment "a \"b\"" -j ACCEPT`)
	f.Add(`-A X -i br0`)
	f.Fuzz(func(t *testing.T, s string) {
		args, err := splitRule(s)
		if err != nil {
			return
		}
		if !strings.ContainsAny(s, `"\`) {
			if want := strings.Fields(s); !reflect.DeepEqual(args, want) && len(want) > 0 {
				t.Errorf("splitRule(%q) = %q, want %q", s, args, want)
			}
		}
	})
}

// FuzzNetworkRequest: any JSON request either fails validation with ErrInvalid or
// ErrUnsupported, or gives a configuration list libcni accepts.
func FuzzNetworkRequest(f *testing.F) {
	f.Add([]byte(`{"Name":"n","Type":"nat","Subnets":[{"AddressPrefix":"10.0.0.0/24","GatewayAddress":"10.0.0.1"}]}`))
	f.Add([]byte(`{"Name":"n","Type":"l2bridge","Subnets":[{"AddressPrefix":"fd00::/64"}],"DNSServerList":"fd00::1"}`))
	f.Add([]byte(`{"Name":"n","Type":"nat","Policies":[{"Type":"VLAN","VLAN":5}],"Subnets":[{"AddressPrefix":"10.0.0.0/24"}]}`))
	s := &Store{opts: Options{StateDir: "/state"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var n Network
		if json.Unmarshal(b, &n) != nil {
			return
		}
		n.ID = "00000000-0000-4000-8000-000000000000"
		n.Bridge = bridgeName(n.ID)
		if err := s.validateNetwork(&n); err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		conf, err := s.conflist(&n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := libcniConfList(conf); err != nil {
			t.Fatal(err)
		}
	})
}
