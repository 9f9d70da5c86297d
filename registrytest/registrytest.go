package registrytest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// Factory returns the backend under test, talking to the agent described by
// cfg. The suite closes nothing; register cleanup with t.Cleanup inside the
// factory. A factory that cannot build its backend calls t.Fatal.
type Factory func(t *testing.T, cfg consul.Config) beacon.Registry

// Run runs every conformance test against real Consul agents started with
// consultest. Each group of subtests (Register, TTL, Query, Validation,
// Concurrency, Blocking, AgentRestart, TLS, ACL, TaggedAddresses, Datacenters, NodeCoordinates,
// PreparedQuery, PreparedQueryFailover, Maintenance, Checks and ServiceSummaries) starts agents of its own and runs in parallel
// with the others; a group's agents stop when the group ends. Datacenters
// and PreparedQueryFailover start a two-datacenter federation. Datacenters
// is skipped for a backend that is not a beacon.DatacenterLister, the
// prepared query groups for one that does not implement
// beacon.PreparedQueries, ServiceSummaries for one that does not implement
// beacon.ServiceSummaries.
//
// Because the groups are parallel subtests, they run after the test
// function that called Run has returned: release what the factory needs with
// t.Cleanup, not defer.
func Run(t *testing.T, newRegistry Factory) {
	t.Helper()
	s := suite{newRegistry: newRegistry}
	t.Run("Register", s.testRegister)
	t.Run("TTL", s.testTTL)
	t.Run("Query", s.testQuery)
	t.Run("Validation", s.testValidation)
	t.Run("Concurrency", s.testConcurrency)
	t.Run("Blocking", s.testBlocking)
	t.Run("AgentRestart", s.testAgentRestart)
	t.Run("TLS", s.testTLS)
	t.Run("ACL", s.testACL)
	t.Run("Datacenters", s.testDatacenters)
	t.Run("NodeCoordinates", s.testNodeCoordinates)
	t.Run("PreparedQuery", s.testPreparedQuery)
	t.Run("PreparedQueryFailover", s.testPreparedQueryFailover)
	t.Run("TaggedAddresses", s.testTaggedAddresses)
	t.Run("Maintenance", s.testMaintenance)
	t.Run("Checks", s.testChecks)
	t.Run("ServiceSummaries", s.testServiceSummaries)
}

// waitLimit bounds every wait in the suite: generous, so that a loaded
// two-core machine does not flake, and still a bound.
const waitLimit = 30 * time.Second

type suite struct {
	newRegistry Factory
}

// registry starts nothing: it calls the factory for cfg and checks that it
// returned a backend.
func (s suite) registry(t *testing.T, cfg consul.Config) beacon.Registry {
	t.Helper()
	r := s.newRegistry(t, cfg)
	if r == nil {
		t.Fatalf("Factory(%v) = nil, want a beacon.Registry", cfg.Addresses)
	}
	return r
}

// agent starts a plain dev agent and a backend talking to it.
func (s suite) agent(t *testing.T, opts ...consultest.Option) (*consultest.Server, beacon.Registry) {
	t.Helper()
	srv := consultest.NewServer(t, opts...)
	return srv, s.registry(t, srv.Config())
}

// testContext returns a context that ends after waitLimit or with the test.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// ttlRegistration is an instance with one TTL check that starts passing.
func ttlRegistration(id, service string, tags ...string) beacon.Registration {
	return beacon.Registration{
		ID: id, Service: service, Address: "127.0.0.1", Port: 9000, Tags: tags,
		Checks: []beacon.Check{{TTL: time.Minute, InitialStatus: beacon.HealthPassing}},
	}
}

func mustRegister(t *testing.T, ctx context.Context, r beacon.Registry, reg beacon.Registration) {
	t.Helper()
	if err := r.Register(ctx, reg); err != nil {
		t.Fatalf("Register(%q) = %v, want nil", reg.ID, err)
	}
}

func mustDeregister(t *testing.T, ctx context.Context, r beacon.Registry, id string) {
	t.Helper()
	if err := r.Deregister(ctx, id); err != nil {
		t.Fatalf("Deregister(%q) = %v, want nil", id, err)
	}
}

func mustUpdateTTL(t *testing.T, ctx context.Context, r beacon.Registry, checkID string, status beacon.Health) {
	t.Helper()
	if err := r.UpdateTTL(ctx, checkID, status, "registrytest: "+string(status)); err != nil {
		t.Fatalf("UpdateTTL(%q, %q) = %v, want nil", checkID, status, err)
	}
}

// lookup runs a query that must succeed.
func lookup(t *testing.T, ctx context.Context, r beacon.Registry, q beacon.Query) ([]beacon.Instance, beacon.QueryMeta) {
	t.Helper()
	insts, meta, err := r.Instances(ctx, q)
	if err != nil {
		t.Fatalf("Instances(%s) = %v, want nil error", describe(q), err)
	}
	return insts, meta
}

// describe renders the parts of q that are set, for failure messages.
func describe(q beacon.Query) string {
	s := fmt.Sprintf("%q", q.Service)
	if len(q.Tags) > 0 {
		s += fmt.Sprintf(" tags %q", q.Tags)
	}
	if q.IncludeUnhealthy {
		s += " all"
	}
	if q.Datacenter != "" {
		s += fmt.Sprintf(" dc %q", q.Datacenter)
	}
	if q.Consistency != beacon.ConsistencyDefault {
		s += fmt.Sprintf(" consistency %d", q.Consistency)
	}
	if q.Filter != "" {
		s += fmt.Sprintf(" filter %q", q.Filter)
	}
	if q.WaitIndex != 0 {
		s += fmt.Sprintf(" index %d wait %v", q.WaitIndex, q.WaitTime)
	}
	return s
}

// ids returns the sorted IDs of insts, never nil.
func ids(insts []beacon.Instance) []string {
	out := make([]string, 0, len(insts))
	for _, in := range insts {
		out = append(out, in.ID)
	}
	slices.Sort(out)
	return out
}

// awaitIDs polls q until the IDs it returns are want (in any order), for
// where Consul itself converges over time. It fails the test with the last
// answer when waitLimit passes first.
func awaitIDs(t *testing.T, ctx context.Context, r beacon.Registry, q beacon.Query, want []string) []beacon.Instance {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	var got []beacon.Instance
	testutil.Eventually(t, waitLimit, fmt.Sprintf("Instances(%s) IDs %q", describe(q), want), func() error {
		insts, _, err := r.Instances(ctx, q)
		if err != nil {
			return err
		}
		got = insts
		return testutil.Want(slices.Equal(ids(insts), want), "IDs %q", ids(insts))
	})
	return got
}

// agentCheck is one element of Consul's GET /v1/agent/checks.
type agentCheck struct {
	CheckID   string
	ServiceID string
	Status    string
}

// agentChecks asks the agent directly, not through the backend under test,
// which checks it holds for serviceID.
func agentChecks(t *testing.T, ctx context.Context, srv *consultest.Server, serviceID string) []agentCheck {
	t.Helper()
	// No keep-alives: no idle connection outlives the call, which keeps
	// leak checkers in the backend's package quiet.
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL()+"/v1/agent/checks", nil)
	if err != nil {
		t.Fatalf("GET /v1/agent/checks: %v", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/agent/checks: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/agent/checks = %d %s, %v; want 200", resp.StatusCode, body, err)
	}
	var all map[string]agentCheck
	if err := json.Unmarshal(body, &all); err != nil {
		t.Fatalf("GET /v1/agent/checks: decoding %s: %v", body, err)
	}
	var out []agentCheck
	for _, c := range all {
		if c.ServiceID == serviceID {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b agentCheck) int { return cmp.Compare(a.CheckID, b.CheckID) })
	return out
}

// result is what a call to Instances returned, sent over a channel.
type result struct {
	insts   []beacon.Instance
	meta    beacon.QueryMeta
	err     error
	elapsed time.Duration
}

// goInstances runs Instances on a goroutine of its own; the channel receives
// its result. Cancelling ctx ends the call, so no goroutine outlives a test.
func goInstances(ctx context.Context, r beacon.Registry, q beacon.Query) <-chan result {
	ch := make(chan result, 1)
	go func() {
		start := time.Now()
		insts, meta, err := r.Instances(ctx, q)
		ch <- result{insts, meta, err, time.Since(start)}
	}()
	return ch
}

// receive waits for a goInstances result, failing the test after waitLimit.
func receive(t *testing.T, ch <-chan result, what string) result {
	t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r
	case <-timer.C:
		t.Fatalf("%s did not return within %v", what, waitLimit)
		return result{}
	}
}
