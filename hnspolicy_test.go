package hostcompute

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/hostcompute/hostcompute/hns"
)

func TestDecodeRequest(t *testing.T) {
	for _, tc := range []struct {
		body string
		want error
	}{
		{`{"Name":"n","Type":"nat","Subnets":[{"AddressPrefix":"10.0.0.0/24"}]}`, nil},
		{`{"name":"n","ID":"","ManagementIP":"","DNSServerCompartment":0,"AutomaticDNS":false}`, nil},
		{`{"Name":"n","ManagementIP":"10.0.0.1"}`, errors.ErrUnsupported},
		{`{"Name":"n","Extra":{"a":1}}`, errors.ErrUnsupported},
		{`{"Name":`, hns.ErrInvalid},
		{`[]`, hns.ErrInvalid},
		{``, hns.ErrInvalid},
	} {
		var n HNSNetwork
		if err := decodeRequest("network", tc.body, &n); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tc.body, err, tc.want)
		}
	}
}

// FuzzDecodeRequest: a request either fails with ErrInvalid or ErrUnsupported, or
// decodes to an endpoint that encodes and decodes back to itself.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(`{"VirtualNetwork":"5c9f0a4e-0000-4000-8000-000000000000","Policies":[{"Type":"NAT","InternalPort":80,"ExternalPort":8080}]}`)
	f.Add(`{"Name":"e","IPAddress":"10.0.0.5","MacAddress":"00-15-5D-00-00-01","DNSServerList":"10.0.0.1,10.0.0.2"}`)
	f.Add(`{"Name":"e","IsRemoteEndpoint":true}`)
	f.Fuzz(func(t *testing.T, body string) {
		var e HNSEndpoint
		err := decodeRequest("endpoint", body, &e)
		if err != nil {
			if !errors.Is(err, hns.ErrInvalid) && !errors.Is(err, hns.ErrUnsupported) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		b, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		var again HNSEndpoint
		if err := decodeRequest("endpoint", string(b), &again); err != nil {
			t.Fatalf("re-encoded request %s refused: %v", b, err)
		}
		if !reflect.DeepEqual(normal(e), normal(again)) {
			t.Fatalf("round trip changed %+v into %+v", e, again)
		}
	})
}

// normal drops the differences encoding may make without changing meaning: an
// empty policy list and compacted raw JSON.
func normal(e HNSEndpoint) HNSEndpoint {
	if len(e.Policies) == 0 {
		e.Policies = nil
	}
	for i, p := range e.Policies {
		b, _ := json.Marshal(p)
		e.Policies[i] = b
	}
	if len(e.IPAddress) == 0 {
		e.IPAddress = nil
	}
	return e
}
