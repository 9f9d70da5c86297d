package registrytest

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// testServiceSummaries checks beacon.ServiceSummaries on one agent: a
// service's summary counts its instances and their checks; a blocking read
// wakes when a check's status changes, and the summary's counts show it;
// named services limit the answer to them;
// an agent without the endpoint answers a *beacon.StatusError 404. A
// backend that does not implement it is skipped.
func (s suite) testServiceSummaries(t *testing.T) {
	t.Parallel()
	srv, r := s.agent(t)
	ss, ok := r.(beacon.ServiceSummaries)
	if !ok {
		t.Skipf("%T does not implement beacon.ServiceSummaries", r)
	}
	ctx := testContext(t)
	mustRegister(t, ctx, r, ttlRegistration("sum-1", "sum", "v1"))
	mustRegister(t, ctx, r, ttlRegistration("sum-2", "sum", "v2"))
	find := func(list []beacon.ServiceSummary) (beacon.ServiceSummary, bool) {
		for _, x := range list {
			if x.Name == "sum" {
				return x, true
			}
		}
		return beacon.ServiceSummary{}, false
	}
	var meta beacon.QueryMeta
	var first beacon.ServiceSummary
	testutil.Eventually(t, waitLimit, "both instances summarised", func() error {
		list, m, err := ss.ServiceSummaries(ctx, beacon.ServicesQuery{})
		if err != nil {
			return err
		}
		meta = m
		first, _ = find(list)
		// Each instance's TTL check, and the agent's serfHealth once: Consul
		// counts a node's checks once for each service on the node.
		return testutil.Want(first.Instances == 2 && first.Passing == 3 && first.Critical == 0,
			"summary of sum = %+v, want 2 instances, 3 checks passing", first)
	})
	if meta.LastIndex == 0 {
		t.Errorf("ServiceSummaries() index = 0, want the catalog's")
	}

	woke := make(chan error, 1)
	go func() {
		list, m, err := ss.ServiceSummaries(ctx, beacon.ServicesQuery{WaitIndex: meta.LastIndex, WaitTime: waitLimit / 2})
		if err == nil {
			got, _ := find(list)
			err = testutil.Want(m.LastIndex > meta.LastIndex && got.Critical == 1 && got.Passing == 2 && got.Digest == first.Digest,
				"woke at index %d (from %d) with %+v; want a later index, 1 check critical, the same digest (%x)", m.LastIndex, meta.LastIndex, got, first.Digest)
		}
		woke <- err
	}()
	time.Sleep(200 * time.Millisecond) // let it block: the test passes either way, it only tests less
	if err := r.UpdateTTL(ctx, "service:sum-2", beacon.HealthCritical, "down"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-woke:
		if err != nil {
			t.Errorf("blocking ServiceSummaries: %v", err)
		}
	case <-time.After(waitLimit):
		t.Errorf("blocking ServiceSummaries did not wake within %v of a check update", waitLimit)
	}

	// Another node: the digest moves with the nodes.
	srv.RegisterExternal(t, "sum-node", "127.0.0.2", consultest.ExternalInstance{ID: "sum-3", Service: "sum", Port: 9001})
	testutil.Eventually(t, waitLimit, "the external instance summarised", func() error {
		list, _, err := ss.ServiceSummaries(ctx, beacon.ServicesQuery{})
		if err != nil {
			return err
		}
		got, _ := find(list)
		return testutil.Want(got.Instances == 3 && got.Digest != first.Digest, "summary of sum = %+v, want 3 instances and another digest than %x", got, first.Digest)
	})

	// Named services: the servers filter the answer to them.
	mustRegister(t, ctx, r, ttlRegistration("sum-other-1", "sum-other"))
	testutil.Eventually(t, waitLimit, "the summaries filtered to sum", func() error {
		all, _, err := ss.ServiceSummaries(ctx, beacon.ServicesQuery{})
		if err != nil {
			return err
		}
		list, _, err := ss.ServiceSummaries(ctx, beacon.ServicesQuery{Services: []string{"sum", "sum-missing"}})
		if err != nil {
			return err
		}
		got, ok := find(list)
		return testutil.Want(len(all) >= 3 && len(list) == 1 && ok && got.Instances == 3,
			"ServiceSummaries(Services sum, sum-missing) = %+v (of %d without a filter), want sum alone with 3 instances", list, len(all))
	})
	if _, _, err := ss.ServiceSummaries(ctx, beacon.ServicesQuery{Services: []string{`a"b`}}); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("ServiceSummaries(Services a\"b) = %v, want beacon.ErrInvalid", err)
	}

	if _, _, err := ss.ServiceSummaries(ctx, beacon.ServicesQuery{WaitTime: -time.Second}); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("ServiceSummaries(WaitTime -1s) = %v, want beacon.ErrInvalid", err)
	}

	t.Run("Missing", func(t *testing.T) {
		f := NewFakeAgent(t, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
		ss := s.registry(t, f.Config(srv.Config())).(beacon.ServiceSummaries)
		_, _, err := ss.ServiceSummaries(testContext(t), beacon.ServicesQuery{})
		var se *beacon.StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
			t.Errorf("ServiceSummaries() from an agent without the endpoint = %v, want a *beacon.StatusError 404", err)
		}
	})
}
