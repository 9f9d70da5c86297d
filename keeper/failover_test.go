package keeper_test

import (
	"context"
	"errors"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
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
	took := waitFor(t, "passing through the other agent", func() bool {
		for _, in := range instances(reader, false) {
			if in.ID == "k-fo" && in.Node == server.Name {
				return true
			}
		}
		return false
	})
	t.Logf("agent killed → instance passing through the other agent: %v", took)
	if st := k.Status(); st.Agent != cfg.Addresses[1] || st.Failovers != 1 {
		t.Errorf("Status() = %+v, want agent %s after one failover", st, cfg.Addresses[1])
	}

	client.Restart(t, true)
	took = waitFor(t, "exactly one registration left", func() bool {
		all := instances(reader, true)
		return len(all) == 1 && all[0].Node == server.Name && all[0].Health == beacon.HealthPassing
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
	waitFor(t, "failover", func() bool { return k.Status().Failovers == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Stop(ctx); !errors.Is(err, beacon.ErrUnavailable) {
		t.Errorf("Stop() = %v, want an error naming the unreachable agent's copy", err)
	}
	waitFor(t, "no passing registration left", func() bool { return len(instances(reader, false)) == 0 })
}
