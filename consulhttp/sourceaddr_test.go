package consulhttp_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestSourceAddr checks on a real agent that a client with
// Config.SourceAddr connects from that address, and that the agent's
// connection limit (limits.http_max_conns_per_client, set to 2 here)
// counts per source: two long polls from one source fill it, and a client
// from another source is still served.
func TestSourceAddr(t *testing.T) {
	if _, err := testutil.PeersOf("127.0.0.1:1"); err != nil {
		t.Skipf("no kernel connection table: %v", err)
	}
	srv := consultest.NewServer(t, consultest.WithConfigJSON(`{"limits": {"http_max_conns_per_client": 2}}`))
	cfgA, cfgB := srv.Config(), srv.Config()
	cfgA.SourceAddr, cfgB.SourceAddr = "127.0.0.2", "127.0.0.3"
	a := newClient(t, cfgA)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, meta, err := a.Instances(ctx, beacon.Query{Service: "consul"})
	if err != nil {
		t.Fatalf("Instances from %s = %v", cfgA.SourceAddr, err)
	}
	// Two long polls on an index that will not move: two connections
	// from A, held.
	polls, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, _, err := a.Instances(polls, beacon.Query{Service: "consul", WaitIndex: meta.LastIndex, WaitTime: 50 * time.Second})
			done <- err
		}()
	}
	t.Cleanup(func() {
		stop()
		for range 2 {
			<-done
		}
	})
	testutil.Eventually(t, 30*time.Second, "the agent sees two connections from 127.0.0.2", func() error {
		peers, err := testutil.PeersOf(srv.HTTPAddr)
		if err != nil {
			return err
		}
		n := 0
		for _, p := range peers {
			if p == cfgA.SourceAddr {
				n++
			}
		}
		return testutil.Want(n == 2, "the agent's peers are %v", peers)
	})

	// A third connection from A is over the limit; B is another host.
	short, cancelShort := context.WithTimeout(ctx, 10*time.Second)
	defer cancelShort()
	if _, _, err := a.Instances(short, beacon.Query{Service: "consul"}); err == nil {
		t.Errorf("Instances from %s with 2 long polls held = nil error, want the agent to refuse a third connection", cfgA.SourceAddr)
	} else if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Instances from %s with 2 long polls held = %v, want the agent to refuse it, not hang", cfgA.SourceAddr, err)
	}
	b := newClient(t, cfgB)
	if _, _, err := b.Instances(ctx, beacon.Query{Service: "consul"}); err != nil {
		t.Fatalf("Instances from %s = %v, want it served beside %s's full quota", cfgB.SourceAddr, err, cfgA.SourceAddr)
	}
	peers, err := testutil.PeersOf(srv.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(peers, cfgB.SourceAddr) {
		t.Errorf("the agent's peers after a request from %s are %v, want %s among them", cfgB.SourceAddr, peers, cfgB.SourceAddr)
	}
}
