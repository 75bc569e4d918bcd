package hostcompute

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/hostcompute/hostcompute/hns"
)

// The HNS value types are the network engine's own (package hns), under hcsshim's
// names.
type (
	// Subnet is an address range of a network and its gateway.
	Subnet = hns.Subnet
	// MacPool is a range of MAC addresses for a network's endpoints.
	MacPool = hns.MacPool
	// NatPolicy publishes an endpoint's port on the host (a CNI port mapping).
	NatPolicy = hns.NatPolicy
	// QosPolicy limits an endpoint's outgoing bandwidth (the CNI bandwidth plugin).
	QosPolicy = hns.QosPolicy
	// VlanPolicy is accepted in JSON but refused by requests: there is no VLAN
	// tagging of networks on Linux here (an error matching errors.ErrUnsupported).
	VlanPolicy = hns.VlanPolicy
	// VsidPolicy is accepted in JSON but refused by requests, as VlanPolicy is.
	VsidPolicy = hns.VsidPolicy
)

// decodeRequest decodes a request body into v (a pointer to a struct). A field v does
// not have is an error matching errors.ErrUnsupported unless its value is empty
// (null, false, 0, "", [] or {}): a request that asks for something this service
// does not know is refused rather than half done.
func decodeRequest(what, request string, v any) error {
	if strings.TrimSpace(request) == "" {
		return fmt.Errorf("%w: %s request has no body", hns.ErrInvalid, what)
	}
	if err := json.Unmarshal([]byte(request), v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return fmt.Errorf("%w: %s request, at byte %d: %v", hns.ErrInvalid, what, syn.Offset, err)
		case errors.As(err, &typ):
			return fmt.Errorf("%w: %s request, field %s at byte %d: %v", hns.ErrInvalid, what, typ.Field, typ.Offset, err)
		}
		return fmt.Errorf("%w: %s request: %v", hns.ErrInvalid, what, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(request), &fields); err != nil {
		return fmt.Errorf("%w: %s request: %v", hns.ErrInvalid, what, err)
	}
	t := reflect.TypeOf(v).Elem()
	for name, raw := range fields {
		if _, ok := t.FieldByNameFunc(func(f string) bool { return strings.EqualFold(f, name) }); ok {
			continue
		}
		switch string(bytes.TrimSpace(raw)) {
		case "null", "false", "0", `""`, "[]", "{}":
			continue
		}
		return fmt.Errorf("%w: %s request field %q (%s) is not supported on Linux", hns.ErrUnsupported, what, name, raw)
	}
	return nil
}
