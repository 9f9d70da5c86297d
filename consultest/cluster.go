package consultest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/beaconsd/beacon/consul"
)

// clusterStartTimeout bounds NewCluster: all agents start at once, and
// servers elect a leader only once bootstrap_expect of them have joined.
const clusterStartTimeout = 60 * time.Second

// Cluster is a Consul datacenter of server and client agents on loopback.
// Unlike NewServer's dev agents they are ordinary agents: servers keep raft
// state in their data dir, clients persist services and checks registered
// through them, and a killed node is noticed by gossip.
type Cluster struct {
	Servers []*Node
	Clients []*Node

	pki    *pki   // WithTLS: one CA for all agents; nil without
	pkiDir string // where pki keeps its files; "" without
}

// Node is an agent of a Cluster: a Server (Name, IP, HTTPAddr, DNSAddr,
// DataDir, Config, URL, Stop, Pause, Resume, Running, TLSFiles,
// ManagementToken, MintToken work as they do there) that is a Consul server
// or a client agent of the cluster. Its IP, ports and node ID never change,
// across restarts too.
type Node struct{ *Server }

type role int

const (
	roleDev role = iota
	roleServer
	roleClient
)

// NewCluster starts a datacenter of servers Consul servers and clients
// client agents, each on a loopback IP and ports of its own, and waits until
// a leader is elected and every node is alive in the catalog, with its
// agent's services synced. Options apply to every node; WithNodeName sets
// the prefix of the node names (<prefix>-server-1, <prefix>-client-1, ...).
// With WithTLS all agents share one CA; with WithACL they share the
// management token, which is also every agent's own token.
//
// Each node runs with:
//
//	node_id           a random UUID, pinned for the node's lifetime
//	data_dir          DataDir (kept or wiped by Node.Restart)
//	server            true for servers, with bootstrap_expect = servers
//	retry_join        the serf LAN addresses (ip:port) of all other servers,
//	                  retry_interval 500ms
//	bind_addr, client_addr, advertise_addr  the node's IP
//	ports             http, dns, serf_lan, serf_wan, server of its own;
//	                  https, grpc, grpc_tls off (https on with WithTLS)
//	performance       raft_multiplier 1
//	gossip_lan        probe_interval 200ms, probe_timeout 100ms,
//	                  suspicion_mult 3: a killed node is failed in ~1-2s
//	autopilot         cleanup_dead_servers false: a killed server stays a
//	                  voter and in the catalog (by default autopilot
//	                  removes it after ~8s, deregisters its node, and it
//	                  votes again only ~10s after it returns);
//	                  server_stabilization_time 1s
//	leave_on_terminate false, skip_leave_on_interrupt true,
//	disable_update_check true, log_level debug
//
// Without a consul binary the test is skipped, or fails, as NewServer
// says; it fails if the cluster is not ready within 60 seconds. All agents
// are killed and their directories removed when the test ends.
func NewCluster(t testing.TB, servers, clients int, opts ...Option) *Cluster {
	t.Helper()
	c, err := newCluster(t.Logf, servers, clients, opts...)
	if err != nil {
		abort(t, err)
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes() {
			n.release(t)
		}
		os.RemoveAll(c.pkiDir)
	})
	return c
}

// newCluster starts a cluster as NewCluster describes, on the path
// newServer takes. logf (nil: none) hears of retries. On error nothing is
// left running or on disk.
func newCluster(logf func(format string, args ...any), servers, clients int, opts ...Option) (c *Cluster, err error) {
	if servers < 1 || clients < 0 {
		return nil, fmt.Errorf("consultest: NewCluster(%d servers, %d clients): need a server", servers, clients)
	}
	bin, o, err := prepare(opts)
	if err != nil {
		return nil, err
	}
	c = &Cluster{}
	defer func() {
		if err != nil {
			for _, n := range c.Nodes() {
				n.close()
			}
			os.RemoveAll(c.pkiDir)
		}
	}()
	if o.tls {
		// One CA for all nodes, in a directory that outlives every one.
		if c.pkiDir, err = os.MkdirTemp("", "consultest-pki-"); err != nil {
			return c, fmt.Errorf("consultest: %w", err)
		}
		if c.pki, err = newPKI(c.pkiDir); err != nil {
			return c, fmt.Errorf("consultest: creating certificates: %w", err)
		}
	}
	hc, err := clientFor(c.pki)
	if err != nil {
		return c, fmt.Errorf("consultest: %w", err)
	}
	var mgmt string
	if o.acl {
		mgmt = randomUUID()
	}
	add := func(r role, name string) (*Node, error) {
		s, err := newAgent(bin, o, r, name)
		if err != nil {
			return nil, err
		}
		s.client, s.pki, s.mgmtToken = hc, c.pki, mgmt
		s.nodeID, s.cluster = randomUUID(), c
		return &Node{s}, nil
	}
	for i := range servers {
		n, err := add(roleServer, fmt.Sprintf("%s-server-%d", o.name, i+1))
		if err != nil {
			return c, err
		}
		c.Servers = append(c.Servers, n)
	}
	for i := range clients {
		n, err := add(roleClient, fmt.Sprintf("%s-client-%d", o.name, i+1))
		if err != nil {
			return c, err
		}
		c.Clients = append(c.Clients, n)
	}

	// Nothing else can reach the nodes yet; the locks are for the methods
	// startAll shares with Server and Node.
	var nodes []*Server
	for _, n := range c.Nodes() {
		n.mu.Lock()
		defer n.mu.Unlock()
		nodes = append(nodes, n.Server)
	}
	hook := func(attempt int) {
		if clusterStartHook != nil {
			clusterStartHook(c, attempt)
		}
	}
	return c, startAll(nodes, clusterStartTimeout, logf, hook)
}

// clusterStartHook, when set by a test, runs after NewCluster chose the
// nodes' addresses, before it starts them.
var clusterStartHook func(c *Cluster, attempt int)

// pickAddr chooses a loopback IP and free ports for n, distinct from the
// ones in used (where all nodes share 127.0.0.1, only the ports differ), and
// adds them to used.
func (n *Server) pickAddr(used map[string]bool) error {
	var ip string
	for try := 0; ; try++ {
		ip = loopbackIP()
		if ip == "127.0.0.1" || !used[ip] || try == 20 {
			break
		}
	}
	for try := 0; ; try++ {
		p, err := freePorts(ip)
		if err != nil {
			return err
		}
		addrs := []string{ip}
		for _, port := range []int{p.HTTP, p.DNS, p.SerfLAN, p.SerfWAN, p.Server} {
			addrs = append(addrs, net.JoinHostPort(ip, strconv.Itoa(port)))
		}
		if slices.ContainsFunc(addrs[1:], func(a string) bool { return used[a] }) && try < 20 {
			continue
		}
		for _, a := range addrs {
			used[a] = true
		}
		n.IP, n.ports = ip, p
		n.HTTPAddr = net.JoinHostPort(ip, strconv.Itoa(p.HTTP))
		n.DNSAddr = net.JoinHostPort(ip, strconv.Itoa(p.DNS))
		return nil
	}
}

// WithClientNodeMeta gives a Cluster's client agents node meta of their
// own: client i (Clients[i]) gets meta[i] as its node_meta, so instances
// registered through it carry it as beacon.Instance.NodeMeta (zones, say:
// {"zone": "a"}). Clients beyond len(meta), and a nil entry, get none; the
// servers get none. WithConfigJSON's node_meta, given to every node, is
// merged with it. Consul refuses invalid meta (keys of
// [A-Za-z0-9_-], the consul- prefix reserved), and the cluster then fails
// to start.
func WithClientNodeMeta(meta ...map[string]string) Option {
	return func(o *options) { o.clientMeta = meta }
}

// Nodes returns the servers, then the clients.
func (c *Cluster) Nodes() []*Node {
	return append(slices.Clone(c.Servers), c.Clients...)
}

// Config returns a client configuration listing the HTTP API of the given
// nodes, or of all clients when none is given (of all servers if there are
// no clients). With WithTLS it carries the CA and client certificate; it
// never carries an ACL token.
func (c *Cluster) Config(nodes ...*Node) consul.Config {
	if len(nodes) == 0 {
		nodes = c.Clients
		if len(nodes) == 0 {
			nodes = c.Servers
		}
	}
	var cfg consul.Config
	for _, n := range nodes {
		nc := n.Config()
		cfg.Addresses = append(cfg.Addresses, nc.Addresses...)
		cfg.TLS = nc.TLS
	}
	return cfg
}

// Leader returns the server that is the raft leader: the node whose
// "ip:port" of server RPC /v1/status/leader reports, asked of every running
// server that is not paused, and which reports itself. It waits for one up
// to 30 seconds (after a leader is killed, the others elect a new one in a
// few seconds) and fails the test if there is none.
func (c *Cluster) Leader(t testing.TB) *Node {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	var last error
	for {
		n, err := c.leader()
		if err == nil {
			return n
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("consultest: no raft leader after %v: %v", startTimeout, last)
		}
		time.Sleep(pollInterval)
	}
}

func (c *Cluster) leader() (*Node, error) {
	byAddr := map[string]*Node{}
	for _, n := range c.Servers {
		byAddr[n.ServerAddr()] = n
	}
	var errs []error
	for _, n := range c.Servers {
		if !n.answering() {
			continue
		}
		l, err := n.leaderAddr()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ln := byAddr[l]
		if ln == nil {
			errs = append(errs, fmt.Errorf("%s: leader %q is no server of the cluster", n.Name, l))
			continue
		}
		if !ln.answering() {
			errs = append(errs, fmt.Errorf("%s: leader %s (%s) is killed or paused", n.Name, ln.Name, l))
			continue
		}
		if ln != n {
			// The leader's own word: a follower may not have noticed
			// yet that its leader is gone.
			if self, err := ln.leaderAddr(); err != nil || self != l {
				errs = append(errs, fmt.Errorf("%s: leader %s does not say so itself: %q %v", n.Name, ln.Name, self, err))
				continue
			}
		}
		return ln, nil
	}
	if len(errs) == 0 {
		return nil, errors.New("no running server")
	}
	return nil, errors.Join(errs...)
}

// leaderAddr asks the agent for /v1/status/leader, for at most a second.
func (n *Node) leaderAddr() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var l string
	if err := n.getJSON(ctx, "/v1/status/leader", &l); err != nil {
		return "", fmt.Errorf("%s: %w", n.Name, err)
	}
	if l == "" {
		return "", fmt.Errorf("%s: no leader", n.Name)
	}
	return l, nil
}

// answering reports whether the agent runs and is not paused.
func (n *Node) answering() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil && !n.proc.exited() && !n.paused
}

// ID returns the node ID, fixed for the node's lifetime.
func (n *Node) ID() string { return n.nodeID }

// IsServer reports whether the node is a Consul server.
func (n *Node) IsServer() bool { return n.role == roleServer }

// ServerAddr returns "ip:port" of the node's server RPC port, as
// /v1/status/leader and /v1/status/peers report servers.
func (n *Node) ServerAddr() string { return net.JoinHostPort(n.IP, strconv.Itoa(n.ports.Server)) }

// SerfLANAddr returns "ip:port" of the node's serf LAN (gossip) port.
func (n *Node) SerfLANAddr() string { return net.JoinHostPort(n.IP, strconv.Itoa(n.ports.SerfLAN)) }

// Kill kills the agent (SIGKILL, no graceful leave: the others see it fail)
// and waits until it has exited. It may be called more than once. It is
// Stop.
func (n *Node) Kill() { n.Stop() }

// Restart kills the agent, if it runs, and starts it again on the same IP
// and ports with the same node ID, keeping its data dir or wiping it first.
// It waits until the agent knows a leader and its node is alive in the
// catalog (serfHealth passing) under its ID; for a client also until the
// catalog holds the node info and exactly the services the agent has, their
// checks in the states the agent has (a client syncs as soon as it sees a
// server). A server is not waited for
// that: one that found no leader when it started syncs only 15-30 seconds
// later (Consul's retry interval), which matters only if its node was
// deregistered or it has services of its own.
//
// Waiting needs a leader: without a quorum of servers Restart fails the
// test after 30 seconds. Use RestartNoWait then.
//
// With keepData a server rejoins with its raft state, and a client comes
// back with the services and checks registered through it (a TTL check with
// the state of its last update, unless its TTL expired meanwhile).
// Without it a client comes back without them and removes them from the
// catalog, and a server catches up from the leader.
func (n *Node) Restart(t testing.TB, keepData bool) {
	t.Helper()
	if err := n.restart(keepData, waitFull); err != nil {
		t.Fatal(err)
	}
}

// RestartNoWait is Restart, except that it returns as soon as the agent's
// HTTP API answers /v1/agent/self, which it does with or without a leader:
// it never waits for a quorum. It fails the test if the agent does not
// answer within 30 seconds.
func (n *Node) RestartNoWait(t testing.TB, keepData bool) {
	t.Helper()
	if err := n.restart(keepData, waitHTTP); err != nil {
		t.Fatal(err)
	}
}

// clusterConfig adds what makes s a server or client agent of its cluster.
func (s *Server) clusterConfig(cfg *agentConfig) {
	no, yes := false, true
	cfg.NodeID = s.nodeID
	cfg.DataDir = s.DataDir
	if s.role == roleServer {
		cfg.Server = true
		cfg.BootstrapExpect = len(s.cluster.Servers)
		cfg.Performance = &performanceConfig{RaftMultiplier: 1}
		cfg.Autopilot = &autopilotConfig{CleanupDeadServers: &no, ServerStabilizationTime: "1s"}
	}
	for _, srv := range s.cluster.Servers {
		if srv.Server != s {
			cfg.RetryJoin = append(cfg.RetryJoin, srv.SerfLANAddr())
		}
	}
	cfg.RetryInterval = "500ms"
	if s.role == roleClient {
		if i := slices.IndexFunc(s.cluster.Clients, func(n *Node) bool { return n.Server == s }); i >= 0 && i < len(s.opts.clientMeta) {
			cfg.NodeMeta = s.opts.clientMeta[i]
		}
	}
	cfg.LeaveOnTerminate, cfg.SkipLeaveOnInterrupt = &no, &yes
	cfg.GossipLAN = &gossipConfig{ProbeInterval: "200ms", ProbeTimeout: "100ms", SuspicionMult: 3}
}

type performanceConfig struct {
	RaftMultiplier int `json:"raft_multiplier"`
}

type gossipConfig struct {
	ProbeInterval string `json:"probe_interval"`
	ProbeTimeout  string `json:"probe_timeout"`
	SuspicionMult int    `json:"suspicion_mult"`
}

type autopilotConfig struct {
	CleanupDeadServers      *bool  `json:"cleanup_dead_servers,omitempty"`
	ServerStabilizationTime string `json:"server_stabilization_time"`
}

// clusterReady is the part of ready particular to a cluster's node: the
// catalog has it under its pinned ID, alive (serfHealth passing), with the
// services its agent has and no others, and their checks in the agent's
// states. After a restart the catalog still
// holds the node as it was, until gossip and the agent's sync update it.
func (s *Server) clusterReady(ctx context.Context, catalogID string, catalogServices map[string]struct{ ID string }, synced bool) error {
	if catalogID != s.nodeID {
		return fmt.Errorf("node %s has ID %s in the catalog, want %s", s.Name, catalogID, s.nodeID)
	}
	var checks []struct{ CheckID, Status string }
	if err := s.getJSON(ctx, "/v1/health/node/"+url.PathEscape(s.Name), &checks); err != nil {
		return err
	}
	alive := false
	for _, c := range checks {
		if c.CheckID == "serfHealth" {
			alive = c.Status == "passing"
		}
	}
	if !alive {
		return fmt.Errorf("node %s not alive in the catalog yet", s.Name)
	}
	if !synced {
		return nil
	}
	var local map[string]json.RawMessage
	if err := s.getJSON(ctx, "/v1/agent/services", &local); err != nil {
		return err
	}
	for id := range local {
		if _, ok := catalogServices[id]; !ok {
			return fmt.Errorf("node %s: service %s not synced to the catalog yet", s.Name, id)
		}
	}
	for id := range catalogServices {
		if _, ok := local[id]; !ok && id != "consul" { // servers: the consul service
			return fmt.Errorf("node %s: service %s still in the catalog", s.Name, id)
		}
	}
	// After a restart with its data the services match already: the
	// catalog kept them. Their checks' states tell whether the agent has
	// synced: a check restored critical (its TTL expired meanwhile) is
	// still passing in the catalog until then.
	var localChecks map[string]struct{ Status string }
	if err := s.getJSON(ctx, "/v1/agent/checks", &localChecks); err != nil {
		return err
	}
	inCatalog := make(map[string]string, len(checks))
	for _, c := range checks {
		inCatalog[c.CheckID] = c.Status
	}
	for id, c := range localChecks {
		if got, ok := inCatalog[id]; !ok || got != c.Status {
			return fmt.Errorf("node %s: check %s is %s on the agent, %q in the catalog: not synced yet", s.Name, id, c.Status, got)
		}
	}
	return nil
}
