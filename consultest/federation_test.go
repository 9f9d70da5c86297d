package consultest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
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
	testutil.Eventually(t, deadline, "web found in dc2 through a dc1 client", func() error {
		return found(in1, remote, "web-dc2", dc2.Clients[0].Name)
	})
	// Without dc= the dc1 client does not see dc2's service.
	if ins, _, err := in1.Instances(ctx, beacon.Query{Service: "web"}); err != nil || len(ins) != 0 {
		t.Fatalf("web in dc1: %+v, %v; want none", ins, err)
	}
	testutil.Eventually(t, deadline, "api found in dc1", func() error {
		return found(in1, local, "api-dc1", dc1.Clients[0].Name)
	})

	killed := time.Now()
	f.KillServers(t, "dc2")
	if dc2.Servers[0].Running() {
		t.Fatal("dc2's server still runs after KillServers")
	}
	took := testutil.Eventually(t, deadline, "dc=dc2 read fails with dc2's servers down", func() error {
		if err := found(in1, remote, "web-dc2", dc2.Clients[0].Name); err == nil {
			return fmt.Errorf("still answered")
		} else {
			t.Logf("dc=dc2 through dc1 %v after the kill: %v", time.Since(killed).Round(time.Millisecond), err)
		}
		return nil
	})
	t.Logf("dc=dc2 read failed %v after the kill", took.Round(time.Millisecond))
	// WAN gossip (tuned by NewFederation) marks dc2's server failed.
	testutil.Eventually(t, deadline, "dc2's server failed in dc1's WAN pool", func() error {
		return wanFailed(dc1.Servers[0], dc2.Servers[0].Name+".dc2")
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
	testutil.Eventually(t, deadline, "web found in dc2 through dc1 again", func() error {
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

// federationPair starts dc1 and dc2, a server and a client each, with web
// registered in dc2, and returns a check that reads web in dc2 through
// dc1's client (?dc=dc2), each read bounded to 3 seconds.
func federationPair(t *testing.T) (f *Federation, readDC2 func() error) {
	t.Helper()
	f = NewFederation(t, FederationSpec{Datacenters: []DatacenterSpec{
		{Name: "dc1", Servers: 1, Clients: 1},
		{Name: "dc2", Servers: 1, Clients: 1},
	}})
	in1, err := consulhttp.New(f.DC("dc1").Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in1.Close() })
	in2, err := consulhttp.New(f.DC("dc2").Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in2.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in2.Register(ctx, beacon.Registration{ID: "web-dc2", Service: "web", Port: 8080}); err != nil {
		t.Fatal(err)
	}
	readDC2 = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		ins, _, err := in1.Instances(ctx, beacon.Query{Service: "web", Datacenter: "dc2"})
		if err != nil {
			return err
		}
		return testutil.Want(len(ins) == 1 && ins[0].ID == "web-dc2", "web in dc2 through dc1: %+v", ins)
	}
	testutil.Eventually(t, deadline, "web found in dc2 through dc1", readDC2)
	return f, readDC2
}

// TestFederationPauseServers: dc2's servers paused, a dc=dc2 read through
// dc1 fails while the paused agents still hold their ports; resumed, it
// succeeds again. Servers left paused are resumed and killed when the test
// ends: none outlives it.
func TestFederationPauseServers(t *testing.T) {
	var pids []int
	t.Run("federation", func(t *testing.T) {
		start := time.Now()
		f, readDC2 := federationPair(t)
		s2 := f.DC("dc2").Servers[0]
		paused := time.Now()
		f.PauseServers(t, "dc2")
		if !s2.Running() || s2.answering() {
			t.Fatalf("paused dc2 server: Running() = %v, answering() = %v; want true, false", s2.Running(), s2.answering())
		}
		// The kernel still accepts connections on a paused agent's port.
		conn, err := net.DialTimeout("tcp", s2.HTTPAddr, 2*time.Second)
		if err != nil {
			t.Errorf("dial paused dc2 server %s: %v, want accepted", s2.HTTPAddr, err)
		} else {
			conn.Close()
		}
		took := testutil.Eventually(t, deadline, "dc=dc2 read fails with dc2's servers paused", func() error {
			return testutil.Want(readDC2() != nil, "still answered")
		})
		t.Logf("dc=dc2 read failed %v after the pause (the last wait %v)", time.Since(paused).Round(time.Millisecond), took.Round(time.Millisecond))
		resumed := time.Now()
		f.ResumeServers(t, "dc2")
		t.Logf("dc2 back in the federation %v after ResumeServers", time.Since(resumed).Round(time.Millisecond))
		testutil.Eventually(t, deadline, "dc=dc2 read succeeds after resume", readDC2)

		// Left paused for the cleanup to resume and kill.
		f.PauseServers(t, "dc2")
		for _, n := range f.DC("dc2").Nodes() {
			n.mu.Lock()
			pids = append(pids, n.proc.cmd.Process.Pid)
			n.mu.Unlock()
		}
		t.Logf("total %v", time.Since(start).Round(time.Millisecond))
	})
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("agent pid %d after the test: kill(0) = %v, want ESRCH (gone)", pid, err)
		}
	}
}

// TestFederationPartition: with dc2 partitioned off by packet filter rules,
// packets between the two datacenters' addresses are dropped (TCP and UDP,
// both ways, checked with sockets of the test's own), a dc=dc2 read through
// dc1 fails, and each datacenter still answers its own reads and the
// test's HTTP requests; healed, the read succeeds again. Skips where the
// machine cannot filter loopback packets (see CanPartition).
func TestFederationPartition(t *testing.T) {
	if err := CanPartition(); err != nil {
		t.Skip(err)
	}
	start := time.Now()
	f, readDC2 := federationPair(t)
	ip1, ip2 := f.DC("dc1").Clients[0].IP, f.DC("dc2").Servers[0].IP
	reach := func(from, to string) error {
		return errors.Join(tcpReach(from, to), udpReach(from, to))
	}
	for _, p := range [][2]string{{ip1, ip2}, {ip2, ip1}} {
		if err := reach(p[0], p[1]); err != nil {
			t.Fatalf("before the partition, %s -> %s: %v", p[0], p[1], err)
		}
	}

	cut := time.Now()
	p := f.Partition(t, "dc2")
	for _, pair := range [][2]string{{ip1, ip2}, {ip2, ip1}} {
		if err := tcpReach(pair[0], pair[1]); err == nil {
			t.Errorf("partitioned: TCP %s -> %s connected, want dropped", pair[0], pair[1])
		}
		if err := udpReach(pair[0], pair[1]); err == nil {
			t.Errorf("partitioned: UDP %s -> %s delivered, want dropped", pair[0], pair[1])
		}
	}
	// Each side still reaches itself, and the test reaches both.
	if err := reach(ip2, f.DC("dc2").Clients[0].IP); err != nil {
		t.Errorf("partitioned: within dc2: %v", err)
	}
	took := testutil.Eventually(t, deadline, "dc=dc2 read through dc1 fails while partitioned", func() error {
		return testutil.Want(readDC2() != nil, "still answered")
	})
	t.Logf("dc=dc2 read failed %v after the partition (the last wait %v)", time.Since(cut).Round(time.Millisecond), took.Round(time.Millisecond))
	// Consul sees it too: each side's WAN gossip fails the other's server.
	s1, s2 := f.DC("dc1").Servers[0], f.DC("dc2").Servers[0]
	testutil.Eventually(t, deadline, "each datacenter's server failed in the other's WAN pool", func() error {
		return errors.Join(wanFailed(s1, s2.Name+".dc2"), wanFailed(s2, s1.Name+".dc1"))
	})
	t.Logf("WAN members failed on both sides %v after the partition", time.Since(cut).Round(time.Millisecond))
	for _, n := range append(f.DC("dc1").Nodes(), f.DC("dc2").Nodes()...) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		var leader string
		err := n.getJSON(ctx, "/v1/status/leader", &leader)
		cancel()
		if err != nil || leader == "" {
			t.Errorf("partitioned: %s /v1/status/leader = %q, %v; want its own datacenter's leader", n.Name, leader, err)
		}
	}

	healed := time.Now()
	p.Heal(t)
	t.Logf("federated again %v after Heal", time.Since(healed).Round(time.Millisecond))
	p.Heal(t) // twice: nothing to do
	testutil.Eventually(t, deadline, "dc=dc2 read through dc1 after the heal", readDC2)
	for _, pair := range [][2]string{{ip1, ip2}, {ip2, ip1}} {
		if err := reach(pair[0], pair[1]); err != nil {
			t.Errorf("healed: %s -> %s: %v", pair[0], pair[1], err)
		}
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// tcpReach connects from address from to a listener of the test's own on
// address to, within a second.
func tcpReach(from, to string) error {
	l, err := net.Listen("tcp", net.JoinHostPort(to, "0"))
	if err != nil {
		return err
	}
	defer l.Close()
	d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		return fmt.Errorf("TCP: %w", err)
	}
	return c.Close()
}

// udpReach sends a datagram from address from to a socket of the test's
// own on address to, and waits a second for it.
func udpReach(from, to string) error {
	rc, err := net.ListenPacket("udp", net.JoinHostPort(to, "0"))
	if err != nil {
		return err
	}
	defer rc.Close()
	sc, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)}, rc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		return err
	}
	defer sc.Close()
	if _, err := sc.Write([]byte("ping")); err != nil {
		return fmt.Errorf("UDP: %w", err)
	}
	_ = rc.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 16)
	if _, _, err := rc.ReadFrom(buf); err != nil {
		return fmt.Errorf("UDP: %w", err)
	}
	return nil
}

// wanFailed reports whether server s sees WAN member name ("node.dc") as
// not alive.
func wanFailed(s *Node, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var members []struct {
		Name   string
		Status int
	}
	if err := s.getJSON(ctx, "/v1/agent/members?wan=1", &members); err != nil {
		return err
	}
	for _, m := range members {
		if m.Name == name && m.Status != 1 { // 1: alive
			return nil
		}
	}
	return fmt.Errorf("WAN members %+v", members)
}
