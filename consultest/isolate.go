package consultest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// PauseServers stops every server of the named datacenter with SIGSTOP
// (Node.Pause): their ports stay open, so connections to them are accepted
// by the kernel and never answered, RPCs forwarded from other datacenters
// hang until their own timeouts, and WAN gossip soon marks them failed.
// Its client agents keep running and answer what they can answer alone.
// The servers are resumed when the test ends, before they are killed; a
// paused server can also be killed and restarted (StartServers). It needs
// Linux, and fails the test elsewhere.
func (f *Federation) PauseServers(t testing.TB, name string) {
	t.Helper()
	c := f.mustDC(t, name)
	for _, s := range c.Servers {
		if err := s.pause(); err != nil {
			t.Fatal(err)
		}
	}
	// The release in NewFederation's cleanup continues a paused agent
	// before killing it; resuming here first only makes the order plain.
	t.Cleanup(func() {
		for _, s := range c.Servers {
			s.Resume()
		}
	})
}

// ResumeServers continues every paused server of the named datacenter
// (SIGCONT), asks them to rejoin the other datacenters' servers over the
// WAN, and waits until the datacenter and every other one reach each other
// again as StartServers does (60 seconds, else the test fails). Servers
// that are not paused are left alone.
func (f *Federation) ResumeServers(t testing.TB, name string) {
	t.Helper()
	c := f.mustDC(t, name)
	for _, s := range c.Servers {
		s.Resume()
	}
	if err := f.rejoin(name, time.Now().Add(federationReadyTimeout)); err != nil {
		t.Fatalf("consultest: datacenter %s not back in the federation after resuming: %v", name, err)
	}
}

// rejoin asks the named datacenter's running servers to join every other
// datacenter's running servers over the WAN, then waits until they reach
// each other (connected(name)) or the deadline passes. WAN gossip heals by
// itself only while the other side still gossips to members it failed
// (about a minute); the join makes the two sides exchange state at once,
// and each refutes the other's verdict that it is dead.
func (f *Federation) rejoin(name string, deadline time.Time) error {
	for {
		for _, s := range f.dcs[name].Servers {
			if !s.answering() {
				continue
			}
			for _, other := range f.names {
				if other == name {
					continue
				}
				for _, o := range f.dcs[other].Servers {
					if o.answering() {
						_ = s.joinWAN(o.SerfWANAddr()) // judged below
					}
				}
			}
		}
		// Poll for a few seconds before joining again.
		err := f.waitConnected(minTime(deadline, time.Now().Add(5*time.Second)), name)
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// ErrNoPartition is matched by the error of CanPartition when this machine
// cannot drop packets between loopback addresses: no nft command, no
// permission to add rules (CAP_NET_ADMIN), not Linux, or agents that share
// one address.
var ErrNoPartition = errors.New("consultest: network partitions between loopback addresses not available")

// CanPartition reports whether Federation.Partition can work here: it
// finds the nft command and adds and removes an empty nftables table. The
// error matches ErrNoPartition and carries what nft printed.
func CanPartition() error { return canPartition() }

// Partition is a network partition made by Federation.Partition: nftables
// rules that drop every packet between one datacenter's nodes and the
// other datacenters' nodes. It is removed by Heal or when the test ends.
type Partition struct {
	f     *Federation
	name  string
	table string // the nftables table holding the rules

	mu     sync.Mutex
	healed bool
}

// Partition cuts the named datacenter off from every other one: packets
// between its nodes' IPs and the other datacenters' nodes' IPs are dropped
// in both directions, TCP and UDP, new and established connections alike,
// as a real network partition drops them (no connection is refused; they
// time out). Within each side nodes still reach each other, and the test
// still reaches every node's HTTP API. The connections memberlist dials
// from no particular address (TCP push-pull and fallback probes, sent from
// 127.0.0.1) to any server's serf WAN port are dropped too, whichever
// datacenters they join: with three or more datacenters, the ones on the
// same side of the partition then gossip over UDP only, which keeps them
// alive to each other.
//
// It adds an nftables table of its own (the rules touch only the
// federation's addresses) and removes it when the test ends. Without the
// nft command, without permission to add rules, or when the datacenters
// share addresses (a machine that routes only 127.0.0.1), it skips the
// test with one line; see CanPartition. It returns once the rules are in
// place, not when the datacenters have noticed: WAN gossip fails the other
// side's servers within a second or two.
func (f *Federation) Partition(t testing.TB, name string) *Partition {
	t.Helper()
	c := f.mustDC(t, name)
	var in, out, wan []string
	for _, n := range c.Nodes() {
		in = append(in, n.IP)
	}
	for _, other := range f.names {
		oc := f.dcs[other]
		for _, s := range oc.Servers {
			wan = append(wan, s.SerfWANAddr())
		}
		if other == name {
			continue
		}
		for _, n := range oc.Nodes() {
			out = append(out, n.IP)
		}
	}
	slices.Sort(in)
	slices.Sort(out)
	in, out = slices.Compact(in), slices.Compact(out)
	for _, ip := range in {
		if slices.Contains(out, ip) {
			t.Skipf("%v: datacenter %s shares address %s with another datacenter", ErrNoPartition, name, ip)
		}
	}
	table, err := addPartition(in, out, wan)
	if errors.Is(err, ErrNoPartition) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("consultest: partitioning datacenter %s: %v", name, err)
	}
	p := &Partition{f: f, name: name, table: table}
	t.Cleanup(func() {
		if err := p.remove(); err != nil {
			t.Errorf("consultest: removing the partition of datacenter %s: %v", name, err)
		}
	})
	t.Logf("consultest: datacenter %s partitioned from the others (nftables table %s)", name, table)
	return p
}

// Heal removes the partition's rules, asks the partitioned datacenter's
// servers to rejoin the others over the WAN (each side failed the other's
// servers, and gossip stops reaching failed members after a while), and
// waits until every datacenter reaches every other one, as NewFederation
// checks; it fails the test if that takes more than 60 seconds. It may be
// called more than once.
func (p *Partition) Heal(t testing.TB) {
	t.Helper()
	if err := p.remove(); err != nil {
		t.Fatalf("consultest: removing the partition of datacenter %s: %v", p.name, err)
	}
	if err := p.f.rejoin(p.name, time.Now().Add(federationReadyTimeout)); err != nil {
		t.Fatalf("consultest: datacenter %s not back in the federation %v after the partition healed: %v", p.name, federationReadyTimeout, err)
	}
}

// remove deletes the rules once.
func (p *Partition) remove() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.healed {
		return nil
	}
	if err := removePartition(p.table); err != nil {
		return fmt.Errorf("nftables table %s: %w", p.table, err)
	}
	p.healed = true
	return nil
}
