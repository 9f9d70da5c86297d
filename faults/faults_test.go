package faults

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/httpclient"
)

// rate is the steady call rate of each caller in the outage scenarios.
const rate = 50

// TestLeaderKilled: the raft leader is killed (SIGKILL) under load.
//
// Pass: zero failed calls; an instance registered right after the new
// leader is elected reaches the caller within 2 s of the election; no
// instance is lost (the three registered before, and the new one, are all
// in the caller's snapshot and passing in the catalog).
func TestLeaderKilled(t *testing.T) {
	r := &result{order: 1, scenario: "Leader killed"}
	report(t, r)
	e := newEnv(t, 3, 2)
	c1, c2 := e.c.Clients[0], e.c.Clients[1]
	e.startInstance("hello-1", c1, c2)
	e.startInstance("hello-2", c2, c1)
	e.startInstance("hello-3", c1, c2)
	cl := e.newCaller("caller", httpclient.DefaultRetries, c1, c2)
	cl.waitSees(t, "three instances", deadline, exactly("hello-1", "hello-2", "hello-3"))
	l := e.startLoad(cl, rate, 2*time.Minute)
	hold(time.Second)

	win := e.window()
	leader := e.c.Leader(t)
	killed := time.Now()
	leader.Kill()
	next := e.c.Leader(t)
	elected := time.Now()
	t.Logf("killed leader %s; %s elected after %v", leader.Name, next.Name, elected.Sub(killed))

	e.startInstance("hello-4", c2, c1)
	seen := cl.waitSees(t, "the instance registered after the election", deadline, has("hello-4"))
	propagation := seen.Sub(elected)
	hold(2 * time.Second) // calls keep going on the new leader
	l.stop()
	st := l.stats()

	r.happened = fmt.Sprintf("%s killed; %s elected after %s; hello-4 registered after the election", leader.Name, next.Name, ms(elected.Sub(killed)))
	r.failed = fmt.Sprintf("%d of %d", st.failed, st.sent)
	r.recovery = fmt.Sprintf("new registration seen %s after the election", ms(propagation))
	r.requests = win.String()

	if st.failed != 0 || st.blocked != 0 {
		t.Errorf("%d of %d calls failed, %d blocked, want 0: %q", st.failed, st.sent, st.blocked, st.errs)
	}
	if propagation > 2*time.Second {
		t.Errorf("registration after the election reached the caller %v after it, want ≤ 2s", propagation)
	}
	all := []string{"hello-1", "hello-2", "hello-3", "hello-4"}
	if ids := cl.ids(); !exactly(all...)(ids) {
		t.Errorf("caller sees %q, want %q: an instance was lost", ids, all)
	}
	waitCatalog(t, c1, "all four passing, once each", deadline, func(insts []beacon.Instance) bool {
		return exactly(all...)(instanceIDs(insts))
	})
}

// TestInstanceAgentKilled: the client agent an instance registered through
// is killed, stays down for the outage, and comes back with its data dir
// (holding its now stale copy of the registration).
//
// Pass: the instance is passing through the other agent within 10 s of
// the kill; once the agent is back, no sample of the catalog or of the
// caller's snapshot lists an ID twice, and the stale copy is removed.
func TestInstanceAgentKilled(t *testing.T) {
	r := &result{order: 3, scenario: "Instance's agent killed"}
	report(t, r)
	e := newEnv(t, 3, 2)
	c1, c2 := e.c.Clients[0], e.c.Clients[1]
	moved := e.startInstance("hello-1", c1, c2)
	e.startInstance("hello-2", c2, c1)
	e.startInstance("hello-3", c2, c1)
	cl := e.newCaller("caller", httpclient.DefaultRetries, c2, c1)
	cl.waitSees(t, "three instances", deadline, exactly("hello-1", "hello-2", "hello-3"))
	l := e.startLoad(cl, rate, 3*time.Minute)
	hold(time.Second)

	win := e.window()
	killed := time.Now()
	c1.Kill()
	back := waitCatalog(t, c2, "hello-1 passing through "+c2.Name, deadline, func(insts []beacon.Instance) bool {
		return slices.ContainsFunc(insts, func(in beacon.Instance) bool { return in.ID == "hello-1" && in.Node == c2.Name })
	})
	reregistered := back.Sub(killed)
	t.Logf("hello-1 passing through %s %v after its agent was killed", c2.Name, reregistered)
	hold(max(0, outage()-time.Since(killed)))

	restarted := time.Now()
	c1.Restart(t, true)
	t.Logf("%s back with its data dir after %v", c1.Name, time.Since(restarted))
	dups := watchDuplicates(c2, 2*time.Minute, cl)
	// The keeper removes its stale copy from the old agent with its next
	// heartbeat once that agent answers.
	waitCatalog(t, c1, "no copy of hello-1 left on "+c1.Name, deadline, func(insts []beacon.Instance) bool {
		return !slices.ContainsFunc(insts, func(in beacon.Instance) bool { return in.ID == "hello-1" && in.Node == c1.Name })
	})
	hold(3 * time.Second) // keep sampling after the cleanup
	samples, seen := dups.stop()
	l.stop()
	st := l.stats()

	r.happened = fmt.Sprintf("%s (holding hello-1) killed for %v, restarted with its data", c1.Name, outage())
	r.failed = fmt.Sprintf("%d of %d", st.failed, st.sent)
	r.recovery = fmt.Sprintf("hello-1 passing through %s %s after the kill; duplicate IDs in %d of %d samples after the agent returned", c2.Name, ms(reregistered), len(seen), samples)
	r.requests = win.String()

	if reregistered > 10*time.Second {
		t.Errorf("hello-1 re-registered through another agent after %v, want ≤ 10s", reregistered)
	}
	if len(seen) > 0 {
		t.Errorf("an ID was passing twice after the agent came back: %q", seen)
	}
	if s := moved.status(); s.Failovers != 1 || s.Agent != c2.HTTPAddr {
		t.Errorf("hello-1 keeper status %+v, want one failover to %s", s, c2.HTTPAddr)
	}
	if st.failed != 0 {
		t.Errorf("%d of %d calls failed, want 0: %q", st.failed, st.sent, st.errs)
	}
}
