package registrytest_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/registrytest"
)

// limit bounds every wait in these tests: generous for a loaded machine.
const limit = 30 * time.Second

func ttlReg(id, service string, tags ...string) beacon.Registration {
	return beacon.Registration{
		ID: id, Service: service, Port: 9000, Tags: tags,
		Checks: []beacon.Check{{TTL: time.Minute, InitialStatus: beacon.HealthPassing}},
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	t.Cleanup(cancel)
	return ctx
}

func mustRegister(t *testing.T, m *registrytest.Memory, r beacon.Registration) {
	t.Helper()
	if err := m.Register(t.Context(), r); err != nil {
		t.Fatalf("Register(%q) = %v, want nil", r.ID, err)
	}
}

func instanceIDs(t *testing.T, m *registrytest.Memory, q beacon.Query) ([]string, beacon.QueryMeta) {
	t.Helper()
	insts, meta, err := m.Instances(t.Context(), q)
	if err != nil {
		t.Fatalf("Instances(%q) = %v, want nil error", q.Service, err)
	}
	ids := []string{}
	for _, in := range insts {
		ids = append(ids, in.ID)
	}
	return ids, meta
}

type answer struct {
	insts []beacon.Instance
	meta  beacon.QueryMeta
	err   error
}

// goInstances runs a (blocking) Instances call on its own goroutine.
func goInstances(ctx context.Context, m *registrytest.Memory, q beacon.Query) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		insts, meta, err := m.Instances(ctx, q)
		ch <- answer{insts, meta, err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan answer, what string) answer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(limit):
		t.Fatalf("%s did not return within %v", what, limit)
		return answer{}
	}
}

// inFlight reports on the returned channel each time a call of op has got
// past Memory's faults, so a test knows a blocking call is in flight (and
// will see what the test does next) before it changes anything.
func inFlight(m *registrytest.Memory, op registrytest.Op) <-chan struct{} {
	ch := make(chan struct{}, 16)
	m.SetFault(func(_ context.Context, o registrytest.Op, _ string) error {
		if o == op {
			ch <- struct{}{}
		}
		return nil
	})
	return ch
}

func began(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(limit):
		t.Fatalf("%s did not begin within %v", what, limit)
	}
}

// notYet fails if ch has an answer already: the call must still be blocked.
func notYet(t *testing.T, ch <-chan answer, what string) {
	t.Helper()
	select {
	case a := <-ch:
		t.Fatalf("%s returned %v, %v before anything changed, want it blocked", what, a.meta, a.err)
	default:
	}
}

func TestMemoryRegisterLookupDeregister(t *testing.T) {
	m := registrytest.NewMemory()
	ctx := t.Context()
	mustRegister(t, m, ttlReg("a", "web", "v1"))
	mustRegister(t, m, ttlReg("b", "web", "v2"))
	mustRegister(t, m, beacon.Registration{ID: "c", Service: "web", Address: "10.0.0.3", Port: 1,
		Checks: []beacon.Check{{TTL: time.Minute}}}) // starts critical, as in Consul
	mustRegister(t, m, ttlReg("d", "db"))

	for _, tc := range []struct {
		q    beacon.Query
		want []string
	}{
		{beacon.Query{Service: "web"}, []string{"a", "b"}},
		{beacon.Query{Service: "web", IncludeUnhealthy: true}, []string{"a", "b", "c"}},
		{beacon.Query{Service: "web", Tags: []string{"v2"}}, []string{"b"}},
		{beacon.Query{Service: "web", Tags: []string{"v1", "v2"}}, []string{}},
		{beacon.Query{Service: "db"}, []string{"d"}},
		{beacon.Query{Service: "none"}, []string{}},
	} {
		if got, _ := instanceIDs(t, m, tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("Instances(%q tags %q all %v) = %q, want %q", tc.q.Service, tc.q.Tags, tc.q.IncludeUnhealthy, got, tc.want)
		}
	}

	insts, _, err := m.Instances(ctx, beacon.Query{Service: "web", IncludeUnhealthy: true})
	if err != nil {
		t.Fatal(err)
	}
	if in := insts[0]; in.Node != registrytest.MemoryNode || in.Address != "127.0.0.1" || in.Health != beacon.HealthPassing {
		t.Errorf("Instances(web)[0] = %+v, want node %q, the node's address and passing", in, registrytest.MemoryNode)
	}
	if in := insts[2]; in.Address != "10.0.0.3" || in.Health != beacon.HealthCritical {
		t.Errorf("Instances(web)[2] = %+v, want its own address and critical", in)
	}

	got, err := m.AgentService(ctx, "a")
	if err != nil || got.ID != "a" || got.Service != "web" || got.Node != "" || got.Address != "" || !slices.Equal(got.Tags, []string{"v1"}) {
		t.Errorf("AgentService(a) = %+v, %v; want the registration as given", got, err)
	}

	if err := m.Deregister(ctx, "a"); err != nil {
		t.Fatalf("Deregister(a) = %v, want nil", err)
	}
	if err := m.Deregister(ctx, "a"); err != nil {
		t.Errorf("Deregister(a) again = %v, want nil: an absent ID is the goal met", err)
	}
	_, err = m.AgentService(ctx, "a")
	var se *beacon.StatusError
	if !errors.Is(err, beacon.ErrNotFound) || !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
		t.Errorf("AgentService(a) after Deregister = %v, want a 404 *beacon.StatusError matching ErrNotFound", err)
	}
	if got, _ := instanceIDs(t, m, beacon.Query{Service: "web"}); !slices.Equal(got, []string{"b"}) {
		t.Errorf("Instances(web) after Deregister(a) = %q, want [b]", got)
	}
}

func TestMemoryUpsertAndHealth(t *testing.T) {
	m := registrytest.NewMemory()
	ctx := t.Context()
	mustRegister(t, m, ttlReg("a", "web"))
	_, before := instanceIDs(t, m, beacon.Query{Service: "web"})

	// Identical re-registration and a heartbeat that changes nothing are no
	// change to a watcher.
	mustRegister(t, m, ttlReg("a", "web"))
	if err := m.UpdateTTL(ctx, "service:a", beacon.HealthPassing, "still fine"); err != nil {
		t.Fatalf("UpdateTTL = %v", err)
	}
	if _, meta := instanceIDs(t, m, beacon.Query{Service: "web"}); meta.LastIndex != before.LastIndex {
		t.Errorf("index after identical Register and UpdateTTL = %d, want unchanged %d", meta.LastIndex, before.LastIndex)
	}

	if err := m.UpdateTTL(ctx, "service:a", beacon.HealthWarning, "slow"); err != nil {
		t.Fatal(err)
	}
	ids, meta := instanceIDs(t, m, beacon.Query{Service: "web"})
	if len(ids) != 0 || meta.LastIndex <= before.LastIndex {
		t.Errorf("Instances(web) after warning = %q at %d, want none at an index above %d", ids, meta.LastIndex, before.LastIndex)
	}

	// The upsert replaces the checks: the new TTL check starts passing.
	r := ttlReg("a", "web", "new")
	r.Checks[0].ID = "own"
	mustRegister(t, m, r)
	if err := m.UpdateTTL(ctx, "service:a", beacon.HealthPassing, ""); !errors.Is(err, beacon.ErrNotFound) {
		t.Errorf("UpdateTTL(removed check) = %v, want ErrNotFound", err)
	}
	if ids, _ := instanceIDs(t, m, beacon.Query{Service: "web", Tags: []string{"new"}}); !slices.Equal(ids, []string{"a"}) {
		t.Errorf("Instances(web, new) after upsert = %q, want [a]", ids)
	}

	// A failing node fails every instance on it.
	if err := m.SetHealth(registrytest.MemoryNodeCheck, beacon.HealthCritical); err != nil {
		t.Fatal(err)
	}
	if ids, _ := instanceIDs(t, m, beacon.Query{Service: "web"}); len(ids) != 0 {
		t.Errorf("Instances(web) with the node critical = %q, want none", ids)
	}

	mustRegister(t, m, beacon.Registration{ID: "h", Service: "web",
		Checks: []beacon.Check{{HTTP: "http://127.0.0.1:1/health", Interval: time.Second}}})
	var se *beacon.StatusError
	if err := m.UpdateTTL(ctx, "service:h", beacon.HealthPassing, ""); !errors.As(err, &se) || se.StatusCode != 500 {
		t.Errorf("UpdateTTL(HTTP check) = %v, want a 500 *beacon.StatusError", err)
	}
}

func TestMemoryValidates(t *testing.T) {
	m := registrytest.NewMemory()
	ctx := t.Context()
	var ve *beacon.ValidationError
	if err := m.Register(ctx, beacon.Registration{ID: "a", Service: "web", Port: 70000}); !errors.As(err, &ve) || ve.Field != "Port" {
		t.Errorf("Register(port 70000) = %v, want a *beacon.ValidationError for Port", err)
	}
	if err := m.Deregister(ctx, ""); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("Deregister(\"\") = %v, want ErrInvalid", err)
	}
	if err := m.UpdateTTL(ctx, "c", "sunny", ""); !errors.As(err, &ve) || ve.Field != "Status" {
		t.Errorf("UpdateTTL(status sunny) = %v, want a *beacon.ValidationError for Status", err)
	}
	if _, _, err := m.Instances(ctx, beacon.Query{Service: "web", WaitTime: time.Hour}); !errors.As(err, &ve) || ve.Field != "WaitTime" {
		t.Errorf("Instances(wait 1h) = %v, want a *beacon.ValidationError for WaitTime", err)
	}
	if n := m.Calls(registrytest.OpAll); n != 0 {
		t.Errorf("Calls(OpAll) after invalid calls = %d, want 0: nothing invalid reaches the agent", n)
	}
	if _, _, err := m.Instances(ctx, beacon.Query{Service: "web", Filter: `Service.Port == 1`}); err == nil {
		t.Error("Instances(with Filter) = nil error, want a refusal: Memory cannot evaluate filters")
	}
	if _, _, err := m.Instances(ctx, beacon.Query{Service: "web", Datacenter: "dc9"}); !errors.Is(err, beacon.ErrUnavailable) {
		t.Errorf("Instances(dc9) = %v, want Consul's 500 (ErrUnavailable)", err)
	}
}

func TestMemoryBlocking(t *testing.T) {
	m := registrytest.NewMemory()
	ctx := testCtx(t)
	mustRegister(t, m, ttlReg("a", "web"))
	_, meta := instanceIDs(t, m, beacon.Query{Service: "web"})

	q := beacon.Query{Service: "web", WaitIndex: meta.LastIndex, WaitTime: time.Minute}
	calls := inFlight(m, registrytest.OpInstances)
	ch := goInstances(ctx, m, q)
	began(t, calls, "blocking Instances(web)")
	// A change to another service does not wake a watch on web.
	mustRegister(t, m, ttlReg("d", "db"))
	notYet(t, ch, "blocking Instances(web)")
	mustRegister(t, m, ttlReg("b", "web"))
	a := await(t, ch, "blocking Instances(web)")
	if a.err != nil || len(a.insts) != 2 || a.meta.LastIndex <= meta.LastIndex {
		t.Fatalf("blocking Instances(web) = %d instances at %d, %v; want 2 at an index above %d", len(a.insts), a.meta.LastIndex, a.err, meta.LastIndex)
	}

	// WaitTime ends a query that sees no change, with the same index.
	a = await(t, goInstances(ctx, m, beacon.Query{Service: "web", WaitIndex: a.meta.LastIndex, WaitTime: time.Millisecond}), "Instances(wait 1ms)")
	if a.err != nil || a.meta.LastIndex != m.Index() {
		t.Errorf("Instances(wait 1ms) = index %d, %v; want %d, nil", a.meta.LastIndex, a.err, m.Index())
	}

	// Cancelling the caller's context ends a blocked query.
	cctx, cancel := context.WithCancel(ctx)
	ch = goInstances(cctx, m, beacon.Query{Service: "web", WaitIndex: m.Index()})
	cancel()
	if a := await(t, ch, "cancelled Instances"); !errors.Is(a.err, context.Canceled) {
		t.Errorf("cancelled Instances = %v, want context.Canceled", a.err)
	}
}

func TestMemoryIndexBackwards(t *testing.T) {
	m := registrytest.NewMemory()
	ctx := testCtx(t)
	mustRegister(t, m, ttlReg("a", "web"))
	m.SetIndex(1000)
	_, meta := instanceIDs(t, m, beacon.Query{Service: "web"})
	if meta.LastIndex != 1000 {
		t.Fatalf("Instances(web) after SetIndex(1000) = index %d, want 1000", meta.LastIndex)
	}
	calls := inFlight(m, registrytest.OpInstances)
	ch := goInstances(ctx, m, beacon.Query{Service: "web", WaitIndex: 1000, WaitTime: time.Minute})
	began(t, calls, "Instances(index 1000)")
	m.SetIndex(5)
	notYet(t, ch, "Instances(index 1000) after a reset to 5")
	// The next change raises the index, still below the watcher's: it waits
	// out its WaitTime, as Consul's queries do.
	mustRegister(t, m, ttlReg("b", "web"))
	notYet(t, ch, "Instances(index 1000) after a reset to 5 and a change")
	if _, meta := instanceIDs(t, m, beacon.Query{Service: "web"}); meta.LastIndex != 6 {
		t.Errorf("Instances(web) after SetIndex(5) and a change = index %d, want 6", meta.LastIndex)
	}
	m.Restart()
	if a := await(t, ch, "Instances across Restart"); !errors.Is(a.err, beacon.ErrUnavailable) {
		t.Errorf("blocked Instances across Restart = %v, want ErrUnavailable", a.err)
	}
	ids, meta := instanceIDs(t, m, beacon.Query{Service: "web", IncludeUnhealthy: true})
	if len(ids) != 0 || meta.LastIndex != 1 {
		t.Errorf("Instances(web) after Restart = %q at %d, want none at 1", ids, meta.LastIndex)
	}
	if _, err := m.AgentService(ctx, "a"); !errors.Is(err, beacon.ErrNotFound) {
		t.Errorf("AgentService(a) after Restart = %v, want ErrNotFound: the agent lost it", err)
	}
}

func TestMemoryFaults(t *testing.T) {
	m := registrytest.NewMemory()
	ctx := t.Context()

	m.FailNext(registrytest.OpRegister, beacon.ErrUnavailable)
	if err := m.Register(ctx, ttlReg("a", "web")); !errors.Is(err, beacon.ErrUnavailable) {
		t.Errorf("Register after FailNext = %v, want ErrUnavailable", err)
	}
	if _, err := m.AgentService(ctx, "a"); !errors.Is(err, beacon.ErrNotFound) {
		t.Errorf("AgentService(a) after a failed Register = %v, want ErrNotFound: nothing was stored", err)
	}
	mustRegister(t, m, ttlReg("a", "web")) // the fault was for one call
	if n := m.Calls(registrytest.OpRegister); n != 2 {
		t.Errorf("Calls(Register) = %d, want 2", n)
	}

	denied := &beacon.StatusError{Method: "GET", Path: "/v1/health/service/web", StatusCode: http.StatusForbidden, Message: "Permission denied"}
	m.Fail(registrytest.OpAll, denied)
	var se *beacon.StatusError
	for i := range 2 {
		if _, _, err := m.Instances(ctx, beacon.Query{Service: "web"}); !errors.As(err, &se) || se != denied || !errors.Is(err, beacon.ErrPermissionDenied) {
			t.Errorf("Instances #%d with Fail(OpAll, 403) = %v, want that *StatusError", i, err)
		}
	}
	if err := m.UpdateTTL(ctx, "service:a", beacon.HealthPassing, ""); !errors.Is(err, beacon.ErrPermissionDenied) {
		t.Errorf("UpdateTTL with Fail(OpAll, 403) = %v, want ErrPermissionDenied", err)
	}
	m.Fail(registrytest.OpAll, nil)

	var seen []string
	m.SetFault(func(ctx context.Context, op registrytest.Op, arg string) error {
		seen = append(seen, string(op)+" "+arg)
		if op == registrytest.OpUpdateTTL {
			return beacon.ErrRateLimited
		}
		return nil
	})
	if err := m.UpdateTTL(ctx, "service:a", beacon.HealthPassing, ""); !errors.Is(err, beacon.ErrRateLimited) {
		t.Errorf("UpdateTTL with a rate-limiting Fault = %v, want ErrRateLimited", err)
	}
	if _, err := m.ProbeACLs(ctx); err != nil {
		t.Errorf("ProbeACLs = %v, want nil", err)
	}
	m.SetFault(nil)
	if want := []string{"UpdateTTL service:a", "ProbeACLs "}; !slices.Equal(seen, want) {
		t.Errorf("Fault saw %q, want %q", seen, want)
	}
}

func TestMemoryPause(t *testing.T) {
	m := registrytest.NewMemory()
	ctx := testCtx(t)
	mustRegister(t, m, ttlReg("a", "web"))
	m.Pause()

	ch := goInstances(ctx, m, beacon.Query{Service: "web"})
	notYet(t, ch, "Instances on a paused agent")
	m.Resume()
	if a := await(t, ch, "Instances after Resume"); a.err != nil || len(a.insts) != 1 {
		t.Errorf("Instances after Resume = %d instances, %v; want 1, nil", len(a.insts), a.err)
	}

	m.Pause()
	cctx, cancel := context.WithCancel(ctx)
	ch = goInstances(cctx, m, beacon.Query{Service: "web"})
	cancel()
	if a := await(t, ch, "paused Instances, cancelled"); !errors.Is(a.err, context.Canceled) {
		t.Errorf("paused Instances, cancelled = %v, want context.Canceled", a.err)
	}
	m.SetCallTimeout(time.Millisecond)
	if err := m.UpdateTTL(ctx, "service:a", beacon.HealthPassing, ""); !errors.Is(err, beacon.ErrUnavailable) {
		t.Errorf("UpdateTTL on a paused agent past the call timeout = %v, want ErrUnavailable", err)
	}
	m.Resume()
}

func TestMemoryChecksAndACLs(t *testing.T) {
	m := registrytest.NewMemory()
	ctx := testCtx(t)
	mustRegister(t, m, ttlReg("a", "web"))
	checks, meta, err := m.Checks(ctx, beacon.ChecksQuery{})
	if err != nil || len(checks) != 2 {
		t.Fatalf("Checks = %v, %v; want the node check and service:a", checks, err)
	}
	if c := checks[1]; c.CheckID != "service:a" || c.ServiceID != "a" || c.ServiceName != "web" || c.Status != beacon.HealthPassing || c.ModifyIndex == 0 {
		t.Errorf("Checks[1] = %+v, want service:a of web, passing, with an index", c)
	}

	type feed struct {
		checks []beacon.CheckState
		meta   beacon.QueryMeta
		err    error
	}
	ch := make(chan feed, 1)
	calls := inFlight(m, registrytest.OpChecks)
	go func() {
		c, meta, err := m.Checks(ctx, beacon.ChecksQuery{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		ch <- feed{c, meta, err}
	}()
	began(t, calls, "blocking Checks")
	// A meta-only change touches no check and wakes no feed.
	r := ttlReg("a", "web")
	r.Meta = map[string]string{"v": "2"}
	mustRegister(t, m, r)
	select {
	case f := <-ch:
		t.Fatalf("Checks woke on a meta-only change: %v, %v", f.meta, f.err)
	default:
	}
	if err := m.UpdateTTL(ctx, "service:a", beacon.HealthCritical, "down"); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-ch:
		if f.err != nil || f.meta.LastIndex <= meta.LastIndex || f.checks[1].Status != beacon.HealthCritical {
			t.Errorf("Checks after a status change = %+v at %d, %v; want service:a critical at a higher index", f.checks, f.meta.LastIndex, f.err)
		}
	case <-time.After(limit):
		t.Fatal("blocking Checks did not wake on a status change")
	}

	if a, err := m.ProbeACLs(ctx); a != beacon.ACLsDisabled || err != nil {
		t.Errorf("ProbeACLs = %v, %v; want disabled", a, err)
	}
	m.SetACLs(beacon.ACLsNoToken)
	if a, _ := m.ProbeACLs(ctx); a != beacon.ACLsNoToken {
		t.Errorf("ProbeACLs after SetACLs(no token) = %v", a)
	}
}
