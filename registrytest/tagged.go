package registrytest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
)

// testTaggedAddresses checks that tagged addresses registered through the
// backend, and a node's as Consul holds them, read back through Instances
// and AgentService, less the entries that restate the instance's own
// address (which Consul's agent adds by itself).
func (s suite) testTaggedAddresses(t *testing.T) {
	t.Parallel()
	srv, r := s.agent(t)

	t.Run("Service", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		reg := ttlRegistration("tagged-1", "tagged")
		reg.Address, reg.Port = "127.0.0.4", 8080
		reg.TaggedAddresses = map[string]beacon.ServiceAddress{
			beacon.TaggedWAN:     {Address: "198.51.100.7", Port: 443},
			beacon.TaggedLAN:     {Address: "10.1.2.3"},
			beacon.TaggedWANIPv6: {Address: "2001:db8::7"},
			"public":             {Address: "web.example.com", Port: 8443},
			// Restates Address and Port, as Consul's own default would:
			// left out of the instance.
			beacon.TaggedLANIPv4: {Address: "127.0.0.4", Port: 8080},
		}
		mustRegister(t, ctx, r, reg)
		want := maps.Clone(reg.TaggedAddresses)
		delete(want, beacon.TaggedLANIPv4)

		q := beacon.Query{Service: "tagged"}
		got, _ := lookup(t, ctx, r, q)
		if len(got) != 1 || !maps.Equal(got[0].TaggedAddresses, want) || got[0].NodeTaggedAddresses != nil {
			t.Fatalf("Instances(%s) = %+v, want one instance with TaggedAddresses %v and no NodeTaggedAddresses (it has an address of its own)", describe(q), got, want)
		}
		if h, p := got[0].AddressFor(beacon.WAN); h != "2001:db8::7" || p != 8080 {
			t.Errorf("AddressFor(WAN) = %q, %d; want the wan_ipv6 entry with the instance's port: %q, %d", h, p, "2001:db8::7", 8080)
		}
		agent, err := r.AgentService(ctx, reg.ID)
		if err != nil || !maps.Equal(agent.TaggedAddresses, want) {
			t.Errorf("AgentService(%q) = %+v, %v; want TaggedAddresses %v", reg.ID, agent, err, want)
		}

		// Register is an upsert: tagged addresses left out are removed.
		reg.TaggedAddresses = nil
		mustRegister(t, ctx, r, reg)
		if got, _ := lookup(t, ctx, r, q); len(got) != 1 || got[0].TaggedAddresses != nil {
			t.Errorf("Instances(%s) after registering without tagged addresses = %+v, want none", describe(q), got)
		}
	})

	t.Run("Node", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		// An external node, as a catalog registration makes it: its
		// tagged addresses are what this test says, whatever the agent's.
		catalogRegister(t, ctx, srv, map[string]any{
			"Node":    "tagged-node",
			"Address": "127.0.0.9",
			"TaggedAddresses": map[string]string{
				"lan": "127.0.0.9", "lan_ipv4": "127.0.0.9", "wan": "198.51.100.9", "wan_ipv4": "198.51.100.9",
			},
			"Service": map[string]any{"ID": "nodeaddr-1", "Service": "nodeaddr", "Port": 9000},
			"Check":   map[string]any{"CheckID": "nodeaddr-1-alive", "ServiceID": "nodeaddr-1", "Name": "alive", "Status": "passing"},
		})
		want := map[string]string{"wan": "198.51.100.9", "wan_ipv4": "198.51.100.9"}
		q := beacon.Query{Service: "nodeaddr"}
		got, _ := lookup(t, ctx, r, q)
		if len(got) != 1 || got[0].Address != "127.0.0.9" || !maps.Equal(got[0].NodeTaggedAddresses, want) || got[0].TaggedAddresses != nil {
			t.Fatalf("Instances(%s) = %+v, want one instance at the node's address 127.0.0.9 with NodeTaggedAddresses %v", describe(q), got, want)
		}
		for scope, wantHost := range map[beacon.Scope]string{beacon.LAN: "127.0.0.9", beacon.WAN: "198.51.100.9"} {
			if h, p := got[0].AddressFor(scope); h != wantHost || p != 9000 {
				t.Errorf("AddressFor(%v) = %q, %d; want %q, 9000", scope, h, p, wantHost)
			}
		}
	})
}

// catalogRegister sends one PUT /v1/catalog/register, which must succeed.
func catalogRegister(t *testing.T, ctx context.Context, srv *consultest.Server, body map[string]any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatalf("encoding a catalog registration: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL()+"/v1/catalog/register", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("PUT /v1/catalog/register: %v", err)
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("PUT /v1/catalog/register: %v", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /v1/catalog/register = %d %s, want 200", resp.StatusCode, msg)
	}
}
