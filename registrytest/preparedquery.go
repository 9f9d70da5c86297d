package registrytest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// preparedQueries returns r as beacon.PreparedQueries, or skips the test
// for a backend without the capability.
func preparedQueries(t *testing.T, r beacon.Registry) beacon.PreparedQueries {
	t.Helper()
	pq, ok := r.(beacon.PreparedQueries)
	if !ok {
		t.Skipf("%T does not implement beacon.PreparedQueries", r)
	}
	return pq
}

// mustCreateQuery creates def, failing the test on an error or an ID that
// is not a UUID.
func mustCreateQuery(t *testing.T, ctx context.Context, pq beacon.PreparedQueries, def beacon.PreparedQuery) string {
	t.Helper()
	id, err := pq.CreateQuery(ctx, def)
	if err != nil || !beacon.IsQueryID(id) {
		t.Fatalf("CreateQuery(%q) = %q, %v; want a query ID and nil", def.Name, id, err)
	}
	return id
}

// mustExecute executes a query that must succeed.
func mustExecute(t *testing.T, ctx context.Context, pq beacon.PreparedQueries, idOrName string, opts beacon.ExecuteOptions) beacon.PreparedQueryResult {
	t.Helper()
	res, err := pq.ExecuteQuery(ctx, idOrName, opts)
	if err != nil {
		t.Fatalf("ExecuteQuery(%q, %+v) = %v, want nil error", idOrName, opts, err)
	}
	return res
}

// testPreparedQuery checks beacon.PreparedQueries on one agent: the life
// of a definition (create, read, list, update, delete), what an execution
// selects, and input refused before anything is sent.
func (s suite) testPreparedQuery(t *testing.T) {
	t.Parallel()
	_, r := s.agent(t)
	pq := preparedQueries(t, r)
	ctx := testContext(t)

	blue := ttlRegistration("pq-a", "pq-svc", "blue")
	green := ttlRegistration("pq-b", "pq-svc", "green")
	warn := ttlRegistration("pq-c", "pq-svc", "blue")
	warn.Checks[0].InitialStatus = beacon.HealthWarning
	down := ttlRegistration("pq-d", "pq-svc", "blue")
	down.Checks[0].InitialStatus = beacon.HealthCritical
	for _, reg := range []beacon.Registration{blue, green, warn, down} {
		mustRegister(t, ctx, r, reg)
	}

	t.Run("Lifecycle", func(t *testing.T) {
		def := beacon.PreparedQuery{
			Name: "pq-life", Service: "pq-svc", Tags: []string{"blue"}, OnlyPassing: true, Near: "_agent",
			Failover: beacon.QueryFailover{NearestN: 2, Datacenters: []string{"dc2", "dc3"}},
		}
		id := mustCreateQuery(t, ctx, pq, def)
		def.ID = id
		got, err := pq.GetQuery(ctx, id)
		if err != nil || !reflect.DeepEqual(got, def) {
			t.Errorf("GetQuery(%q) = %+v, %v; want %+v", id, got, err, def)
		}
		list, err := pq.ListQueries(ctx)
		if err != nil || !slices.ContainsFunc(list, func(q beacon.PreparedQuery) bool { return reflect.DeepEqual(q, def) }) {
			t.Errorf("ListQueries() = %+v, %v; want it to hold %+v", list, err, def)
		}
		if _, err := pq.CreateQuery(ctx, beacon.PreparedQuery{Name: def.Name, Service: "other"}); err == nil {
			t.Errorf("CreateQuery(%q) a second time = nil, want an error (the name is taken)", def.Name)
		}

		upd := beacon.PreparedQuery{ID: id, Name: "pq-life", Service: "pq-svc", Tags: []string{"!green"}}
		if err := pq.UpdateQuery(ctx, upd); err != nil {
			t.Fatalf("UpdateQuery(%+v) = %v, want nil", upd, err)
		}
		if got, err := pq.GetQuery(ctx, id); err != nil || !reflect.DeepEqual(got, upd) {
			t.Errorf("GetQuery(%q) after UpdateQuery = %+v, %v; want %+v", id, got, err, upd)
		}
		// Without OnlyPassing, warning instances qualify; "!green"
		// excludes a tag; critical ones never qualify.
		res := mustExecute(t, ctx, pq, "pq-life", beacon.ExecuteOptions{})
		if !slices.Equal(ids(res.Instances), []string{"pq-a", "pq-c"}) {
			t.Errorf("ExecuteQuery(pq-life) after UpdateQuery = IDs %q, want [pq-a pq-c]", ids(res.Instances))
		}

		if err := pq.DeleteQuery(ctx, id); err != nil {
			t.Fatalf("DeleteQuery(%q) = %v, want nil", id, err)
		}
		if _, err := pq.GetQuery(ctx, id); !errors.Is(err, beacon.ErrNotFound) {
			t.Errorf("GetQuery(%q) after DeleteQuery = %v, want an error matching beacon.ErrNotFound", id, err)
		}
		if _, err := pq.ExecuteQuery(ctx, "pq-life", beacon.ExecuteOptions{}); !errors.Is(err, beacon.ErrNotFound) {
			t.Errorf("ExecuteQuery(pq-life) after DeleteQuery = %v, want an error matching beacon.ErrNotFound", err)
		}
		if err := pq.DeleteQuery(ctx, id); err != nil {
			t.Errorf("DeleteQuery(%q) again = %v, want nil (already gone)", id, err)
		}
		if err := pq.UpdateQuery(ctx, upd); !errors.Is(err, beacon.ErrNotFound) {
			t.Errorf("UpdateQuery(%q) of a deleted query = %v, want an error matching beacon.ErrNotFound", id, err)
		}
	})

	t.Run("Execute", func(t *testing.T) {
		passing := beacon.PreparedQuery{Name: "pq-blue passing?#%é", Service: "pq-svc", Tags: []string{"blue"}, OnlyPassing: true}
		id := mustCreateQuery(t, ctx, pq, passing)
		t.Cleanup(func() { _ = pq.DeleteQuery(context.Background(), id) })
		for _, ref := range []string{id, passing.Name} {
			res := mustExecute(t, ctx, pq, ref, beacon.ExecuteOptions{})
			if res.Service != "pq-svc" || res.Datacenter != "dc1" || res.Failovers != 0 || !slices.Equal(ids(res.Instances), []string{"pq-a"}) {
				t.Errorf("ExecuteQuery(%q) = %+v, want pq-svc from dc1, no failover, IDs [pq-a]", ref, res)
			}
			for _, in := range res.Instances {
				if in.Health != beacon.HealthPassing || in.Port != blue.Port || in.Address != blue.Address || in.Node == "" || !slices.Equal(in.Tags, blue.Tags) {
					t.Errorf("ExecuteQuery(%q) instance %+v, want it as registered (%+v), passing, with its node", ref, in, blue)
				}
			}
		}

		all := beacon.PreparedQuery{Name: "pq-all", Service: "pq-svc"}
		allID := mustCreateQuery(t, ctx, pq, all)
		t.Cleanup(func() { _ = pq.DeleteQuery(context.Background(), allID) })
		res := mustExecute(t, ctx, pq, "pq-all", beacon.ExecuteOptions{Near: "_agent"})
		if !slices.Equal(ids(res.Instances), []string{"pq-a", "pq-b", "pq-c"}) {
			t.Errorf("ExecuteQuery(pq-all) = IDs %q, want [pq-a pq-b pq-c] (passing and warning)", ids(res.Instances))
		}
		for _, in := range res.Instances {
			if want := map[string]beacon.Health{"pq-c": beacon.HealthWarning}[in.ID]; in.Health != cmpOr(want, beacon.HealthPassing) {
				t.Errorf("ExecuteQuery(pq-all) %s health %q, want %q", in.ID, in.Health, cmpOr(want, beacon.HealthPassing))
			}
		}
		if res := mustExecute(t, ctx, pq, "pq-all", beacon.ExecuteOptions{Limit: 2}); len(res.Instances) != 2 {
			t.Errorf("ExecuteQuery(pq-all, Limit 2) = IDs %q, want two", ids(res.Instances))
		}
		// The datacenter named explicitly is the agent's own.
		if res := mustExecute(t, ctx, pq, allID, beacon.ExecuteOptions{Datacenter: "dc1"}); res.Datacenter != "dc1" || len(res.Instances) != 3 {
			t.Errorf("ExecuteQuery(%q, dc1) = %+v, want three instances from dc1", allID, res)
		}
		if _, err := pq.ExecuteQuery(ctx, "pq-nobody", beacon.ExecuteOptions{}); !errors.Is(err, beacon.ErrNotFound) {
			t.Errorf("ExecuteQuery(pq-nobody) = %v, want an error matching beacon.ErrNotFound", err)
		}
	})

	t.Run("Validation", func(t *testing.T) {
		valid := func(name string) beacon.PreparedQuery { return beacon.PreparedQuery{Name: name, Service: "pq-svc"} }
		for _, tc := range []struct {
			name  string
			def   beacon.PreparedQuery
			field string
		}{
			{"EmptyName", valid(""), "Name"},
			{"IDSet", func() beacon.PreparedQuery {
				q := valid("pq-inv-id")
				q.ID = "979d3c25-8087-69d3-7720-09ac6d3a2855"
				return q
			}(), "ID"},
			{"NameWithSlash", valid("pq-inv/slash"), "Name"},
			{"EmptyService", func() beacon.PreparedQuery { q := valid("pq-inv-svc"); q.Service = ""; return q }(), "Service"},
			{"BareExclusion", func() beacon.PreparedQuery { q := valid("pq-inv-tag"); q.Tags = []string{"!"}; return q }(), "Tags[0]"},
			{"NegativeNearestN", func() beacon.PreparedQuery { q := valid("pq-inv-n"); q.Failover.NearestN = -1; return q }(), "Failover.NearestN"},
			{"EmptyFailoverDatacenter", func() beacon.PreparedQuery {
				q := valid("pq-inv-dc")
				q.Failover.Datacenters = []string{"dc2", ""}
				return q
			}(), "Failover.Datacenters[1]"},
		} {
			t.Run("CreateQuery/"+tc.name, func(t *testing.T) {
				_, err := pq.CreateQuery(ctx, tc.def)
				wantInvalid(t, fmt.Sprintf("CreateQuery(%+v)", tc.def), err, tc.field)
			})
		}
		noID := valid("pq-inv-update")
		wantInvalid(t, "UpdateQuery(no ID)", pq.UpdateQuery(ctx, noID), "ID")
		_, err := pq.GetQuery(ctx, "pq-life")
		wantInvalid(t, `GetQuery("pq-life")`, err, "ID")
		wantInvalid(t, `DeleteQuery("")`, pq.DeleteQuery(ctx, ""), "ID")
		_, err = pq.ExecuteQuery(ctx, "pq/x", beacon.ExecuteOptions{})
		wantInvalid(t, `ExecuteQuery("pq/x")`, err, "Query")
		_, err = pq.ExecuteQuery(ctx, "pq-all", beacon.ExecuteOptions{Limit: -1})
		wantInvalid(t, `ExecuteQuery("pq-all", Limit -1)`, err, "Limit")

		list, err := pq.ListQueries(ctx)
		if err != nil {
			t.Fatalf("ListQueries() = %v", err)
		}
		for _, q := range list {
			if strings.HasPrefix(q.Name, "pq-inv") {
				t.Errorf("ListQueries() holds %+v after invalid calls, want nothing created", q)
			}
		}
	})
}

func cmpOr(h, def beacon.Health) beacon.Health {
	if h == "" {
		return def
	}
	return h
}

// queryWriter is an ACL policy that lets a token manage prepared queries
// and read what they return.
const queryWriter = `query_prefix "" { policy = "write" } service_prefix "" { policy = "read" } node_prefix "" { policy = "read" }`

// testPreparedQueryACL checks refusals on an agent with ACLs on (default
// deny): without a token, creating, updating and deleting a query are
// refused as such, and a refused delete is not taken for "already gone".
func (s suite) testPreparedQueryACL(t *testing.T, srv *consultest.Server) {
	ctx := testContext(t)
	anon := preparedQueries(t, s.registry(t, srv.Config()))
	cfg := srv.Config()
	cfg.Token = srv.MintToken(t, queryWriter)
	pq := preparedQueries(t, s.registry(t, cfg))

	def := beacon.PreparedQuery{Name: "pq-guarded", Service: "guarded"}
	_, err := anon.CreateQuery(ctx, def)
	if !errors.Is(err, beacon.ErrPermissionDenied) {
		t.Errorf("CreateQuery(%q) without a token = %v, want an error matching beacon.ErrPermissionDenied", def.Name, err)
	}
	var se *beacon.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusForbidden {
		t.Errorf("CreateQuery(%q) without a token = %v, want a *beacon.StatusError with status %d", def.Name, err, http.StatusForbidden)
	}
	if err != nil && !strings.Contains(err.Error(), "ACL") {
		t.Errorf("CreateQuery(%q) without a token = %q, want a message that names ACLs", def.Name, err)
	}

	id := mustCreateQuery(t, ctx, pq, def)
	def.ID = id
	if err := anon.DeleteQuery(ctx, id); !errors.Is(err, beacon.ErrPermissionDenied) {
		t.Errorf("DeleteQuery(%q) without a token = %v, want an error matching beacon.ErrPermissionDenied", id, err)
	}
	if err := anon.UpdateQuery(ctx, def); !errors.Is(err, beacon.ErrPermissionDenied) {
		t.Errorf("UpdateQuery(%q) without a token = %v, want an error matching beacon.ErrPermissionDenied", id, err)
	}
	if got, err := pq.GetQuery(ctx, id); err != nil || got.Name != def.Name {
		t.Errorf("GetQuery(%q) after refused calls = %+v, %v; want %q still there", id, got, err, def.Name)
	}
	if err := pq.DeleteQuery(ctx, id); err != nil {
		t.Errorf("DeleteQuery(%q) with a token = %v, want nil", id, err)
	}
}

// testPreparedQueryFailover checks, on two WAN-federated datacenters, that
// a query created in dc1 with Failover.Datacenters [dc2] is answered from
// dc2 while dc1 has no passing instance, and from dc1 again once it has.
func (s suite) testPreparedQueryFailover(t *testing.T) {
	t.Parallel()
	fed := consultest.NewFederation(t, consultest.FederationSpec{Datacenters: []consultest.DatacenterSpec{
		{Name: "dc1", Servers: 1}, {Name: "dc2", Servers: 1},
	}})
	r1, r2 := s.registry(t, fed.DC("dc1").Config()), s.registry(t, fed.DC("dc2").Config())
	pq1, pq2 := preparedQueries(t, r1), preparedQueries(t, r2)
	ctx := testContext(t)

	local := ttlRegistration("fo-1", "fo-svc")
	local.Checks[0].InitialStatus = beacon.HealthCritical
	mustRegister(t, ctx, r1, local)
	mustRegister(t, ctx, r2, ttlRegistration("fo-2", "fo-svc"))
	def := beacon.PreparedQuery{Name: "fo", Service: "fo-svc", OnlyPassing: true, Failover: beacon.QueryFailover{Datacenters: []string{"dc2"}}}
	id := mustCreateQuery(t, ctx, pq1, def)

	await := func(what, dc string, failovers int, want []string) {
		t.Helper()
		testutil.Eventually(t, waitLimit, what, func() error {
			// A context per try, so the last answer, not a spent
			// context, is what a failure reports.
			ctx, cancel := context.WithTimeout(t.Context(), waitLimit/3)
			defer cancel()
			res, err := pq1.ExecuteQuery(ctx, "fo", beacon.ExecuteOptions{})
			if err != nil {
				return err
			}
			return testutil.Want(res.Datacenter == dc && res.Failovers == failovers && slices.Equal(ids(res.Instances), want),
				"ExecuteQuery(fo) = Datacenter %q, Failovers %d, IDs %q", res.Datacenter, res.Failovers, ids(res.Instances))
		})
	}
	await("ExecuteQuery(fo) from dc2 while dc1 has no passing instance", "dc2", 1, []string{"fo-2"})

	// dc1's query, executed through dc2's agent: ?dc= reaches it.
	res := mustExecute(t, ctx, pq2, id, beacon.ExecuteOptions{Datacenter: "dc1"})
	if res.Datacenter != "dc2" || res.Failovers != 1 {
		t.Errorf("ExecuteQuery(%q, dc1) through dc2's agent = Datacenter %q, Failovers %d; want dc2, 1", id, res.Datacenter, res.Failovers)
	}

	mustUpdateTTL(t, ctx, r1, local.CheckIDs()[0], beacon.HealthPassing)
	await("ExecuteQuery(fo) from dc1 once it has a passing instance", "dc1", 0, []string{"fo-1"})
}
