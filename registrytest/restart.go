package registrytest

import (
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

// indexBumps is how many times the restart test re-registers an instance on
// the first agent, so that the index it remembers is well above any the
// fresh agent reaches during the test.
const indexBumps = 40

// testAgentRestart checks a backend across an agent restart: unavailable
// while the agent is down, and Consul's index rule afterwards.
func (s suite) testAgentRestart(t *testing.T) {
	t.Parallel()
	srv, r := s.agent(t)
	ctx := testContext(t)

	reg := ttlRegistration("before-1", "restart")
	for i := range indexBumps {
		reg.Meta = map[string]string{"n": strconv.Itoa(i)}
		mustRegister(t, ctx, r, reg)
	}
	q := beacon.Query{Service: "restart", IncludeUnhealthy: true}
	_, before := lookup(t, ctx, r, q)
	old := before.LastIndex

	srv.Stop()
	t.Run("UnavailableWhileDown", func(t *testing.T) {
		if err := r.Register(ctx, ttlRegistration("down-1", "restart")); !errors.Is(err, beacon.ErrUnavailable) {
			t.Errorf("Register(%q) with the agent down = %v, want an error matching beacon.ErrUnavailable", "down-1", err)
		}
		if _, _, err := r.Instances(ctx, q); !errors.Is(err, beacon.ErrUnavailable) {
			t.Errorf("Instances(%s) with the agent down = %v, want an error matching beacon.ErrUnavailable", describe(q), err)
		}
	})

	// A dev agent keeps its state in memory: the new one starts empty, with
	// indexes starting low again.
	srv.Restart(t)
	got, fresh := lookup(t, ctx, r, q)
	if len(got) != 0 {
		t.Fatalf("Instances(%s) after a dev agent restart = %+v, want none", describe(q), got)
	}
	if fresh.LastIndex >= old {
		t.Fatalf("Instances(%s) after a restart = index %d, want below the old %d (cannot show the index rule)", describe(q), fresh.LastIndex, old)
	}

	// Consul blocks until its index passes WaitIndex. After a restart its
	// index is below the one a watcher remembers, so a change does not
	// end the wait: a watcher must start again from zero when an answer's
	// index goes backwards (Consul's docs on blocking queries).
	t.Run("OldIndexWaitsOut", func(t *testing.T) {
		const wait = 2 * time.Second
		bq := beacon.Query{Service: "restart", IncludeUnhealthy: true, WaitIndex: old, WaitTime: wait}
		ch := goInstances(ctx, r, bq)
		mustRegister(t, ctx, r, ttlRegistration("after-1", "restart"))
		res := receive(t, ch, "Instances("+describe(bq)+")")
		if res.err != nil {
			t.Fatalf("Instances(%s) = %v, want nil error", describe(bq), res.err)
		}
		if res.elapsed < wait/2 {
			t.Errorf("Instances(%s) returned after %v, want it to wait out about %v: the fresh agent's index stays below %d", describe(bq), res.elapsed, wait, old)
		}
		if res.meta.LastIndex >= old {
			t.Errorf("Instances(%s) = index %d, want below %d", describe(bq), res.meta.LastIndex, old)
		}
	})

	t.Run("ZeroIndexSeesNew", func(t *testing.T) {
		mustRegister(t, ctx, r, ttlRegistration("after-1", "restart"))
		got, meta := lookup(t, ctx, r, q)
		if !slices.Equal(ids(got), []string{"after-1"}) {
			t.Errorf("Instances(%s) after the restart = IDs %q, want [after-1]", describe(q), ids(got))
		}
		if meta.LastIndex >= old {
			t.Errorf("Instances(%s) after the restart = index %d, want below the old %d", describe(q), meta.LastIndex, old)
		}
	})
}
