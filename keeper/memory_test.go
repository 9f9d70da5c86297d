package keeper_test

// The keeper's decisions, on in-memory agents with injected faults
// (registrytest.Memory): these tests need no consul binary, so a
// contributor without one still tests failover, repair, drain and cleanup.
// What an agent itself does is tested against real agents in the other
// files.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
	"github.com/beaconsd/beacon/registrytest"
)

// memAgents is n in-memory agents behind n configured addresses, which are
// never dialled.
type memAgents struct {
	cfg  consul.Config
	mems []*registrytest.Memory
	regs []beacon.Registry // what the keeper gets: mems[i], or a wrapper of it
}

func newMemAgents(n int) *memAgents {
	m := &memAgents{}
	for range n {
		mem := registrytest.NewMemory()
		m.mems = append(m.mems, mem)
		m.regs = append(m.regs, mem)
	}
	m.cfg, _ = registrytest.Agents(m.regs...)
	m.cfg.Timeout = 2 * time.Second
	return m
}

// backend hands the keeper the registry of the address it asks for: m.regs
// as they are when the keeper asks (a test may wrap one first).
func (m *memAgents) backend() keeper.Option {
	return keeper.WithBackend(func(cfg consul.Config) (beacon.Registry, error) {
		_, b := registrytest.Agents(m.regs...)
		return b(cfg)
	})
}

// holds reports whether mem holds the instance id.
func holds(mem *registrytest.Memory, id string) bool {
	_, err := mem.AgentService(context.Background(), id)
	return err == nil
}

// healthOn is the health mem reports for id, or "" when it does not hold it.
func healthOn(mem *registrytest.Memory, id string) beacon.Health {
	for _, in := range instances(mem, true) {
		if in.ID == id {
			return in.Health
		}
	}
	return ""
}

func TestMemoryFailoverAndStaleCopy(t *testing.T) {
	a := newMemAgents(2)
	k := newKeeper(t, a.cfg, registration("m-fo"), a.backend(), keeper.WithTTL(60*time.Millisecond), keeper.WithDrainGrace(0))
	start(t, k)
	if st := k.Status(); st.Agent != a.cfg.Addresses[0] || st.Failovers != 0 {
		t.Fatalf("Status() after Start = %+v, want the first agent, no failover", st)
	}
	if h := healthOn(a.mems[0], "m-fo"); h != beacon.HealthPassing {
		t.Fatalf("health on the first agent after Start = %q, want passing at once", h)
	}

	a.mems[0].Fail(registrytest.OpAll, beacon.ErrUnavailable) // the agent dies
	testutil.Eventually(t, deadline, "failover to the second agent", func() error {
		st := k.Status()
		return testutil.Want(st.Agent == a.cfg.Addresses[1] && st.Failovers == 1, "Status() = %+v", st)
	})
	if h := healthOn(a.mems[1], "m-fo"); h != beacon.HealthPassing {
		t.Errorf("health on the second agent after the failover = %q, want passing", h)
	}

	a.mems[0].Fail(registrytest.OpAll, nil) // it comes back, holding its old copy
	testutil.Eventually(t, deadline, "the copy left on the first agent removed", func() error { return testutil.Want(!holds(a.mems[0], "m-fo"), "the first agent still holds m-fo") })
	if st := k.Status(); st.Agent != a.cfg.Addresses[1] || st.Failovers != 1 || !holds(a.mems[1], "m-fo") {
		t.Errorf("Status() = %+v after the old agent returned, want the instance kept on the second agent", st)
	}
}

func TestMemoryNotFoundRegistersAgainOnTheSameAgent(t *testing.T) {
	a := newMemAgents(2)
	k := newKeeper(t, a.cfg, registration("m-lost"), a.backend(), keeper.WithTTL(60*time.Millisecond), keeper.WithDrainGrace(0))
	start(t, k)
	a.mems[0].Restart() // a dev agent restarted: the registration is gone, the agent answers
	testutil.Eventually(t, deadline, "passing again on the same agent", func() error {
		return testutil.Want(healthOn(a.mems[0], "m-lost") == beacon.HealthPassing, "m-lost is %q", healthOn(a.mems[0], "m-lost"))
	})
	if st := k.Status(); st.Agent != a.cfg.Addresses[0] || st.Failovers != 0 {
		t.Errorf("Status() = %+v, want still on the first agent, no failover", st)
	}
	if n := a.mems[1].Calls(registrytest.OpRegister); n != 0 {
		t.Errorf("the second agent got %d registrations, want none: \"not found\" is repaired where it happened", n)
	}
}

func TestMemoryReconcile(t *testing.T) {
	a := newMemAgents(1)
	// A TTL far longer than the test: only reconciling can notice.
	k := newKeeper(t, a.cfg, registration("m-rec"), a.backend(), keeper.WithTTL(time.Hour), keeper.WithReconcileInterval(20*time.Millisecond), keeper.WithDrainGrace(0))
	start(t, k)
	mem := a.mems[0]

	altered := registration("m-rec")
	altered.Meta = map[string]string{"version": "tampered"}
	if err := mem.Register(context.Background(), altered); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, deadline, "the altered copy replaced", func() error {
		in, err := mem.AgentService(context.Background(), "m-rec")
		return testutil.Want(err == nil && in.Meta["version"] == "1", "AgentService() = %+v, %v", in, err)
	})

	if err := mem.Deregister(context.Background(), "m-rec"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, deadline, "the lost copy registered again", func() error { return testutil.Want(holds(mem, "m-rec"), "m-rec not registered") })
}

func TestMemoryDrainMarksCriticalThenDeregisters(t *testing.T) {
	a := newMemAgents(1)
	mem := a.mems[0]
	k := newKeeper(t, a.cfg, registration("m-drain"), a.backend(), keeper.WithDrainGrace(time.Hour))
	start(t, k)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- k.Stop(ctx) }()
	testutil.Eventually(t, deadline, "critical while draining", func() error {
		return testutil.Want(healthOn(mem, "m-drain") == beacon.HealthCritical, "m-drain is %q", healthOn(mem, "m-drain"))
	})
	if !holds(mem, "m-drain") {
		t.Fatal("deregistered before the drain grace ended")
	}
	cancel() // cuts the hour-long grace short
	awaitStopped(t, stopped)
	if holds(mem, "m-drain") {
		t.Error("still registered after Stop")
	}
}

// lostAnswer is an agent that applies a registration but whose answer is
// lost, as a connection reset after the request was sent; then ends
// (when set) the context the keeper's Start runs on.
type lostAnswer struct {
	*registrytest.Memory
	end context.CancelFunc
}

func (l lostAnswer) Register(ctx context.Context, r beacon.Registration) error {
	if err := l.Memory.Register(ctx, r); err != nil {
		return err
	}
	if l.end != nil {
		l.end()
	}
	return fmt.Errorf("%w: connection reset after the request was sent", beacon.ErrUnavailable)
}

func TestMemoryFailedStartLeavesNothing(t *testing.T) {
	a := newMemAgents(2)
	// Start ends right after the first agent applied the registration and
	// lost its answer, however slow the machine: the cleanup must find it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.regs[0] = lostAnswer{a.mems[0], cancel}
	a.mems[1].Fail(registrytest.OpAll, beacon.ErrUnavailable)
	k, err := keeper.New(a.cfg, registration("m-fail"), a.backend())
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Start() = %v, want the context's end", err)
	}
	if a.mems[0].Calls(registrytest.OpRegister) == 0 {
		t.Fatal("no registration reached the first agent: the test proves nothing")
	}
	if holds(a.mems[0], "m-fail") {
		t.Error("a failed Start left its registration on the agent that applied it")
	}
	if err := k.Start(context.Background()); !errors.Is(err, keeper.ErrStopped) {
		t.Errorf("Start() after a failed Start = %v, want ErrStopped", err)
	}
	if err := k.Update(context.Background(), registration("m-fail")); !errors.Is(err, keeper.ErrStopped) {
		t.Errorf("Update() after a failed Start = %v, want ErrStopped", err)
	}
	if err := k.Stop(context.Background()); err != nil {
		t.Errorf("Stop() after a failed Start = %v", err)
	}
}

func TestMemoryPermissionDeniedIsNotRetried(t *testing.T) {
	a := newMemAgents(2)
	a.mems[0].Fail(registrytest.OpRegister, &beacon.StatusError{Method: http.MethodPut, Path: "/v1/agent/service/register", StatusCode: http.StatusForbidden, Message: "Permission denied"})
	k := newKeeper(t, a.cfg, registration("m-acl"), a.backend())
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Start(ctx); !errors.Is(err, beacon.ErrPermissionDenied) {
		t.Errorf("Start() = %v, want ErrPermissionDenied", err)
	}
	if n0, n1 := a.mems[0].Calls(registrytest.OpRegister), a.mems[1].Calls(registrytest.OpRegister); n0 != 1 || n1 != 0 {
		t.Errorf("registrations sent: %d to the first agent, %d to the second; want 1 and 0", n0, n1)
	}
}

// TestMemoryUpdateDuringStartRetries: an Update while Start still retries
// returns at once, and the attempt that succeeds sends it.
func TestMemoryUpdateDuringStartRetries(t *testing.T) {
	a := newMemAgents(1)
	mem := a.mems[0]
	mem.Fail(registrytest.OpRegister, beacon.ErrUnavailable)
	k := newKeeper(t, a.cfg, registration("m-upd"), a.backend(), keeper.WithDrainGrace(0))
	started := make(chan error, 1)
	go func() { started <- k.Start(context.Background()) }()
	testutil.Eventually(t, deadline, "a first attempt", func() error { return testutil.Want(mem.Calls(registrytest.OpRegister) > 0, "no Register call") })

	r := registration("m-upd")
	r.Meta = map[string]string{"version": "2"}
	updated := make(chan error, 1)
	go func() { updated <- k.Update(context.Background(), r) }()
	select {
	case err := <-updated:
		if err != nil {
			t.Fatalf("Update() during Start's retries = %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("Update waited for Start's retries")
	}
	mem.Fail(registrytest.OpRegister, nil)
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("Start() = %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("Start did not return once the agent accepted")
	}
	if in, err := mem.AgentService(context.Background(), "m-upd"); err != nil || in.Meta["version"] != "2" {
		t.Errorf("AgentService() = %+v, %v; want the updated meta version=2", in, err)
	}
}

// TestMemoryRequestTimeout: every call the keeper makes carries a deadline
// no later than consul.Config.Timeout, even where the caller's context
// and the heartbeat interval allow far more.
func TestMemoryRequestTimeout(t *testing.T) {
	const timeout = 1500 * time.Millisecond
	a := newMemAgents(1)
	a.cfg.Timeout = timeout
	mem := a.mems[0]
	var mu sync.Mutex
	longest := map[registrytest.Op]time.Duration{}
	mem.SetFault(func(ctx context.Context, op registrytest.Op, _ string) error {
		left := time.Duration(1<<63 - 1)
		if d, ok := ctx.Deadline(); ok {
			left = time.Until(d)
		}
		mu.Lock()
		longest[op] = max(longest[op], left)
		mu.Unlock()
		return nil
	})
	k := newKeeper(t, a.cfg, registration("m-timeout"), a.backend(),
		keeper.WithTTL(time.Hour), keeper.WithReconcileInterval(20*time.Millisecond), keeper.WithDrainGrace(0))
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := k.Start(ctx); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	testutil.Eventually(t, deadline, "a reconcile", func() error { return testutil.Want(mem.Calls(registrytest.OpAgentService) > 0, "no AgentService call") })
	if err := k.Stop(ctx); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, op := range []registrytest.Op{registrytest.OpRegister, registrytest.OpUpdateTTL, registrytest.OpAgentService, registrytest.OpDeregister} {
		got, ok := longest[op]
		if !ok {
			t.Errorf("no %s call seen", op)
		} else if got > timeout {
			t.Errorf("%s had %v left before its deadline, want at most Config.Timeout %v", op, got, timeout)
		}
	}
}

// TestMemoryStopsAgree: concurrent Stops all return the first one's result
// once the instance is gone; Stop again is the same; Start and Update after
// Stop are ErrStopped.
func TestMemoryStopsAgree(t *testing.T) {
	a := newMemAgents(1)
	mem := a.mems[0]
	k := newKeeper(t, a.cfg, registration("m-stops"), a.backend(), keeper.WithDrainGrace(50*time.Millisecond))
	start(t, k)
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- k.Stop(context.Background()) }()
	}
	for range 3 {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("Stop() = %v", err)
			}
			if holds(mem, "m-stops") {
				t.Error("a Stop returned while the instance was still registered")
			}
		case <-time.After(deadline):
			t.Fatal("Stop did not return")
		}
	}
	if err := k.Stop(context.Background()); err != nil {
		t.Errorf("Stop() again = %v", err)
	}
	if err := k.Start(context.Background()); !errors.Is(err, keeper.ErrStopped) {
		t.Errorf("Start() after Stop = %v, want ErrStopped", err)
	}
	if err := k.Update(context.Background(), registration("m-stops")); !errors.Is(err, keeper.ErrStopped) {
		t.Errorf("Update() after Stop = %v, want ErrStopped", err)
	}
}
