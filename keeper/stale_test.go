package keeper_test

// Removing the copy left on an agent the keeper moved away from, on
// in-memory agents. The keeper moves when the agent refuses its
// permission (a failover without retries); heartbeats come every 20
// minutes, so only the probe of the stale agent can remove its copy.

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
	"github.com/beaconsd/beacon/registrytest"
)

var errForbidden = &beacon.StatusError{Method: http.MethodGet, Path: "/v1/agent/service/x", StatusCode: http.StatusForbidden, Message: "Permission denied"}

// silentDeregister makes mem's first Deregister hang, as on an agent that
// accepts and never answers, until release is closed (then it proceeds)
// or its context ends (cancelled is closed). entered is closed when it
// starts hanging; later Deregisters proceed at once.
type silentDeregister struct {
	entered, release, cancelled chan struct{}
	first                       atomic.Bool
}

func newSilentDeregister(mem *registrytest.Memory) *silentDeregister {
	s := &silentDeregister{entered: make(chan struct{}), release: make(chan struct{}), cancelled: make(chan struct{})}
	mem.SetFault(func(ctx context.Context, op registrytest.Op, _ string) error {
		if op != registrytest.OpDeregister || !s.first.CompareAndSwap(false, true) {
			return nil
		}
		close(s.entered)
		select {
		case <-s.release:
			return nil
		case <-ctx.Done():
			close(s.cancelled)
			return ctx.Err()
		}
	})
	return s
}

func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(deadline):
		t.Fatalf("%s: did not happen within %v", what, deadline)
	}
}

// movedAway starts a keeper on two agents whose first one hangs on its
// first Deregister, and makes it move to the second one.
func movedAway(t *testing.T, id string) (*memAgents, *keeper.Keeper, *silentDeregister) {
	t.Helper()
	a := newMemAgents(2)
	a.cfg.Timeout = time.Minute // a hung call is not cut short within the test
	silent := newSilentDeregister(a.mems[0])
	k := newKeeper(t, a.cfg, registration(id), a.backend(),
		keeper.WithTTL(time.Hour), keeper.WithReconcileInterval(20*time.Millisecond), keeper.WithDrainGrace(0))
	start(t, k)
	a.mems[0].Fail(registrytest.OpAgentService, errForbidden)
	testutil.Eventually(t, deadline, "moved to the second agent", func() error {
		st := k.Status()
		return testutil.Want(st.Agent == a.cfg.Addresses[1] && st.Failovers == 1, "Status() = %+v", st)
	})
	await(t, silent.entered, "the probe asks the first agent to deregister")
	a.mems[0].Fail(registrytest.OpAgentService, nil) // so that holds can look
	return a, k, silent
}

// TestMemoryStaleCopyRemovedOffTheHeartbeat: while the agent the keeper
// left hangs, the keeper goes on (an Update returns); once that agent
// answers, its copy is removed without waiting for a heartbeat.
func TestMemoryStaleCopyRemovedOffTheHeartbeat(t *testing.T) {
	a, k, silent := movedAway(t, "m-stale")
	r := registration("m-stale")
	r.Meta = map[string]string{"version": "2"}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Update(ctx, r); err != nil {
		t.Fatalf("Update() while the old agent hangs = %v", err)
	}
	if in, err := a.mems[1].AgentService(ctx, "m-stale"); err != nil || in.Meta["version"] != "2" {
		t.Errorf("AgentService() on the second agent = %+v, %v; want the update", in, err)
	}
	if !holds(a.mems[0], "m-stale") {
		t.Fatal("the first agent's copy is gone while its Deregister hangs: the test proves nothing")
	}
	close(silent.release)
	testutil.Eventually(t, deadline, "the copy on the first agent removed", func() error {
		return testutil.Want(!holds(a.mems[0], "m-stale"), "the first agent still holds m-stale")
	})
	if st := k.Status(); st.Agent != a.cfg.Addresses[1] || !holds(a.mems[1], "m-stale") {
		t.Errorf("Status() = %+v, want the instance kept on the second agent", st)
	}
}

// TestMemoryStopEndsProbesAndDeregisters: Stop while a probe hangs ends
// the probe, then deregisters from every agent, the hung one included.
func TestMemoryStopEndsProbesAndDeregisters(t *testing.T) {
	a, k, silent := movedAway(t, "m-stop")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Stop(ctx); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	await(t, silent.cancelled, "the probe's call cancelled by Stop")
	for i, mem := range a.mems {
		if holds(mem, "m-stop") {
			t.Errorf("agent %d still holds m-stop after Stop", i)
		}
	}
}

// TestMemoryMovingBackEndsTheProbe: moving back to an agent whose probe is
// under way ends the probe first, so it cannot remove the new copy; the
// agent just left is probed in turn.
func TestMemoryMovingBackEndsTheProbe(t *testing.T) {
	a, k, silent := movedAway(t, "m-back")
	a.mems[1].Fail(registrytest.OpAgentService, errForbidden)
	testutil.Eventually(t, deadline, "moved back to the first agent, and the second one's copy removed", func() error {
		st := k.Status()
		return testutil.Want(st.Agent == a.cfg.Addresses[0] && st.Failovers == 2 && !holds(a.mems[1], "m-back"), "Status() = %+v, second agent holds it: %v", st, holds(a.mems[1], "m-back"))
	})
	await(t, silent.cancelled, "the first agent's probe ended before registering there")
	if h := healthOn(a.mems[0], "m-back"); h != beacon.HealthPassing {
		t.Errorf("health on the first agent = %q, want passing", h)
	}
}

// TestMemoryProbeGivesUpOnRefusedPermission: an agent that refuses to
// deregister the old copy is not asked again every second; Stop's teardown
// asks once more.
func TestMemoryProbeGivesUpOnRefusedPermission(t *testing.T) {
	a := newMemAgents(2)
	logs := &testutil.Buffer{}
	k := newKeeper(t, a.cfg, registration("m-deny"), a.backend(), keeper.WithLogger(slog.New(slog.NewTextHandler(logs, nil))),
		keeper.WithTTL(time.Hour), keeper.WithReconcileInterval(20*time.Millisecond), keeper.WithDrainGrace(0))
	start(t, k)
	a.mems[0].Fail(registrytest.OpDeregister, errForbidden)
	a.mems[0].Fail(registrytest.OpAgentService, errForbidden)
	testutil.Eventually(t, deadline, "the probe gives up", func() error {
		return testutil.Want(strings.Contains(logs.String(), "cannot remove the copy left on a previous agent"), "no such log line yet")
	})
	if n := a.mems[0].Calls(registrytest.OpDeregister); n != 1 {
		t.Errorf("the refusing agent was asked to deregister %d times before the probe gave up, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Stop(ctx); !errors.Is(err, beacon.ErrPermissionDenied) {
		t.Errorf("Stop() = %v, want the refusal of the old agent", err)
	}
	if n := a.mems[0].Calls(registrytest.OpDeregister); n != 2 {
		t.Errorf("the refusing agent was asked to deregister %d times in all, want 2 (the probe, then Stop)", n)
	}
}
