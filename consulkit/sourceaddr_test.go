package consulkit_test

import (
	"context"
	"slices"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestSourceAddr checks on a real agent that the go-kit backend dials from
// Config.SourceAddr too: the agent sees its connection come from there.
func TestSourceAddr(t *testing.T) {
	if _, err := testutil.PeersOf("127.0.0.1:1"); err != nil {
		t.Skipf("no kernel connection table: %v", err)
	}
	srv := consultest.NewServer(t)
	cfg := srv.Config()
	cfg.SourceAddr = "127.0.0.4"
	c := newClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, _, err := c.Instances(ctx, beacon.Query{Service: "consul"}); err != nil {
		t.Fatalf("Instances from %s = %v", cfg.SourceAddr, err)
	}
	// The connection stays open as an idle keep-alive.
	testutil.Eventually(t, deadline, "the agent sees a connection from "+cfg.SourceAddr, func() error {
		peers, err := testutil.PeersOf(srv.HTTPAddr)
		if err != nil {
			return err
		}
		return testutil.Want(slices.Contains(peers, cfg.SourceAddr), "the agent's peers are %v", peers)
	})
}
