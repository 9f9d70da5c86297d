package keeper

import (
	"context"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
)

// matches must hold for what the agent keeps of a registration, or the
// keeper would register again at every reconcile: the agent adds tagged
// addresses restating the instance's own (lan_ipv4, wan_ipv6…), which are
// read compacted.
func TestMatchesTheAgentsCopy(t *testing.T) {
	srv := consultest.NewServer(t)
	c, err := consulhttp.New(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wan := map[string]beacon.ServiceAddress{beacon.TaggedWAN: {Address: "192.0.2.10", Port: 8443}}
	for _, reg := range []beacon.Registration{
		{ID: "v4", Service: "m", Address: "127.0.0.1", Port: 8080},
		{ID: "v4-wan", Service: "m", Address: "127.0.0.1", Port: 8080, TaggedAddresses: wan},
		{ID: "v6", Service: "m", Address: "::1", Port: 8080},
		{ID: "node", Service: "m", Port: 8080},
	} {
		reg.Checks = []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthPassing}}
		if err := c.Register(ctx, reg); err != nil {
			t.Fatalf("Register(%q) = %v", reg.ID, err)
		}
		got, err := c.AgentService(ctx, reg.ID)
		if err != nil {
			t.Fatalf("AgentService(%q) = %v", reg.ID, err)
		}
		if !matches(got, reg) {
			t.Errorf("matches(agent's copy of %q, its registration) = false, want true (copy %+v)", reg.ID, got)
		}
		lost := reg
		lost.TaggedAddresses = map[string]beacon.ServiceAddress{beacon.TaggedWAN: {Address: "192.0.2.11", Port: 8443}}
		if matches(got, lost) {
			t.Errorf("matches(copy of %q, a registration with another WAN address) = true, want false", reg.ID)
		}
	}
}
