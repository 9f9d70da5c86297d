package consultest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon/internal/testutil"
)

// getJSON is a GET that returns errors instead of failing the test.
func getJSON(n *Node, path string, out any) error {
	code, body, err := request(n.client, http.MethodGet, n.URL()+path, n.ManagementToken(), nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, code, body)
	}
	return json.Unmarshal(body, out)
}

// passing returns the IDs of the passing instances of service x, read
// through n.
func passing(n *Node, service string) ([]string, error) {
	var entries []struct{ Service struct{ ID string } }
	if err := getJSON(n, "/v1/health/service/"+service+"?passing=1", &entries); err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Service.ID)
	}
	return ids, nil
}

// wantPassing waits until n reports exactly the instances want of service.
func wantPassing(t *testing.T, n *Node, service string, want ...string) {
	t.Helper()
	testutil.Eventually(t, deadline, fmt.Sprintf("%s: passing %s = %q", n.Name, service, want), func() error {
		ids, err := passing(n, service)
		if err != nil {
			return err
		}
		if strings.Join(ids, ",") != strings.Join(want, ",") {
			return fmt.Errorf("got %q", ids)
		}
		return nil
	})
}

// aliveServers returns how many members n sees as alive servers, and how
// many voters the raft configuration has.
func aliveServers(n *Node) (alive, voters int, err error) {
	var members []struct {
		Status int
		Tags   map[string]string
	}
	if err := getJSON(n, "/v1/agent/members", &members); err != nil {
		return 0, 0, err
	}
	for _, m := range members {
		if m.Tags["role"] == "consul" && m.Status == 1 { // serf.StatusAlive
			alive++
		}
	}
	var raft struct{ Servers []struct{ Voter bool } }
	if err := getJSON(n, "/v1/operator/raft/configuration", &raft); err != nil {
		return 0, 0, err
	}
	for _, s := range raft.Servers {
		if s.Voter {
			voters++
		}
	}
	return alive, voters, nil
}

func TestCluster(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := NewCluster(t, 3, 2, WithConfigJSON(`{"node_meta": {"team": "beacon"}}`))
	t.Logf("3 servers + 2 clients ready in %v", time.Since(start).Round(time.Millisecond))

	s1, c1, c2 := c.Servers[0], c.Clients[0], c.Clients[1]
	nodes := c.Nodes()
	if len(nodes) != 5 || nodes[0] != s1 || nodes[3] != c1 {
		t.Fatalf("Nodes() = %v", nodes)
	}
	ips, ids := map[string]bool{}, map[string]bool{}
	for i, n := range nodes {
		ips[n.IP], ids[n.ID()] = true, true
		if n.IsServer() != (i < 3) {
			t.Errorf("%s: IsServer() = %v", n.Name, n.IsServer())
		}
		if !n.Running() {
			t.Errorf("%s: Running() = false", n.Name)
		}
		if got := n.Config().Addresses; len(got) != 1 || got[0] != n.HTTPAddr {
			t.Errorf("%s: Config().Addresses = %q", n.Name, got)
		}
	}
	if len(ids) != 5 {
		t.Errorf("node IDs not distinct: %v", ids)
	}
	if len(ips) != 5 && loopbackIP() != "127.0.0.1" {
		t.Errorf("IPs not distinct: %v", ips)
	}
	if got := c.Config().Addresses; len(got) != 2 || got[0] != c1.HTTPAddr || got[1] != c2.HTTPAddr {
		t.Errorf("Cluster.Config().Addresses = %q, want the clients'", got)
	}

	// Every node sees all five, alive, and the configuration took.
	for _, n := range nodes {
		var members []struct{ Name string }
		do(t, http.MethodGet, n.URL()+"/v1/agent/members", nil, &members)
		if len(members) != 5 {
			t.Errorf("%s: %d members, want 5", n.Name, len(members))
		}
		var self struct {
			Config      struct{ NodeID string }
			DebugConfig map[string]any
			Meta        map[string]string
		}
		do(t, http.MethodGet, n.URL()+"/v1/agent/self", nil, &self)
		dc := self.DebugConfig
		if self.Config.NodeID != n.ID() || self.Meta["team"] != "beacon" ||
			dc["GossipLANProbeInterval"] != "200ms" || dc["GossipLANSuspicionMult"] != 3.0 ||
			dc["LeaveOnTerm"] != false || dc["SkipLeaveOnInt"] != true || dc["DataDir"] != n.DataDir {
			t.Errorf("%s: agent/self: NodeID %s Meta %v DebugConfig probe %v suspicion %v leave %v skip %v data %v",
				n.Name, self.Config.NodeID, self.Meta, dc["GossipLANProbeInterval"], dc["GossipLANSuspicionMult"],
				dc["LeaveOnTerm"], dc["SkipLeaveOnInt"], dc["DataDir"])
		}
		if n.IsServer() && (dc["ServerMode"] != true || dc["BootstrapExpect"] != 3.0 ||
			dc["ConsulRaftHeartbeatTimeout"] != "1s") {
			t.Errorf("%s: server %v bootstrap_expect %v raft heartbeat %v",
				n.Name, dc["ServerMode"], dc["BootstrapExpect"], dc["ConsulRaftHeartbeatTimeout"])
		}
	}
	if alive, voters, err := aliveServers(c1); err != nil || alive != 3 || voters != 3 {
		t.Errorf("alive servers %d, voters %d, %v; want 3, 3", alive, voters, err)
	}

	reg := map[string]any{
		"ID": "x-1", "Name": "x", "Port": 8080,
		"Check": map[string]any{"CheckID": "x-1-ttl", "TTL": "10m", "Status": "passing"},
	}
	t.Run("RegisterThroughClient", func(t *testing.T) {
		do(t, http.MethodPut, c1.URL()+"/v1/agent/service/register", reg, nil)
		// A heartbeat: the agent persists the state of a TTL check when
		// it is updated (not the initial status), and restores it after
		// a restart unless the TTL has expired meanwhile.
		do(t, http.MethodPut, c1.URL()+"/v1/agent/check/pass/x-1-ttl", nil, nil)
		for _, n := range c.Servers {
			wantPassing(t, n, "x", "x-1")
		}
	})

	t.Run("KillLeader", func(t *testing.T) {
		old := c.Leader(t)
		if !old.IsServer() {
			t.Fatalf("Leader() = %s, not a server", old.Name)
		}
		killed := time.Now()
		old.Kill()
		old.Kill() // idempotent
		if old.Running() {
			t.Errorf("Running() after Kill")
		}
		l := c.Leader(t)
		t.Logf("new leader %s %v after killing %s", l.Name, time.Since(killed).Round(time.Millisecond), old.Name)
		if l == old {
			t.Fatalf("Leader() = the killed node %s", l.Name)
		}
		// Reads through the survivors and the clients, and a write.
		for _, n := range c.Nodes() {
			if n != old {
				wantPassing(t, n, "x", "x-1")
			}
		}
		do(t, http.MethodPut, c2.URL()+"/v1/kv/after-failover", "v", nil)

		t.Run("RestartWithData", func(t *testing.T) {
			restarted := time.Now()
			old.Restart(t, true)
			t.Logf("%s ready %v after Restart", old.Name, time.Since(restarted).Round(time.Millisecond))
			testutil.Eventually(t, 30*time.Second, "3 alive servers, 3 voters", func() error {
				for _, n := range c.Nodes() {
					alive, voters, err := aliveServers(n)
					if err != nil {
						return err
					}
					if alive != 3 || voters != 3 {
						return fmt.Errorf("%s: %d alive servers, %d voters", n.Name, alive, voters)
					}
				}
				return nil
			})
			t.Logf("3 voters %v after Restart", time.Since(restarted).Round(time.Millisecond))
			wantPassing(t, old, "x", "x-1")
			// Its own (stale) read: the key written while it was down
			// has been replicated to it.
			testutil.Eventually(t, deadline, "key on the restarted server", func() error {
				var kv []struct{ Key string }
				return getJSON(old, "/v1/kv/after-failover?stale", &kv)
			})
		})
	})

	t.Run("RestartClient", func(t *testing.T) {
		c1.Kill()
		// Gossip notices the dead client: serfHealth fails, and so does x.
		killed := time.Now()
		wantPassing(t, s1, "x")
		t.Logf("killed client seen failed after %v", time.Since(killed).Round(time.Millisecond))

		c1.Restart(t, true)
		var services map[string]json.RawMessage
		do(t, http.MethodGet, c1.URL()+"/v1/agent/services", nil, &services)
		if services["x-1"] == nil {
			t.Errorf("keepData: x-1 not restored: %v", services)
		}
		// Restart waits for the catalog to list x-1 again, and its TTL
		// check comes back passing.
		ids, err := passing(s1, "x")
		if err != nil || len(ids) != 1 || ids[0] != "x-1" {
			t.Errorf("keepData: passing x = %q %v, want x-1 at once", ids, err)
		}

		c1.Restart(t, false)
		services = nil
		do(t, http.MethodGet, c1.URL()+"/v1/agent/services", nil, &services)
		if len(services) != 0 {
			t.Errorf("wiped data: services %v", services)
		}
		// Restart waits until the catalog matches the agent: gone at once.
		ids, err = passing(s1, "x")
		if err != nil || len(ids) != 0 {
			t.Errorf("wiped data: passing x = %q %v, want none", ids, err)
		}
		var node struct{ Node struct{ ID string } }
		do(t, http.MethodGet, s1.URL()+"/v1/catalog/node/"+c1.Name, nil, &node)
		if node.Node.ID != c1.ID() {
			t.Errorf("wiped data: node ID %s, want %s", node.Node.ID, c1.ID())
		}
	})

	t.Run("PauseClient", func(t *testing.T) {
		quick := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
		c2.Pause()
		c2.Pause() // idempotent
		if !c2.Running() {
			t.Errorf("paused: Running() = false")
		}
		if resp, err := quick.Get(c2.URL() + "/v1/agent/self"); err == nil {
			resp.Body.Close()
			t.Errorf("paused agent answered: %s", resp.Status)
		}
		c2.Resume()
		c2.Resume()
		testutil.Eventually(t, deadline, "resumed agent answers", func() error {
			resp, err := quick.Get(c2.URL() + "/v1/agent/self")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s", resp.Status)
			}
			return nil
		})
		// Kill (and the cleanup) end a paused agent too.
		c2.Pause()
		c2.Kill()
		if c2.Running() {
			t.Errorf("paused, killed: Running() = true")
		}
		c2.Resume() // not running: nothing to do
	})

	t.Run("QuorumLost", func(t *testing.T) {
		a, b := c.Servers[1], c.Servers[2]
		a.Kill()
		b.Kill()
		// One server of three: no leader. RestartNoWait returns once the
		// HTTP API answers, with or without one.
		start := time.Now()
		a.RestartNoWait(t, true)
		t.Logf("RestartNoWait: %v", time.Since(start).Round(time.Millisecond))
		// Two of three: a quorum again.
		l := c.Leader(t)
		t.Logf("leader %s %v after RestartNoWait", l.Name, time.Since(start).Round(time.Millisecond))
		if l == b {
			t.Errorf("Leader() = killed %s", b.Name)
		}
		b.Restart(t, true)
		wantPassing(t, b, "x")
	})
}

func TestClusterTLSACL(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := NewCluster(t, 1, 1, WithTLS(), WithACL(), WithNodeName("sec"))
	t.Logf("1 server + 1 client with TLS and ACL ready in %v", time.Since(start).Round(time.Millisecond))
	s, cl := c.Servers[0], c.Clients[0]
	if s.Name != "sec-server-1" || cl.Name != "sec-client-1" {
		t.Errorf("names %s %s", s.Name, cl.Name)
	}
	// One CA and one management token for the whole cluster.
	sCA, _, _ := s.TLSFiles()
	cCA, _, _ := cl.TLSFiles()
	if sCA == "" || sCA != cCA || s.ManagementToken() == "" || s.ManagementToken() != cl.ManagementToken() {
		t.Fatalf("CA %q %q, tokens %q %q: want one each, shared", sCA, cCA, s.ManagementToken(), cl.ManagementToken())
	}
	cfg := c.Config()
	if len(cfg.Addresses) != 1 || cfg.Addresses[0] != "https://"+cl.HTTPAddr || cfg.TLS.CAFile != sCA {
		t.Errorf("Config() = %+v", cfg)
	}

	hc := tlsClient(t, cl.Server, true)
	reg := map[string]any{"ID": "x-1", "Name": "x", "Port": 8080}
	code, body, err := request(hc, http.MethodPut, cl.URL()+"/v1/agent/service/register", "", reg)
	if err != nil || code != http.StatusForbidden {
		t.Errorf("register without a token: %d %s %v, want 403", code, body, err)
	}
	// A token minted through the server works on the client.
	tok := s.MintToken(t, writeServicesRules)
	code, body, err = request(hc, http.MethodPut, cl.URL()+"/v1/agent/service/register", tok, reg)
	if err != nil || code != http.StatusOK {
		t.Fatalf("register with a minted token: %d %s %v", code, body, err)
	}
	testutil.Eventually(t, deadline, "x-1 in the catalog", func() error {
		code, body, err := request(tlsClient(t, s.Server, true), http.MethodGet, s.URL()+"/v1/catalog/service/x", tok, nil)
		if err != nil || code != http.StatusOK || !strings.Contains(string(body), `"x-1"`) {
			return fmt.Errorf("%d %s %v", code, body, err)
		}
		return nil
	})

	// Server RPC checks certificates both ways, and a restart keeps them.
	for _, n := range c.Nodes() {
		var self struct {
			DebugConfig struct {
				TLS struct {
					InternalRPC struct{ VerifyIncoming, VerifyOutgoing bool }
				}
			}
		}
		code, body, err := request(tlsClient(t, n.Server, true), http.MethodGet, n.URL()+"/v1/agent/self", n.ManagementToken(), nil)
		if err != nil || code != http.StatusOK || json.Unmarshal(body, &self) != nil {
			t.Fatalf("%s: agent/self: %d %v", n.Name, code, err)
		}
		if rpc := self.DebugConfig.TLS.InternalRPC; !rpc.VerifyIncoming || !rpc.VerifyOutgoing {
			t.Errorf("%s: internal RPC TLS %+v, want verify both ways", n.Name, rpc)
		}
	}
	cl.Restart(t, true)
	s.Restart(t, true)
	if l := c.Leader(t); l != s {
		t.Errorf("Leader() = %s", l.Name)
	}
}

// TestClusterPortTaken starts a cluster whose server finds its HTTP port
// taken: NewCluster starts all nodes again on new addresses. Not parallel:
// the hook is global, and the parallel tests wait until this one is done.
func TestClusterPortTaken(t *testing.T) {
	var blocked string
	clusterStartHook = func(c *Cluster, attempt int) {
		if attempt > 0 {
			return
		}
		blocked = c.Servers[0].HTTPAddr
		l, err := net.Listen("tcp", blocked)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
	}
	defer func() { clusterStartHook = nil }()
	c := NewCluster(t, 1, 1)
	s := c.Servers[0]
	if blocked == "" || s.HTTPAddr == blocked {
		t.Fatalf("server on %s, blocked %q", s.HTTPAddr, blocked)
	}
	for _, n := range c.Nodes() {
		b, err := os.ReadFile(n.log)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(string(b), "=== consultest: start "); got != 2 {
			t.Errorf("%s: %d starts, want 2", n.Name, got)
		}
	}
	// The client joined the server on its new address.
	var members []struct{ Name string }
	do(t, http.MethodGet, c.Clients[0].URL()+"/v1/agent/members", nil, &members)
	if len(members) != 2 {
		t.Errorf("client sees %d members, want 2", len(members))
	}
}

func TestClusterClientNodeMeta(t *testing.T) {
	t.Parallel()
	c := NewCluster(t, 1, 3, WithClientNodeMeta(map[string]string{"zone": "a"}, map[string]string{"zone": "b"}))
	var nodes []struct {
		Node string
		Meta map[string]string
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Servers[0].getJSON(ctx, "/v1/catalog/nodes", &nodes); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{c.Clients[0].Name: "a", c.Clients[1].Name: "b", c.Clients[2].Name: "", c.Servers[0].Name: ""}
	for _, n := range nodes {
		if z, ok := want[n.Node]; !ok || n.Meta["zone"] != z {
			t.Errorf("node %s: meta %v, want zone %q", n.Node, n.Meta, z)
		}
		delete(want, n.Node)
	}
	if len(want) != 0 {
		t.Errorf("nodes %v missing from the catalog", want)
	}
}
