package keeper_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

// inMaintenance waits until the agent says id is (or is not) in
// maintenance and a passing lookup agrees.
func inMaintenance(t *testing.T, c beacon.Registry, id string, on bool) {
	t.Helper()
	m := c.(beacon.Maintainer)
	testutil.Eventually(t, deadline, "maintenance of "+id, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, _, err := m.InMaintenance(ctx, id)
		if err != nil {
			return err
		}
		if got != on {
			return errors.New("agent disagrees")
		}
		return testutil.Want(passing(c, id) != on, "passing lookup disagrees")
	})
}

func TestMaintenance(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	// Reconcile often: it must leave maintenance alone.
	k := newKeeper(t, srv.Config(), registration("k-maint"), keeper.WithReconcileInterval(100*time.Millisecond))
	start(t, k)
	ctx := context.Background()
	inMaintenance(t, c, "k-maint", false)

	if err := k.Maintenance(ctx, true, "deploying"); err != nil {
		t.Fatalf("Maintenance(true) = %v, want nil", err)
	}
	if !k.Status().Maintenance {
		t.Errorf("Status().Maintenance = false after Maintenance(true)")
	}
	inMaintenance(t, c, "k-maint", true)
	if _, why, _ := c.InMaintenance(ctx, "k-maint"); why != "deploying" {
		t.Errorf("InMaintenance() reason = %q, want %q", why, "deploying")
	}
	if got := instances(c, true); len(got) != 1 || !got[0].Maintenance {
		t.Errorf("Instances(all) = %+v, want one instance in maintenance", got)
	}

	// An Update registers again, which alone would drop maintenance.
	r := registration("k-maint")
	r.Tags = []string{"v2"}
	if err := k.Update(ctx, r); err != nil {
		t.Fatalf("Update() = %v", err)
	}
	inMaintenance(t, c, "k-maint", true)

	// An operator's change on the agent wins over what the keeper set.
	if err := c.Maintenance(ctx, "k-maint", false, ""); err != nil {
		t.Fatal(err)
	}
	r.Tags = []string{"v3"}
	if err := k.Update(ctx, r); err != nil {
		t.Fatalf("Update() = %v", err)
	}
	inMaintenance(t, c, "k-maint", false)
	if k.Status().Maintenance {
		t.Errorf("Status().Maintenance = true after an operator took it out and Update")
	}
	if err := c.Maintenance(ctx, "k-maint", true, "operator"); err != nil {
		t.Fatal(err)
	}
	r.Tags = []string{"v4"}
	if err := k.Update(ctx, r); err != nil {
		t.Fatalf("Update() = %v", err)
	}
	inMaintenance(t, c, "k-maint", true)
	if !k.Status().Maintenance {
		t.Errorf("Status().Maintenance = false after an operator set it and Update")
	}

	if err := k.Maintenance(ctx, false, ""); err != nil {
		t.Fatalf("Maintenance(false) = %v, want nil", err)
	}
	inMaintenance(t, c, "k-maint", false)
	if err := k.Maintenance(ctx, true, "bad\x00"); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("Maintenance(bad reason) = %v, want ErrInvalid", err)
	}
}

func TestMaintenanceBeforeStart(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	k := newKeeper(t, srv.Config(), registration("k-maint-early"))
	if err := k.Maintenance(context.Background(), true, "not yet"); err != nil {
		t.Fatalf("Maintenance() before Start = %v, want nil", err)
	}
	start(t, k)
	inMaintenance(t, c, "k-maint-early", true)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Stop(ctx); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	if err := k.Maintenance(ctx, false, ""); !errors.Is(err, keeper.ErrStopped) {
		t.Errorf("Maintenance() after Stop = %v, want ErrStopped", err)
	}
}

// TestMaintenanceSurvivesAgentRestart: a client agent restarted with its
// data dir comes back with the instance in maintenance, and the keeper
// leaves it there.
func TestMaintenanceSurvivesAgentRestart(t *testing.T) {
	cl := consultest.NewCluster(t, 1, 1)
	agent := cl.Clients[0]
	c := client(t, agent.Config())
	k := newKeeper(t, agent.Config(), registration("k-maint-kept"))
	start(t, k)
	if err := k.Maintenance(context.Background(), true, "kept"); err != nil {
		t.Fatalf("Maintenance() = %v", err)
	}
	inMaintenance(t, c, "k-maint-kept", true)
	agent.Restart(t, true)
	// The keeper heartbeats (and may register again) meanwhile.
	testutil.Eventually(t, deadline, "keeper heartbeating after the restart", func() error {
		return testutil.Want(k.Status().Registered && time.Since(k.Status().LastHeartbeat) < keeper.DefaultTTL, "no recent heartbeat")
	})
	inMaintenance(t, c, "k-maint-kept", true)
	if err := k.Maintenance(context.Background(), false, ""); err != nil {
		t.Fatalf("Maintenance(false) = %v", err)
	}
	inMaintenance(t, c, "k-maint-kept", false)
}

// TestMaintenanceLearnedByReconcile: an operator's maintenance on the agent
// (beacon maint) shows in Status at the next reconcile, without an Update,
// and its removal too.
func TestMaintenanceLearnedByReconcile(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	k := newKeeper(t, srv.Config(), registration("k-maint-op"), keeper.WithReconcileInterval(100*time.Millisecond))
	start(t, k)
	ctx := context.Background()
	for _, on := range []bool{true, false} {
		if err := c.Maintenance(ctx, "k-maint-op", on, "operator"); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, deadline, "Status().Maintenance follows the operator", func() error {
			return testutil.Want(k.Status().Maintenance == on, "Status().Maintenance = %v, want %v", k.Status().Maintenance, on)
		})
		inMaintenance(t, c, "k-maint-op", on)
	}
}

// TestMaintenanceCarriedOnFailover: an instance in maintenance moves to
// another agent when its agent dies, and is in maintenance there too (the
// new agent never saw it, so only the keeper can carry it over); the old
// agent's copy, cleaned up after its restart, leaves one registration, in
// maintenance.
func TestMaintenanceCarriedOnFailover(t *testing.T) {
	cl := consultest.NewCluster(t, 1, 1)
	client, server := cl.Clients[0], cl.Servers[0]
	cfg := cl.Config(client, server) // the client agent first: preferred
	reader := client_(t, server)

	k := newKeeper(t, cfg, registration("k-maint-fo"))
	start(t, k)
	if err := k.Maintenance(context.Background(), true, "moving racks"); err != nil {
		t.Fatalf("Maintenance() = %v", err)
	}
	inMaintenance(t, client_(t, client), "k-maint-fo", true)

	client.Kill()
	testutil.Eventually(t, deadline, "registered through the other agent", func() error {
		st := k.Status()
		return testutil.Want(st.Agent == cfg.Addresses[1] && st.Failovers == 1, "Status() = %+v", st)
	})
	inMaintenance(t, reader, "k-maint-fo", true)
	if !k.Status().Maintenance {
		t.Errorf("Status().Maintenance = false after the failover")
	}
	client.Restart(t, true)
	testutil.Eventually(t, deadline, "one registration left, in maintenance", func() error {
		all := instances(reader, true)
		return testutil.Want(len(all) == 1 && all[0].Node == server.Name && all[0].Maintenance, "registered: %+v", all)
	})
}
