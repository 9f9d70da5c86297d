package keeper_test

// Repair without waiting for a tick, on in-memory agents: every test uses
// an hour's TTL (a heartbeat every 20 minutes) and reconcile interval, so
// nothing the keeper does within the test's deadline can come from a
// tick: it comes from the watcher's news and from the heartbeat's retries.

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
	"github.com/beaconsd/beacon/registrytest"
)

// watchable is a Memory that is also a beacon.AgentServiceWatcher whose
// long polls the test ends: a call with a hash blocks until the test sends
// on next (an error is the call's result; nil: the wait passed, nothing
// changed). A call without a hash reads the copy.
type watchable struct {
	*registrytest.Memory
	next chan error
}

var _ beacon.AgentServiceWatcher = watchable{}

func (w watchable) WatchAgentService(ctx context.Context, id, hash string, _ time.Duration) (beacon.Instance, string, error) {
	if hash != "" {
		select {
		case err := <-w.next:
			return beacon.Instance{}, hash, err
		case <-ctx.Done():
			return beacon.Instance{}, "", ctx.Err()
		}
	}
	in, err := w.AgentService(ctx, id)
	if err != nil {
		return beacon.Instance{}, "", err
	}
	return in, "hash", nil
}

// send hands err to the watcher's blocked long poll.
func (w watchable) send(t *testing.T, err error) {
	t.Helper()
	select {
	case w.next <- err:
	case <-time.After(deadline):
		t.Fatal("the keeper is not watching the agent")
	}
}

// slowTicks is the options that leave repair to the watcher and retries.
func slowTicks() []keeper.Option {
	return []keeper.Option{keeper.WithTTL(time.Hour), keeper.WithReconcileInterval(time.Hour), keeper.WithDrainGrace(0)}
}

var errRefused = fmt.Errorf("%w: connection refused", beacon.ErrUnavailable)

// TestMemoryHeartbeatRetriesTheSameAgent: the agent goes away (the
// watcher's poll breaks), its heartbeats fail three times for a transport
// reason, then it comes back having lost the instance (restarted, state
// lost). The keeper retries that agent, registers again there the moment
// it answers "not found", and never moves to the other agent.
func TestMemoryHeartbeatRetriesTheSameAgent(t *testing.T) {
	a := newMemAgents(2)
	w := watchable{a.mems[0], make(chan error)}
	a.regs[0] = w
	k := newKeeper(t, a.cfg, registration("m-retry"), append(slowTicks(), a.backend())...)
	start(t, k)
	w.send(t, nil) // returns once the keeper's watcher is in a long poll

	const failures = 3
	failed := make(chan struct{}, failures)
	var down atomic.Bool
	down.Store(true)
	a.mems[0].SetFault(func(_ context.Context, op registrytest.Op, _ string) error {
		if !down.Load() {
			return nil
		}
		if op == registrytest.OpUpdateTTL {
			select {
			case failed <- struct{}{}:
			default:
			}
		}
		return errRefused
	})
	w.send(t, errRefused) // the agent died: its long poll broke
	for i := range failures {
		select {
		case <-failed:
		case <-time.After(deadline):
			t.Fatalf("heartbeat %d of %d never came: no retry", i+1, failures)
		}
	}
	if st := k.Status(); st.Agent != a.cfg.Addresses[0] || st.Failovers != 0 {
		t.Fatalf("Status() after %d failed heartbeats = %+v, want still on the first agent (retrying it)", failures, st)
	}
	a.mems[0].Restart() // it comes back without the instance
	down.Store(false)
	testutil.Eventually(t, deadline, "registered again on the same agent", func() error {
		return testutil.Want(healthOn(a.mems[0], "m-retry") == beacon.HealthPassing, "m-retry is %q", healthOn(a.mems[0], "m-retry"))
	})
	if st := k.Status(); st.Agent != a.cfg.Addresses[0] || st.Failovers != 0 || !st.Registered {
		t.Errorf("Status() = %+v, want registered on the first agent, no failover", st)
	}
	if got := a.mems[1].Calls(registrytest.OpRegister); got != 0 {
		t.Errorf("the second agent got %d registrations, want none", got)
	}
}

// TestMemoryWatcherNoticesLostRegistration: the agent restarts between two
// heartbeats and answers at once, without the instance; the watcher's
// "not found" makes the keeper register again there at once.
func TestMemoryWatcherNoticesLostRegistration(t *testing.T) {
	a := newMemAgents(1)
	w := watchable{a.mems[0], make(chan error)}
	a.regs[0] = w
	k := newKeeper(t, a.cfg, registration("m-watch"), append(slowTicks(), a.backend())...)
	start(t, k)
	w.send(t, nil) // returns once the keeper's watcher is in a long poll
	a.mems[0].Restart()
	w.send(t, fmt.Errorf("%w: unknown service ID", beacon.ErrNotFound))
	testutil.Eventually(t, deadline, "registered again", func() error {
		return testutil.Want(healthOn(a.mems[0], "m-watch") == beacon.HealthPassing, "m-watch is %q", healthOn(a.mems[0], "m-watch"))
	})
	if st := k.Status(); st.Failovers != 0 || !st.Registered {
		t.Errorf("Status() = %+v, want registered, no failover", st)
	}
}

// TestMemoryRetriesEndInFailover: an agent that keeps failing for a
// transport reason is retried only while the TTL leaves time; then the
// instance moves to the other agent, well before its TTL runs out.
func TestMemoryRetriesEndInFailover(t *testing.T) {
	a := newMemAgents(2)
	const ttl = 900 * time.Millisecond // retries for at most 600 ms after the last good heartbeat
	k := newKeeper(t, a.cfg, registration("m-giveup"), a.backend(), keeper.WithTTL(ttl), keeper.WithDrainGrace(0))
	start(t, k)
	a.mems[0].Fail(registrytest.OpAll, errRefused)
	testutil.Eventually(t, deadline, "failover", func() error {
		st := k.Status()
		return testutil.Want(st.Agent == a.cfg.Addresses[1] && st.Failovers == 1, "Status() = %+v", st)
	})
	if h := healthOn(a.mems[1], "m-giveup"); h != beacon.HealthPassing {
		t.Errorf("health on the second agent = %q, want passing", h)
	}
}
