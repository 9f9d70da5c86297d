package keeper_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

// TestAliasCheckPassesThrough: the keeper sends a check kind the agent
// runs itself (here an alias of another instance on the same agent) as
// given, beside its own heartbeat, under the IDs Registration.CheckIDs
// names; the instance follows what it mirrors, and a reconcile that repairs
// a lost registration brings the alias back.
func TestAliasCheckPassesThrough(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	db := beacon.Registration{
		ID: "db-1", Service: "db", Port: 5432,
		Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthPassing}},
	}
	if err := c.Register(ctx, db); err != nil {
		t.Fatal(err)
	}
	r := registration("k-alias")
	r.Checks = []beacon.Check{{AliasService: db.ID}}
	k := newKeeper(t, srv.Config(), r, keeper.WithTTL(time.Hour), keeper.WithReconcileInterval(200*time.Millisecond))
	start(t, k)

	// What the keeper sends: the registration and its heartbeat check.
	full := r
	full.Checks = append(slices.Clone(r.Checks), beacon.Check{ID: "beacon:" + r.ID, TTL: time.Hour})
	want := slices.Sorted(slices.Values(full.CheckIDs()))
	agentCheckIDs := func() []string {
		states, _, err := c.Checks(ctx, beacon.ChecksQuery{})
		if err != nil {
			t.Fatalf("Checks() = %v", err)
		}
		var got []string
		for _, s := range states {
			if s.ServiceID == r.ID {
				got = append(got, s.CheckID)
			}
		}
		slices.Sort(got)
		return got
	}
	testutil.Eventually(t, deadline, "the keeper's instance with its alias and heartbeat checks", func() error {
		got := agentCheckIDs()
		return testutil.Want(slices.Equal(got, want), "check IDs %q, want %q", got, want)
	})
	for _, status := range []beacon.Health{beacon.HealthCritical, beacon.HealthPassing} {
		if err := c.UpdateTTL(ctx, db.CheckIDs()[0], status, ""); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, deadline, "k-alias follows db-1 to "+string(status), func() error {
			return testutil.Want(passing(c, "k-alias") == (status == beacon.HealthPassing), "k-alias passing: %v", passing(c, "k-alias"))
		})
	}

	// Lost and repaired: the alias comes back with the rest.
	if err := c.Deregister(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, deadline, "reconcile re-registers k-alias with its checks", func() error {
		got := agentCheckIDs()
		return testutil.Want(slices.Equal(got, want) && passing(c, "k-alias"), "check IDs %q (want %q), passing %v", got, want, passing(c, "k-alias"))
	})
}
