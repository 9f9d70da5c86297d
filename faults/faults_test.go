package faults

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/httpclient"
	"github.com/beaconsd/beacon/keeper"
)

// rate is the steady call rate of each caller in the outage scenarios.
const rate = 50

// TestLeaderKilled: the raft leader is killed (SIGKILL) under load.
//
// Pass: zero failed calls; an instance registered right after the new
// leader is elected reaches the caller (how soon, target 2 s from the
// election, is reported, not asserted); no instance is lost (the three
// registered before, and the new one, are all in the caller's snapshot
// and passing in the catalog).
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
	// How soon hello-4 reached the caller (target 2 s) is a figure of the
	// report (r.recovery), not an assertion: a loaded machine's. That it
	// reaches the caller at all is waitSees's, with its deadline.
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
// Pass: the instance is passing through the other agent (how soon, target
// 10 s from the kill, is reported, not asserted); once the agent is back,
// the caller's snapshots never list an instance twice, the catalog's
// duplicate window (from the agent answering to one copy left, read every
// 20 ms) closes within dupWindowBound and is reported, and the stale copy
// is removed.
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

	dups := watchDuplicates(c2, 2*time.Minute, cl)
	answered := restartTraced(t, dups, c1, true)
	t.Logf("%s back with its data dir, answering after %v", c1.Name, time.Since(answered))
	waitAgentSynced(t, c1, deadline)
	// The keeper removes its stale copy from the old agent once that
	// agent answers; until then the catalog lists it.
	removed := waitChecks(t, c2, "no copy of hello-1 left on "+c1.Name, deadline, func(r catalogRead) bool {
		_, left := r.checks[c1.Name+" service:hello-1"]
		return !left
	})
	hold(3 * time.Second) // keep sampling after the cleanup
	dr := e.checkDups(dups, "Instance's agent killed", c1, answered)
	l.stop()
	st := l.stats()

	r.happened = fmt.Sprintf("%s (holding hello-1) killed for %v, restarted with its data", c1.Name, outage())
	r.failed = fmt.Sprintf("%d of %d", st.failed, st.sent)
	r.recovery = fmt.Sprintf("hello-1 passing through %s %s after the kill; stale copy removed %s after %s answered; %s; %s", c2.Name, ms(reregistered), msExact(removed.Sub(answered)), c1.Name, dr.catalogSummary(), dr.callerSummary())
	r.requests = win.String()

	// How soon hello-1 was passing through c2 (target 10 s) is a figure of
	// the report (r.recovery), not an assertion; that it was at all is
	// waitCatalog's, with its deadline.
	if s := moved.status(); s.Failovers != 1 || s.Agent != c2.HTTPAddr {
		t.Errorf("hello-1 keeper status %+v, want one failover to %s", s, c2.HTTPAddr)
	}
	if st.failed != 0 {
		t.Errorf("%d of %d calls failed, want 0: %q", st.failed, st.sent, st.errs)
	}
}

// TestCallerAgentKilled: the agent a caller reads from is killed for the
// outage and restarted with its data. Caller "several" lists both client
// agents; caller "one" lists only the killed one.
//
// Pass: zero failed calls for both (served from their caches); "several"
// moves its watch to the other agent and sees an instance registered
// during the outage; "one" resumes when its agent returns and sees that
// instance then.
func TestCallerAgentKilled(t *testing.T) {
	r := &result{order: 2, scenario: "A caller's agent killed"}
	report(t, r)
	e := newEnv(t, 3, 2)
	c1, c2 := e.c.Clients[0], e.c.Clients[1]
	for _, id := range []string{"hello-1", "hello-2", "hello-3"} {
		e.startInstance(id, c2, c1)
	}
	several := e.newCaller("several", httpclient.DefaultRetries, c1, c2)
	one := e.newCaller("one", httpclient.DefaultRetries, c1)
	for _, c := range []*caller{several, one} {
		c.waitSees(t, "three instances", deadline, exactly("hello-1", "hello-2", "hello-3"))
	}
	ls := e.startLoad(several, rate/2, 3*time.Minute)
	lo := e.startLoad(one, rate/2, 3*time.Minute)
	hold(time.Second)

	win := e.window()
	movedCh := e.logs.when("discovery: moving watches to another agent")
	killed := time.Now()
	c1.Kill()
	var moved time.Duration
	select {
	case at := <-movedCh:
		moved = at.Sub(killed)
	case <-time.After(deadline):
		t.Fatalf("caller %q did not move its watch to %s", several.name, c2.Name)
	}
	// An instance that starts during the outage: only the caller that
	// moved can see it before the agent returns.
	hold(outage() / 3)
	started := time.Now()
	e.startInstance("hello-4", c2)
	registered := time.Now()
	seen := several.waitSees(t, "hello-4, registered during the outage", deadline, has("hello-4"))
	if ids := one.ids(); slices.Contains(ids, "hello-4") {
		t.Errorf("caller %q, whose only agent is down, sees %q: how?", one.name, ids)
	}
	if err := one.snapErr(); err == nil {
		t.Errorf("caller %q: snapshot error nil while its only agent is down", one.name)
	}
	hold(max(0, outage()-time.Since(killed)))

	c1.Restart(t, true)
	returned := time.Now()
	resumed := one.waitSees(t, "hello-4 after its agent returned", deadline, has("hello-4"))
	hold(time.Second)
	ls.stop()
	lo.stop()
	ss, so := ls.stats(), lo.stats()

	r.happened = fmt.Sprintf("%s killed for %v; hello-4 started on %s meanwhile", c1.Name, outage(), c2.Name)
	r.failed = fmt.Sprintf("%d of %d (several agents), %d of %d (one agent)", ss.failed, ss.sent, so.failed, so.sent)
	r.recovery = fmt.Sprintf("watch moved to %s after %s, hello-4 registered in %s and seen %s later; single-agent caller resumed %s after its agent returned", c2.Name, ms(moved), ms(registered.Sub(started)), ms(seen.Sub(registered)), ms(resumed.Sub(returned)))
	r.requests = win.String()

	for _, st := range []loadStats{ss, so} {
		if st.failed != 0 || st.blocked != 0 {
			t.Errorf("%d of %d calls failed, %d blocked, want 0: %q", st.failed, st.sent, st.blocked, st.errs)
		}
	}
	if err := one.snapErr(); err != nil {
		t.Errorf("caller %q: snapshot error %v after its agent returned", one.name, err)
	}
}

// TestQuorumLost: two of the three servers are killed for the outage, then
// restarted with their data.
//
// Pass: zero failed calls while there is no quorum (callers serve their
// caches, the instances keep running); an instance that starts during the
// outage is accepted by its agent (registration is agent-local) and
// reaches the caller once the quorum returns, with nothing restarted but
// the servers. How soon (target 5 s) is reported, not asserted.
func TestQuorumLost(t *testing.T) {
	r := &result{order: 4, scenario: "Two of three servers lost"}
	report(t, r)
	e := newEnv(t, 3, 2)
	c1, c2 := e.c.Clients[0], e.c.Clients[1]
	e.startInstance("hello-1", c1, c2)
	e.startInstance("hello-2", c2, c1)
	cl := e.newCaller("caller", httpclient.DefaultRetries, c1, c2)
	cl.waitSees(t, "two instances", deadline, exactly("hello-1", "hello-2"))
	l := e.startLoad(cl, rate, 3*time.Minute)
	hold(time.Second)

	win := e.window()
	leader := e.c.Leader(t)
	lost := []*consultest.Node{leader}
	for _, s := range e.c.Servers {
		if s != leader && len(lost) < 2 {
			lost = append(lost, s)
		}
	}
	killed := time.Now()
	for _, s := range lost {
		s.Kill()
	}
	hold(outage() / 3)
	// Start may wait for the agent: Consul 1.14 agents hold their local
	// state lock while anti-entropy RPCs wait for a leader (7 s each, see
	// docs/reliability.md), so it runs beside the outage.
	late := e.newInstance("hello-3", c1, c2)
	started := time.Now()
	startErr := make(chan error, 1)
	go func() { startErr <- late.start(outage() + 2*deadline) }()
	hold(max(0, outage()-time.Since(killed)))

	for _, s := range lost {
		s.RestartNoWait(t, true)
	}
	e.c.Leader(t)
	quorum := time.Now()
	var accepted time.Time
	select {
	case err := <-startErr:
		if err != nil {
			t.Fatalf("hello-3: Start: %v", err)
		}
		accepted = time.Now()
	case <-time.After(2 * deadline):
		t.Fatalf("hello-3: Start still running %v after the quorum returned", 2*deadline)
	}
	acceptedWhen := fmt.Sprintf("%s after its start, before the quorum returned", ms(accepted.Sub(started)))
	if accepted.After(quorum) {
		acceptedWhen = fmt.Sprintf("%s after its start, %s after the quorum returned", ms(accepted.Sub(started)), ms(accepted.Sub(quorum)))
	}
	seen := cl.waitSees(t, "hello-3 after the quorum returned", deadline, has("hello-3"))
	reached := seen.Sub(quorum)
	hold(time.Second)
	l.stop()
	st := l.stats()

	r.happened = fmt.Sprintf("%s and %s killed for %v; hello-3 started meanwhile: accepted %s; keeper failovers %d", lost[0].Name, lost[1].Name, outage(), acceptedWhen, late.status().Failovers)
	r.failed = fmt.Sprintf("%d of %d", st.failed, st.sent)
	r.recovery = fmt.Sprintf("quorum %s after the restart began; hello-3 reached the caller %s after the quorum", ms(quorum.Sub(killed)-outage()), ms(reached))
	r.requests = win.String()

	if st.failed != 0 || st.blocked != 0 {
		t.Errorf("%d of %d calls failed, %d blocked, want 0: %q", st.failed, st.sent, st.blocked, st.errs)
	}
	// How soon hello-3 reached the caller (target 5 s) is a figure of the
	// report (r.recovery, docs/reliability.md), not an assertion: it
	// missed by 158 ms once in CI on a loaded 2-core machine. That it
	// reaches the caller at all is waitSees's, with its deadline.
}

// TestAgentPaused: the agent that a caller and an instance use is stopped
// with SIGSTOP for the outage (it accepts connections and answers
// nothing), then continued.
//
// Pass: no caller blocks: zero failed calls (a call that waits 5 s
// fails) and none refused for want of a free slot (64 in flight); the
// slowest call (target under 1 s) and the fewest calls that succeeded in
// a whole second of the pause (target half the steady rate) are reported,
// not asserted: both are a loaded machine's figures. An instance started
// during a pause long enough for the cache's watchdog (30 s, not the 5 s
// of make test) is seen before the pause ends; after SIGCONT, the
// catalog converges to each instance passing once; the caller's snapshots
// never list an instance twice (the catalog's duplicate window after
// SIGCONT is reported, bounded by dupWindowBound).
func TestAgentPaused(t *testing.T) {
	r := &result{order: 5, scenario: "Agent paused (SIGSTOP)"}
	report(t, r)
	e := newEnv(t, 3, 2)
	c1, c2 := e.c.Clients[0], e.c.Clients[1]
	hung := e.startInstance("hello-1", c1, c2)
	e.startInstance("hello-2", c2, c1)
	e.startInstance("hello-3", c2, c1)
	cl := e.newCaller("caller", httpclient.DefaultRetries, c1, c2)
	cl.waitSees(t, "three instances", deadline, exactly("hello-1", "hello-2", "hello-3"))
	l := e.startLoad(cl, rate, 3*time.Minute)
	hold(time.Second)

	win := e.window()
	paused := time.Now()
	c1.Pause()
	// An instance that starts during the pause, on the other agent: the
	// caller's long poll hangs on the paused agent until the cache's
	// watchdog (a probe every 5 s, two misses of 2 s) ends it and moves
	// the watch to the other agent.
	hold(outage() / 3)
	started := time.Now()
	e.startInstance("hello-4", c2)
	var seenAt time.Time
	for end := paused.Add(outage()); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if seenAt.IsZero() && slices.Contains(cl.ids(), "hello-4") {
			seenAt = time.Now()
		}
	}
	// From SIGCONT on, the duplicate criteria: the agent's old copy of
	// hello-1 is passing again in the catalog until its sync or the
	// keeper removes it; callers must not list it twice.
	dups := watchDuplicates(c2, 2*time.Minute, cl)
	c1.Resume()
	resumed := time.Now()
	dups.mark(resumed, c1.Name+" continued (SIGCONT)")
	var seenDuring string
	if !seenAt.IsZero() {
		seenDuring = fmt.Sprintf("hello-4 (started on %s during the pause) seen by the caller %s after its start, during the pause: the watch left the paused agent", c2.Name, ms(seenAt.Sub(started)))
	} else {
		seenLate := cl.waitSees(t, "hello-4 after SIGCONT", deadline, has("hello-4"))
		seenDuring = fmt.Sprintf("hello-4 (started on %s during the pause) seen by the caller only %s after SIGCONT", c2.Name, ms(seenLate.Sub(resumed)))
		// Only a pause long enough for the watchdog is a criterion.
		if outage()-outage()/3 > watchdogBound {
			t.Errorf("hello-4, started %v before SIGCONT (a %v pause), was not seen before SIGCONT; the watchdog (about %v) should have moved the watch off the paused agent well before", resumed.Sub(started).Round(time.Millisecond), outage(), watchdogBound)
		}
	}
	least := l.minOKPerSecond(paused, resumed)
	converged := waitCatalog(t, c2, "each instance passing once", deadline, func(insts []beacon.Instance) bool {
		return exactly("hello-1", "hello-2", "hello-3", "hello-4")(instanceIDs(insts))
	})
	hold(3 * time.Second)
	dr := e.checkDups(dups, "Agent paused (SIGSTOP)", c1, resumed)
	l.stop()
	st := l.stats()

	r.happened = fmt.Sprintf("%s (hello-1's and the caller's first agent) paused for %v; hello-1 failed over %d time(s); %s", c1.Name, outage(), hung.status().Failovers, seenDuring)
	r.failed = fmt.Sprintf("%d of %d; slowest call %s; at least %d calls/s succeeded during the pause (rate %d/s)", st.failed, st.sent, ms(st.maxLat), least, rate)
	r.recovery = fmt.Sprintf("each instance passing once %s after SIGCONT; %s; %s", ms(converged.Sub(resumed)), dr.catalogSummary(), dr.callerSummary())
	r.requests = win.String()

	if st.failed != 0 || st.blocked != 0 {
		t.Errorf("%d of %d calls failed, %d blocked, want 0: %q", st.failed, st.sent, st.blocked, st.errs)
	}
	// The slowest call and the fewest calls that succeeded in a second are
	// in the report (r.failed): a caller blocked on the paused agent
	// would wait past callTimeout and fail, or fill the 64 slots and be
	// counted as blocked above.
}

// watchdogBound is how soon a caller's cache must leave a paused agent: its
// watchdog probes every 5 s and gives up after two 2 s misses, about 9 s;
// the rest is slack for a loaded machine. It is a design guarantee (the
// watchdog's), checked only when the pause is long enough for it (make
// faults' 30 s: hello-4 starts 10 s in, so the test allows 20 s, more
// than twice the watchdog's 9).
const watchdogBound = 15 * time.Second

// TestRollingRestart: the three instances are restarted one at a time the
// way an orchestrator restarts cmd/sayhello: drain (the heartbeat check
// goes critical, the drain grace passes, the instance deregisters), stop
// the HTTP server, start again half a second later on the same address
// with the same ID, and wait until every caller sees it before the next
// one. Two callers share
// 200 calls/s: one with retries off, one with the default retries.
//
// Pass: zero failed calls for both, and zero failed attempts for both
// (the retrying caller never needed its retries); both loads sent calls
// (how many a second, target 200, is reported, not asserted).
func TestRollingRestart(t *testing.T) {
	r := &result{order: 6, scenario: "Rolling restart under 200 calls/s"}
	report(t, r)
	e := newEnv(t, 3, 2)
	c1, c2 := e.c.Clients[0], e.c.Clients[1]
	ins := []*instance{
		e.startInstance("hello-1", c1, c2),
		e.startInstance("hello-2", c2, c1),
		e.startInstance("hello-3", c1, c2),
	}
	noRetry := e.newCaller("no-retries", 0, c1, c2)
	retry := e.newCaller("retries", httpclient.DefaultRetries, c2, c1)
	all := exactly("hello-1", "hello-2", "hello-3")
	for _, c := range []*caller{noRetry, retry} {
		c.waitSees(t, "three instances", deadline, all)
	}
	l0 := e.startLoad(noRetry, 100, 3*time.Minute)
	l2 := e.startLoad(retry, 100, 3*time.Minute)
	hold(time.Second)

	win := e.window()
	began := time.Now()
	var slowest time.Duration
	type span struct{ from, to time.Time }
	restarts := make([]span, 0, len(ins))
	for _, in := range ins {
		t0 := time.Now()
		if err := in.stop(); err != nil {
			t.Fatalf("stopping %s: %v", in.id, err)
		}
		// A process takes a while to start again; a caller still sending
		// here meanwhile would be refused.
		hold(500 * time.Millisecond)
		if err := in.start(deadline); err != nil {
			t.Fatalf("starting %s again: %v", in.id, err)
		}
		for _, c := range []*caller{noRetry, retry} {
			c.waitSees(t, in.id+" back", deadline, all)
		}
		slowest = max(slowest, time.Since(t0))
		restarts = append(restarts, span{t0, time.Now()})
	}
	took := time.Since(began)
	hold(time.Second)
	l0.stop()
	l2.stop()
	s0, s2 := l0.stats(), l2.stats()
	f0, f2 := noRetry.base.failed.Load(), retry.base.failed.Load()

	r.happened = fmt.Sprintf("hello-1..3 drained, stopped and started one at a time in %s", ms(took))
	r.failed = fmt.Sprintf("%d of %d with retries off, %d of %d with retries on; failed attempts %d and %d", s0.failed, s0.sent, s2.failed, s2.sent, f0, f2)
	r.recovery = fmt.Sprintf("slowest instance back in every caller %s after its drain began (drain grace %v)", ms(slowest), keeper.DefaultDrainGrace)
	r.requests = win.String()

	for _, st := range []loadStats{s0, s2} {
		if st.failed != 0 || st.blocked != 0 {
			t.Errorf("%d of %d calls failed, %d blocked, want 0: %q", st.failed, st.sent, st.blocked, st.errs)
		}
	}
	for _, c := range []*caller{noRetry, retry} {
		if n := c.base.failed.Load(); n != 0 {
			c.base.mu.Lock()
			t.Errorf("%s: %d attempts failed, want 0: %q", c.name, n, c.base.firstFailures)
			c.base.mu.Unlock()
		}
	}
	// The rate the loads reached is a loaded machine's figure (r.failed
	// gives the counts, r.happened the time); that they ran at all is
	// what zero failures needs to mean something.
	t.Logf("%d calls sent over the loads' run, the restarts taking %v of it (target 200 calls/s)", s0.sent+s2.sent, took.Round(time.Millisecond))
	// Each load kept sending through each restart: zero failures would
	// mean nothing for a restart no call was sent during.
	for i, sp := range restarts {
		for _, l := range []struct {
			name string
			l    *load
		}{{noRetry.name, l0}, {retry.name, l2}} {
			if n := l.l.sentBetween(sp.from, sp.to); n == 0 {
				t.Errorf("%s: no call sent while %s restarted (%v)", l.name, ins[i].id, sp.to.Sub(sp.from).Round(time.Millisecond))
			}
		}
	}
}

// TestAgentRestart: a client agent is restarted, first keeping its data
// dir, then with it wiped. hello-1 knows only that agent; hello-2 prefers
// it and knows the other; hello-3 is on the other agent.
//
// Pass, for each restart: the catalog and the caller converge to the three
// instances, each passing once; from the restart on, the caller's snapshots
// never list an instance twice, and the catalog's duplicate window (from
// the agent answering to one copy left, read every 20 ms) closes within
// 10 s and is reported; zero failed calls.
func TestAgentRestart(t *testing.T) {
	r := &result{order: 7, scenario: "Agent restart, with and without its data dir"}
	report(t, r)
	e := newEnv(t, 3, 2)
	c1, c2 := e.c.Clients[0], e.c.Clients[1]
	e.startInstance("hello-1", c1)
	e.startInstance("hello-2", c1, c2)
	e.startInstance("hello-3", c2, c1)
	cl := e.newCaller("caller", httpclient.DefaultRetries, c2, c1)
	all := []string{"hello-1", "hello-2", "hello-3"}
	cl.waitSees(t, "three instances", deadline, exactly(all...))
	l := e.startLoad(cl, rate, 3*time.Minute)
	hold(time.Second)

	win := e.window()
	var happened, recovery []string
	for _, keep := range []bool{true, false} {
		what := "with its data dir"
		if !keep {
			what = "with its data dir wiped"
		}
		dups := watchDuplicates(c2, 2*time.Minute, cl)
		t0 := time.Now()
		answered := restartTraced(t, dups, c1, keep)
		waitAgentSynced(t, c1, deadline)
		converged := waitCatalog(t, c2, "three instances passing once each after a restart "+what, deadline, func(insts []beacon.Instance) bool {
			return exactly(all...)(instanceIDs(insts))
		})
		cl.waitSees(t, "three instances after a restart "+what, deadline, exactly(all...))
		hold(3 * time.Second) // keep sampling after convergence
		dr := e.checkDups(dups, "Agent restart "+what, c1, answered)
		happened = append(happened, fmt.Sprintf("%s restarted %s (answering in %s)", c1.Name, what, ms(answered.Sub(t0))))
		recovery = append(recovery, fmt.Sprintf("%s: converged %s after the restart began; %s; %s", what, ms(converged.Sub(t0)), dr.catalogSummary(), dr.callerSummary()))
	}
	l.stop()
	st := l.stats()

	r.happened = strings.Join(happened, "; then ")
	r.failed = fmt.Sprintf("%d of %d", st.failed, st.sent)
	r.recovery = strings.Join(recovery, "; ")
	r.requests = win.String()
	if st.failed != 0 || st.blocked != 0 {
		t.Errorf("%d of %d calls failed, %d blocked, want 0: %q", st.failed, st.sent, st.blocked, st.errs)
	}
}
