package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestInstancesNear: beacon instances -near lists a service's instances
// nearest first with the RTT Consul's coordinates estimate from the
// agent's node, in the table and in -json; -near with another
// datacenter is a usage error.
func TestInstancesNear(t *testing.T) {
	srv := consultest.NewServer(t)
	srv.SetCoordinate(t, srv.Name, 0, 0, 0, 0, 0, 0, 0, 0)
	for i, n := range []struct {
		node string
		ms   float64
	}{{"far", 30}, {"near", 2}, {"mid", 10}} {
		srv.RegisterExternal(t, n.node, "127.0.0.1", consultest.ExternalInstance{ID: "web-" + n.node, Service: "web", Port: 9000 + i})
		srv.SetCoordinate(t, n.node, n.ms/1000, 0, 0, 0, 0, 0, 0, 0)
	}
	srv.RegisterExternal(t, "nowhere", "127.0.0.1", consultest.ExternalInstance{ID: "web-nowhere", Service: "web", Port: 9009})

	var out string
	testutil.Eventually(t, deadline, "every coordinate applied", func() error {
		r := beaconRun(t, nil, "instances", "web", "-near", "-consul", srv.HTTPAddr)
		out = r.stdout
		done := r.code == 0
		for _, rtt := range []string{"2.02ms", "10.02ms", "30.02ms"} {
			done = done && strings.Contains(out, rtt)
		}
		return testutil.Want(done, "exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	})
	var order []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(l)
		order = append(order, f[0]+" "+f[4])
	}
	if got, want := strings.Join(order, ", "), "web-near 2.02ms, web-mid 10.02ms, web-far 30.02ms, web-nowhere -"; got != want {
		t.Errorf("beacon instances web -near: ID and RTT columns %q, want %q\n%s", got, want, out)
	}

	r := beaconRun(t, nil, "instances", "web", "-near", "-json", "-consul", srv.HTTPAddr)
	var got []struct {
		ID  string
		RTT *time.Duration
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || len(got) != 4 {
		t.Fatalf("beacon instances web -near -json = %q, %v; want 4 instances", r.stdout, err)
	}
	if got[0].ID != "web-near" || got[0].RTT == nil || (*got[0].RTT-2020*time.Microsecond).Abs() > time.Microsecond || got[3].RTT != nil {
		t.Errorf("beacon instances web -near -json = %s; want web-near first with RTT 2.02 ms in ns, web-nowhere last without", r.stdout)
	}

	r = beaconRun(t, nil, "instances", "web", "-near", "-dc", "dc1", "-consul", srv.HTTPAddr)
	if r.code != 0 || !hasLine(r.stdout, "web-near", "127.0.0.1:9001", "passing", "near", "2.02ms", "-", "-", "1/1") {
		t.Errorf("beacon instances web -near -dc dc1 (the agent's own): exit %d, stdout %q, stderr %q; want web-near at 2.02ms", r.code, r.stdout, r.stderr)
	}
	r = beaconRun(t, nil, "instances", "web", "-near", "-dc", "dc9", "-consul", srv.HTTPAddr)
	if r.code != 2 || !strings.Contains(r.stderr, "another coordinate space") {
		t.Errorf("beacon instances web -near -dc dc9: exit %d, stderr %q; want 2 and why", r.code, r.stderr)
	}
}
