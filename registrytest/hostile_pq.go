package registrytest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
)

// fakeQueryID is the ID the fake agents' prepared query answers use.
const fakeQueryID = "979d3c25-8087-69d3-7720-09ac6d3a2855"

// failoverAnswer is an execution answered from dc2 after one failover.
const failoverAnswer = `{"Service":"web","Nodes":[{"Node":{"Node":"node-9","Address":"10.0.9.1","Datacenter":"dc2"},` +
	`"Service":{"ID":"web-9","Service":"web","Port":8080,"Tags":["v1"],"Weights":{"Passing":1,"Warning":1}},` +
	`"Checks":[{"Status":"passing"}]}],"DNS":{"TTL":""},"Datacenter":"dc2","Failovers":1,"Index":1}`

// callExecute is the request an execution of the query "web" sends.
var callExecute = call{"ExecuteQuery", http.MethodGet, "/v1/query/web/execute",
	func(ctx context.Context, r beacon.Registry) error {
		pq, ok := r.(beacon.PreparedQueries)
		if !ok {
			return fmt.Errorf("%T does not implement beacon.PreparedQueries", r)
		}
		_, err := pq.ExecuteQuery(ctx, "web", beacon.ExecuteOptions{})
		return err
	}}

// testPreparedQueryHostile holds prepared queries to what lookups are held
// to against fake agents: malformed execution answers refused as such,
// names escaped on the wire, nothing sent for invalid input, and a write
// to a query that is gone told apart from a server failure.
func (s suite) testPreparedQueryHostile(t *testing.T) {
	t.Parallel()
	registry := func(t *testing.T, f *FakeAgent) beacon.PreparedQueries {
		t.Helper()
		return preparedQueries(t, s.fakeRegistry(t, f, consul.Config{Timeout: waitLimit}))
	}
	meta := MetaHeader("1")

	t.Run("MalformedExecution", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name   string
			answer http.HandlerFunc
		}{
			{"Truncated", Answer(http.StatusOK, meta, failoverAnswer[:len(failoverAnswer)/2])},
			{"Null", Answer(http.StatusOK, meta, "null")},
			{"Array", Answer(http.StatusOK, meta, "[]")},
			{"NoIndex", Answer(http.StatusOK, without(meta, "X-Consul-Index"), failoverAnswer)},
			{"IndexNotANumber", Answer(http.StatusOK, MetaHeader("x"), failoverAnswer)},
			{"NoDatacenter", Answer(http.StatusOK, meta, strings.Replace(failoverAnswer, `"Datacenter":"dc2","Failovers"`, `"Failovers"`, 1))},
			{"DatacenterWithSlash", Answer(http.StatusOK, meta, strings.Replace(failoverAnswer, `"Datacenter":"dc2","Failovers"`, `"Datacenter":"d/c","Failovers"`, 1))},
			{"NegativeFailovers", Answer(http.StatusOK, meta, strings.Replace(failoverAnswer, `"Failovers":1`, `"Failovers":-1`, 1))},
			{"EntryWithoutService", Answer(http.StatusOK, meta, `{"Service":"web","Nodes":[{"Node":{"Node":"n"}}],"Datacenter":"dc1"}`)},
			{"GarbageAfter", Answer(http.StatusOK, meta, failoverAnswer+"{}")},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				pq := registry(t, NewFakeAgent(t, forCall(callExecute, tc.answer)))
				res, err := pq.ExecuteQuery(testContext(t), "web", beacon.ExecuteOptions{})
				if !errors.Is(err, beacon.ErrMalformedResponse) {
					t.Fatalf("ExecuteQuery(web) = %+v, %v; want an error matching beacon.ErrMalformedResponse", res, err)
				}
				if !reflect.DeepEqual(res, beacon.PreparedQueryResult{}) {
					t.Errorf("ExecuteQuery(web) = %+v with error %v, want nothing", res, err)
				}
			})
		}
	})

	t.Run("WellFormedExecution", func(t *testing.T) {
		t.Parallel()
		f := NewFakeAgent(t, forCall(callExecute, Answer(http.StatusOK, meta, failoverAnswer)))
		pq := registry(t, f)
		res, err := pq.ExecuteQuery(testContext(t), "web", beacon.ExecuteOptions{Datacenter: "dc1", Near: "_agent"})
		want := beacon.PreparedQueryResult{Service: "web", Datacenter: "dc2", Failovers: 1, Index: 1, Instances: []beacon.Instance{{
			ID: "web-9", Service: "web", Node: "node-9", Address: "10.0.9.1", Port: 8080, Tags: []string{"v1"},
			Weights: beacon.Weights{Passing: 1, Warning: 1}, Health: beacon.HealthPassing,
		}}}
		if err != nil || !reflect.DeepEqual(res, want) {
			t.Errorf("ExecuteQuery(web) = %+v, %v; want %+v", res, err, want)
		}
		if got := f.RequestsTo(http.MethodGet, "/v1/query/"); len(got) != 1 || !strings.Contains(got[0].RawQuery, "dc=dc1") || !strings.Contains(got[0].RawQuery, "near=_agent") {
			t.Errorf("ExecuteQuery(web, dc1, near _agent) sent %q, want one GET with dc=dc1 and near=_agent", got)
		}
	})

	t.Run("NamesOnTheWire", func(t *testing.T) {
		t.Parallel()
		for _, name := range []string{"x#y", "p?q", "100%", "sp ace", "ünï", "execute"} {
			f := NewFakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
				Answer(http.StatusOK, meta, failoverAnswer)(w, r)
			})
			pq := registry(t, f)
			if _, err := pq.ExecuteQuery(testContext(t), name, beacon.ExecuteOptions{}); err != nil {
				t.Errorf("ExecuteQuery(%q) = %v, want nil", name, err)
			}
			if got := f.Requests(); len(got) != 1 || got[0].Path != "/v1/query/"+name+"/execute" {
				t.Errorf("ExecuteQuery(%q) sent %q, want one request whose path decodes to /v1/query/%s/execute", name, got, name)
			}
		}
	})

	t.Run("ValidationSendsNothing", func(t *testing.T) {
		t.Parallel()
		def := beacon.PreparedQuery{Name: "q", Service: "web"}
		withID := def
		withID.ID = fakeQueryID
		for _, tc := range []struct {
			what  string
			do    func(context.Context, beacon.PreparedQueries) error
			field string
		}{
			{"CreateQuery(ID set)", func(ctx context.Context, pq beacon.PreparedQueries) error {
				_, err := pq.CreateQuery(ctx, withID)
				return err
			}, "ID"},
			{"CreateQuery(NearestN -1)", func(ctx context.Context, pq beacon.PreparedQueries) error {
				d := def
				d.Failover.NearestN = -1
				_, err := pq.CreateQuery(ctx, d)
				return err
			}, "Failover.NearestN"},
			{"UpdateQuery(no ID)", func(ctx context.Context, pq beacon.PreparedQueries) error { return pq.UpdateQuery(ctx, def) }, "ID"},
			{"UpdateQuery(name shaped like an ID)", func(ctx context.Context, pq beacon.PreparedQueries) error {
				d := withID
				d.Name = fakeQueryID
				return pq.UpdateQuery(ctx, d)
			}, "Name"},
			{"GetQuery(name)", func(ctx context.Context, pq beacon.PreparedQueries) error {
				_, err := pq.GetQuery(ctx, "q")
				return err
			}, "ID"},
			{"DeleteQuery(path)", func(ctx context.Context, pq beacon.PreparedQueries) error { return pq.DeleteQuery(ctx, "../../v1/acl") }, "ID"},
			{"ExecuteQuery(path)", func(ctx context.Context, pq beacon.PreparedQueries) error {
				_, err := pq.ExecuteQuery(ctx, "../../v1/acl", beacon.ExecuteOptions{})
				return err
			}, "Query"},
			{"ExecuteQuery(dc with space)", func(ctx context.Context, pq beacon.PreparedQueries) error {
				_, err := pq.ExecuteQuery(ctx, "q", beacon.ExecuteOptions{Datacenter: "dc 1"})
				return err
			}, "Datacenter"},
		} {
			f := NewFakeAgent(t, nil)
			pq := registry(t, f)
			wantInvalid(t, tc.what, tc.do(testContext(t), pq), tc.field)
			if got := f.Requests(); len(got) != 0 {
				t.Errorf("%s sent %q, want nothing", tc.what, got)
			}
		}
	})

	// Consul answers a write to a query that does not exist with 500; the
	// backend then reads the query to tell "gone" from a failing server.
	t.Run("WriteToMissingQuery", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			getStatus  int
			deleteWant error // nil: DeleteQuery succeeds
			updateWant error
		}{
			{http.StatusNotFound, nil, beacon.ErrNotFound},
			{http.StatusInternalServerError, beacon.ErrUnavailable, beacon.ErrUnavailable},
			{http.StatusForbidden, beacon.ErrUnavailable, beacon.ErrUnavailable},
		} {
			f := NewFakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet {
					Answer(tc.getStatus, meta, "Query not found")(w, r)
					return
				}
				Answer(http.StatusInternalServerError, nil, "Cannot modify non-existent prepared query")(w, r)
			})
			pq := registry(t, f)
			ctx := testContext(t)
			what := fmt.Sprintf("with GET answering %d", tc.getStatus)
			if err := pq.DeleteQuery(ctx, fakeQueryID); !errors.Is(err, tc.deleteWant) || (tc.deleteWant == nil) != (err == nil) {
				t.Errorf("DeleteQuery %s = %v, want %v", what, err, tc.deleteWant)
			}
			err := pq.UpdateQuery(ctx, beacon.PreparedQuery{ID: fakeQueryID, Name: "q", Service: "web"})
			if !errors.Is(err, tc.updateWant) || (tc.updateWant != beacon.ErrNotFound) == errors.Is(err, beacon.ErrNotFound) {
				t.Errorf("UpdateQuery %s = %v, want an error matching %v only", what, err, tc.updateWant)
			}
		}
	})
}
