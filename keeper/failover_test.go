package keeper_test

import (
	"context"
	"errors"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

// TestFailoverAndCleanup: with a server and a client agent, kill the agent
// the keeper registered through; the instance registers through the other;
// restart the killed agent with its data dir (it comes back holding its old
// copy); the keeper removes that copy, leaving exactly one registration.
func TestFailoverAndCleanup(t *testing.T) {
	cl := consultest.NewCluster(t, 1, 1)
	client, server := cl.Clients[0], cl.Servers[0]
	cfg := cl.Config(client, server) // the client agent first: preferred
	reader := client_(t, server)

	k := newKeeper(t, cfg, registration("k-fo"))
	start(t, k)
	if st := k.Status(); st.Agent != cfg.Addresses[0] {
		t.Fatalf("Status().Agent = %q, want the first agent %q", st.Agent, cfg.Addresses[0])
	}

	client.Kill()
	took := testutil.Eventually(t, deadline, "passing through the other agent", func() error {
		passing := instances(reader, false)
		for _, in := range passing {
			if in.ID == "k-fo" && in.Node == server.Name {
				return nil
			}
		}
		return testutil.Want(false, "passing: %+v", passing)
	})
	t.Logf("agent killed → instance passing through the other agent: %v", took)
	// The catalog can show the new copy before run has recorded the move
	// (an instance registered without a health function passes at once).
	testutil.Eventually(t, deadline, "Status() after the failover", func() error {
		st := k.Status()
		return testutil.Want(st.Agent == cfg.Addresses[1] && st.Failovers == 1, "Status() = %+v, want agent %s after one failover", st, cfg.Addresses[1])
	})

	client.Restart(t, true)
	took = testutil.Eventually(t, deadline, "exactly one registration left", func() error {
		all := instances(reader, true)
		return testutil.Want(len(all) == 1 && all[0].Node == server.Name && all[0].Health == beacon.HealthPassing, "registered: %+v", all)
	})
	t.Logf("killed agent restarted with its data → its stale copy removed: %v", took)
}

func client_(t *testing.T, n *consultest.Node) beacon.Registry { return client(t, n.Config()) }

// TestStopAfterFailover: Stop deregisters through the agent that holds the
// registration after a failover, and reports the copy it could not remove
// from the dead agent (it stays in the catalog, critical, until that agent
// returns or is reaped).
func TestStopAfterFailover(t *testing.T) {
	cl := consultest.NewCluster(t, 1, 1)
	client, server := cl.Clients[0], cl.Servers[0]
	reader := client_(t, server)
	k := newKeeper(t, cl.Config(client, server), registration("k-fo2"), keeper.WithDrainGrace(0))
	start(t, k)
	client.Kill()
	testutil.Eventually(t, deadline, "failover", func() error { return testutil.Want(k.Status().Failovers == 1, "Status() = %+v", k.Status()) })
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Stop(ctx); !errors.Is(err, beacon.ErrUnavailable) {
		t.Errorf("Stop() = %v, want an error naming the unreachable agent's copy", err)
	}
	testutil.Eventually(t, deadline, "no passing registration left", func() error { return testutil.Want(len(instances(reader, false)) == 0, "still passing") })
}
