package main

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hostcompute/hostcompute/hns"
	"github.com/hostcompute/hostcompute/internal/cnitest"
)

func TestNetworkEndpointCommands(t *testing.T) {
	cnitest.Setup(t)
	t.Setenv("HOSTCOMPUTE_HNS_STATE_DIR", t.TempDir())
	t.Setenv("HOSTCOMPUTE_NETNS_DIR", t.TempDir())
	p := cnitest.Subnet(t)
	name := "cli-" + p.Addr().String()

	r := hcs(t, nil, "-o", "json", "network", "create", "--subnet", p.String(), "--dns-server", p.Addr().Next().String(), name)
	wantCode(t, r, exitOK)
	var n hns.Network
	if err := json.Unmarshal([]byte(r.stdout), &n); err != nil || n.ID == "" || n.Type != "nat" {
		t.Fatalf("network create -o json: %q, %v", r.stdout, err)
	}
	t.Cleanup(func() { hcs(t, nil, "network", "rm", n.ID) })
	wantCode(t, hcs(t, nil, "network", "create", "--subnet", "10.232.0.0/24", name), exitExists)
	wantCode(t, hcs(t, nil, "network", "create", "--subnet", "10.232.0.0/33", "x"), exitInvalidInput)
	wantCode(t, hcs(t, nil, "network", "create", "--type", "overlay", "--subnet", "10.232.0.0/24", "x"), exitFailure)
	wantCode(t, hcs(t, nil, "network", "create", "x"), exitUsage)

	var eps []hns.Endpoint
	for _, ename := range []string{"one", "two"} {
		r := hcs(t, nil, "-o", "json", "endpoint", "create", "--network", name, "--publish", "18080:80", ename)
		if ename == "two" {
			wantCode(t, r, exitExists) // the host port is taken
			r = hcs(t, nil, "-o", "json", "endpoint", "create", "--network", name, ename)
		}
		wantCode(t, r, exitOK)
		var e hns.Endpoint
		if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.ID == "" || e.NetNS == "" {
			t.Fatalf("endpoint create -o json: %q, %v", r.stdout, err)
		}
		t.Cleanup(func() { hcs(t, nil, "endpoint", "rm", e.ID) })
		eps = append(eps, e)
	}
	wantCode(t, hcs(t, nil, "endpoint", "create", "--network", "nothing"), exitNotFound)
	wantCode(t, hcs(t, nil, "endpoint", "create", "--network", name, "--publish", "80"), exitUsage)

	b, _ := netip.AddrFromSlice(eps[1].IPAddress)
	if !cnitest.Ping(t, eps[0].NetNS, b.Unmap(), 5*time.Second) {
		t.Error("the endpoints do not reach each other")
	}
	wantCode(t, hcs(t, nil, "endpoint", "check", "one", "two"), exitOK)
	r = hcs(t, nil, "-o", "json", "endpoint", "stats", "one")
	wantCode(t, r, exitOK)
	var st hns.Stats
	if json.Unmarshal([]byte(r.stdout), &st) != nil || st.PacketsSent == 0 {
		t.Errorf("endpoint stats: %s", r.stdout)
	}

	r = hcs(t, nil, "network", "ls")
	wantCode(t, r, exitOK)
	if !strings.Contains(r.stdout, n.ID) || !strings.Contains(r.stdout, p.String()) {
		t.Errorf("network ls:\n%s", r.stdout)
	}
	r = hcs(t, nil, "-o", "json", "endpoint", "ls", "--network", n.ID)
	wantCode(t, r, exitOK)
	var list []hns.Endpoint
	if json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) != 2 {
		t.Errorf("endpoint ls -o json: %s", r.stdout)
	}
	r = hcs(t, nil, "endpoint", "inspect", "one")
	wantCode(t, r, exitOK)
	if !strings.Contains(r.stdout, eps[0].NetNS) || !strings.Contains(r.stdout, "18080:80/tcp") {
		t.Errorf("endpoint inspect:\n%s", r.stdout)
	}
	wantCode(t, hcs(t, nil, "network", "inspect", "nothing"), exitNotFound)
	wantCode(t, hcs(t, nil, "network", "rm", name), exitFailure) // has endpoints

	wantCode(t, hcs(t, nil, "endpoint", "rm", "one", "two"), exitOK)
	wantCode(t, hcs(t, nil, "endpoint", "rm", "one"), exitNotFound)
	wantCode(t, hcs(t, nil, "network", "rm", name), exitOK)
	r = hcs(t, nil, "-o", "json", "network", "ls")
	wantCode(t, r, exitOK)
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("networks left: %s", r.stdout)
	}
	if left := cnitest.IPTablesMentions(t, false, n.ID, n.Bridge, eps[0].ID, eps[1].ID); len(left) > 0 {
		t.Errorf("iptables left: %q", left)
	}
}
