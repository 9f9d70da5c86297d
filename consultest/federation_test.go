package consultest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestFederation: two datacenters federate; a service registered in dc2 is
// found through a dc1 client with dc=dc2; with dc2's servers killed that
// read fails while dc1's own reads go on; with them back it works again.
func TestFederation(t *testing.T) {
	start := time.Now()
	f := NewFederation(t, FederationSpec{Datacenters: []DatacenterSpec{
		{Name: "dc1", Servers: 1, Clients: 1},
		{Name: "dc2", Servers: 1, Clients: 1},
	}})
	t.Logf("federated in %v", time.Since(start).Round(time.Millisecond))
	dc1, dc2 := f.DC("dc1"), f.DC("dc2")
	if dc1 == nil || dc2 == nil || f.DC("dc3") != nil {
		t.Fatalf("DC: dc1 %v, dc2 %v, dc3 %v", dc1, dc2, f.DC("dc3"))
	}
	if got := fmt.Sprint(f.Names()); got != "[dc1 dc2]" {
		t.Fatalf("Names() = %s", got)
	}
	// Each datacenter's nodes are its own: their IPs differ from the
	// other's (unless the machine routes only 127.0.0.1).
	if ip1, ip2 := dc1.Clients[0].IP, dc2.Clients[0].IP; ip1 == ip2 && ip1 != "127.0.0.1" {
		t.Errorf("dc1 and dc2 clients share IP %s", ip1)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	in1, err := consulhttp.New(dc1.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer in1.Close()
	in2, err := consulhttp.New(dc2.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer in2.Close()

	for _, r := range []struct {
		c   *consulhttp.Client
		reg beacon.Registration
	}{
		{in2, beacon.Registration{ID: "web-dc2", Service: "web", Port: 8080}},
		{in1, beacon.Registration{ID: "api-dc1", Service: "api", Port: 9090}},
	} {
		if err := r.c.Register(ctx, r.reg); err != nil {
			t.Fatalf("register %s: %v", r.reg.ID, err)
		}
	}

	remote := beacon.Query{Service: "web", Datacenter: "dc2"}
	local := beacon.Query{Service: "api"}
	found := func(c *consulhttp.Client, q beacon.Query, wantID, wantNode string) error {
		qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
		defer qcancel()
		ins, _, err := c.Instances(qctx, q)
		if err != nil {
			return err
		}
		if len(ins) != 1 || ins[0].ID != wantID || ins[0].Node != wantNode {
			return fmt.Errorf("instances of %s dc=%q: %+v, want %s on %s", q.Service, q.Datacenter, ins, wantID, wantNode)
		}
		return nil
	}
	testutil.Eventually(t, 20*time.Second, "web found in dc2 through a dc1 client", func() error {
		return found(in1, remote, "web-dc2", dc2.Clients[0].Name)
	})
	// Without dc= the dc1 client does not see dc2's service.
	if ins, _, err := in1.Instances(ctx, beacon.Query{Service: "web"}); err != nil || len(ins) != 0 {
		t.Fatalf("web in dc1: %+v, %v; want none", ins, err)
	}
	testutil.Eventually(t, 20*time.Second, "api found in dc1", func() error {
		return found(in1, local, "api-dc1", dc1.Clients[0].Name)
	})

	killed := time.Now()
	f.KillServers(t, "dc2")
	if dc2.Servers[0].Running() {
		t.Fatal("dc2's server still runs after KillServers")
	}
	took := testutil.Eventually(t, 20*time.Second, "dc=dc2 read fails with dc2's servers down", func() error {
		if err := found(in1, remote, "web-dc2", dc2.Clients[0].Name); err == nil {
			return fmt.Errorf("still answered")
		} else {
			t.Logf("dc=dc2 through dc1 %v after the kill: %v", time.Since(killed).Round(time.Millisecond), err)
		}
		return nil
	})
	t.Logf("dc=dc2 read failed %v after the kill", took.Round(time.Millisecond))
	// WAN gossip (tuned by NewFederation) marks dc2's server failed.
	testutil.Eventually(t, 20*time.Second, "dc2's server failed in dc1's WAN pool", func() error {
		var members []struct {
			Name   string
			Status int
		}
		if err := dc1.Servers[0].getJSON(ctx, "/v1/agent/members?wan=1", &members); err != nil {
			return err
		}
		for _, m := range members {
			if m.Name == dc2.Servers[0].Name+".dc2" && m.Status != 1 { // 1: alive
				return nil
			}
		}
		return fmt.Errorf("WAN members %+v", members)
	})
	t.Logf("dc2's server failed in dc1's WAN pool %v after the kill", time.Since(killed).Round(time.Millisecond))
	// dc1 itself is unaffected: a few reads in a row, each must succeed.
	for range 5 {
		if err := found(in1, local, "api-dc1", dc1.Clients[0].Name); err != nil {
			t.Fatalf("dc1's own read with dc2 down: %v", err)
		}
	}

	restarted := time.Now()
	f.StartServers(t, "dc2")
	t.Logf("dc2's servers back in the federation in %v", time.Since(restarted).Round(time.Millisecond))
	// The restarted server was given the other datacenter's servers to
	// rejoin, not only its WAN snapshot.
	if tail, want := dc2.Servers[0].logTail(), "-retry-join-wan "+dc1.Servers[0].SerfWANAddr(); !strings.Contains(tail, want) {
		t.Errorf("dc2's server log has no %q:\n%s", want, tail)
	}
	testutil.Eventually(t, 20*time.Second, "web found in dc2 through dc1 again", func() error {
		return found(in1, remote, "web-dc2", dc2.Clients[0].Name)
	})
	if err := found(in1, local, "api-dc1", dc1.Clients[0].Name); err != nil {
		t.Fatalf("dc1's own read after dc2 returned: %v", err)
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// TestFederationThree: three datacenters, servers only, federate; with
// dc3's servers killed dc1 and dc2 still reach each other; dc2's three
// servers, all killed, come back with a quorum and rejoin.
func TestFederationThree(t *testing.T) {
	f := NewFederation(t, FederationSpec{Datacenters: []DatacenterSpec{
		{Name: "dc1", Servers: 1}, {Name: "dc2", Servers: 3}, {Name: "dc3", Servers: 1},
	}})
	f.KillServers(t, "dc3")
	c := f.DC("dc1").Servers[0]
	var nodes []struct{ Node string }
	if err := c.getJSON(context.Background(), "/v1/catalog/nodes?dc=dc2", &nodes); err != nil || len(nodes) != 3 {
		t.Fatalf("dc2's nodes through dc1 with dc3 down: %+v, %v", nodes, err)
	}
	if err := c.getJSON(context.Background(), "/v1/catalog/nodes?dc=dc3", &nodes); err == nil {
		t.Fatalf("dc3's nodes through dc1 with dc3's servers down: %+v, want an error", nodes)
	}
	f.KillServers(t, "dc2")
	if err := c.getJSON(context.Background(), "/v1/catalog/nodes?dc=dc2", &nodes); err == nil {
		t.Fatalf("dc2's nodes through dc1 with dc2's servers down: %+v, want an error", nodes)
	}
	f.StartServers(t, "dc3")
	f.StartServers(t, "dc2")
	if l := f.DC("dc2").Leader(t); l == nil {
		t.Fatal("no leader in dc2")
	}
	if err := c.getJSON(context.Background(), "/v1/catalog/nodes?dc=dc2", &nodes); err != nil || len(nodes) != 3 {
		t.Fatalf("dc2's nodes through dc1 after StartServers: %+v, %v", nodes, err)
	}
}

// TestFederationSpecErrors: a spec NewFederation cannot start is refused
// before any agent runs.
func TestFederationSpecErrors(t *testing.T) {
	if _, err := BinaryPath(); err != nil {
		t.Skip(err)
	}
	for _, spec := range []FederationSpec{
		{},
		{Datacenters: []DatacenterSpec{{Name: "dc1", Servers: 1}}},
		{Datacenters: []DatacenterSpec{{Name: "dc1", Servers: 1}, {Name: "dc1", Servers: 1}}},
		{Datacenters: []DatacenterSpec{{Name: "dc1", Servers: 1}, {Name: "", Servers: 1}}},
		{Datacenters: []DatacenterSpec{{Name: "dc1", Servers: 1, Options: []Option{WithTLS()}}, {Name: "dc2", Servers: 1}}},
		{Datacenters: []DatacenterSpec{{Name: "dc1", Servers: 1}, {Name: "dc2", Servers: 1, Options: []Option{WithConfigJSON("{")}}}},
	} {
		if f, err := newFederation(t, spec); err == nil {
			t.Errorf("newFederation(%+v) = %v, want an error", spec, f)
		}
	}
}
