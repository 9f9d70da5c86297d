// Package consultest starts real Consul agents for tests.
//
// NewServer runs "consul agent -dev" on a random loopback address with free
// ports, waits until the agent has elected itself leader and registered its
// own node, and stops it when the test ends:
//
//	func TestRegister(t *testing.T) {
//		srv := consultest.NewServer(t)
//		cfg := srv.Config() // consul.Config{Addresses: []string{srv.HTTPAddr}}
//		// ... exercise your service against cfg ...
//	}
//
// (ExampleNewServer is this test in full.) Outside a test, for a harness
// or a demo, Start starts the same agent and returns an error instead.
//
// The agent binary is $CONSUL_BIN, else consul on PATH, else bin/consul in
// the working directory or one of its parents (Beacon's own Makefile
// builds one there). When none is found, NewServer and NewCluster skip the
// test with one line naming CONSUL_BIN and PATH, so "go test ./..." on a
// machine without Consul passes with clear skips. A run that must test
// against Consul says so, and then fails instead of skipping, naming the
// missing binary:
//
//   - CI set to anything but "", "false" or "0" (as CI services set it), or
//   - BEACON_REQUIRE_CONSUL=1.
//
// A CONSUL_BIN that names no executable file always fails the test: a
// choice was made and is broken.
//
// Each agent binds its own loopback IP (127.a.b.c on Linux, where all of
// 127/8 reaches the loopback interface) and its own ports, so agents started
// by parallel tests, and by test binaries of other packages running at the
// same time, do not collide. Dev agents keep all state in memory: Restart
// brings up an empty agent on the same address.
//
// WithTLS serves the HTTP API over HTTPS only and requires client
// certificates, issued by a throwaway CA made for the test; Config then
// carries the https:// address and the CA and client certificate files, so
// a client built from it works unchanged:
//
//	srv := consultest.NewServer(t, consultest.WithTLS())
//	cfg := srv.Config() // https://ip:port, TLS{CAFile, CertFile, KeyFile}
//
// WithACL enables ACLs with default policy "deny" and a random management
// token. Config carries no token; MintToken creates one limited to the
// given rules:
//
//	srv := consultest.NewServer(t, consultest.WithTLS(), consultest.WithACL())
//	cfg := srv.Config()
//	cfg.Token = srv.MintToken(t, `service_prefix "" { policy = "write" }`)
//
// NewCluster starts a datacenter of real (non-dev) agents, servers and
// clients, each on a loopback IP of its own, and waits for a leader and for
// every node to be alive in the catalog. Nodes can be killed, paused,
// resumed and restarted with or without their data, to test failover:
//
//	c := consultest.NewCluster(t, 3, 2) // 3 servers, 2 client agents
//	cfg := c.Clients[0].Config()
//	c.Leader(t).Kill()
//	l := c.Leader(t) // waits for the new leader
//	c.Clients[0].Restart(t, true) // back with its registrations
//
// NewFederation starts two or more such datacenters, WAN-joined (each
// server with its own serf WAN port and -retry-join-wan to the others'),
// ready when every datacenter lists all of them and answers ?dc= reads
// for each; DC(name) is that datacenter's Cluster, and KillServers and
// StartServers take a whole datacenter down and back:
//
//	f := consultest.NewFederation(t, consultest.FederationSpec{Datacenters: []consultest.DatacenterSpec{
//		{Name: "dc1", Servers: 1, Clients: 1}, {Name: "dc2", Servers: 1}}})
//	cfg := f.DC("dc1").Clients[0].Config() // Query{Datacenter: "dc2"} reads dc2 through it
//	f.KillServers(t, "dc2")
//
// A datacenter can also be paused (SIGSTOP: connections accepted, nothing
// answered) or cut off by a real network partition: nftables rules that
// drop every packet between its nodes' addresses and the others', removed
// by Heal or when the test ends. Partition skips the test with one line
// where it cannot work (no nft command, no CAP_NET_ADMIN, or agents that
// share 127.0.0.1; see CanPartition):
//
//	f.PauseServers(t, "dc2")
//	f.ResumeServers(t, "dc2") // continued, WAN-rejoined, reachable again
//	p := f.Partition(t, "dc2")
//	// ... ?dc=dc2 reads through dc1 time out; each side works alone ...
//	p.Heal(t)
//
// Populate fills an agent's catalog with a synthetic fleet for scale tests:
// services of many instances, each instance on an external node of its own
// with a loopback address, a passing check, tags and meta, written by the
// servers through /v1/txn (42 instances a transaction), so the agent's
// anti-entropy never sees them. Churn then changes the fleet at a rate,
// bounded in count and time, and stops by itself (or at Stop, or when the
// test ends):
//
//	p := consultest.Populate(t, srv, consultest.Fleet{Services: 1000, Instances: 10})
//	c, _ := p.Churn(ctx, 10, 30*time.Second, consultest.FlipHealth, consultest.AddInstance, consultest.RemoveInstance)
//	stats, err := c.Wait() // about 300 changes
//
// Every agent is killed when its test ends. On Linux agents also run in a
// process group of their own and are killed by the kernel when the test
// binary dies (a -timeout panic, SIGKILL), so none outlives the test run.
// The agent's log is shown when the test fails.
package consultest
