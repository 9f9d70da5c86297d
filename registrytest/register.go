package registrytest

import (
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

// testRegister checks Register, its upsert semantics and Deregister.
func (s suite) testRegister(t *testing.T) {
	t.Parallel()
	srv, r := s.agent(t)

	t.Run("ReadBack", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		// A real endpoint for the HTTP check: whenever the agent runs it,
		// it passes.
		health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
		}))
		t.Cleanup(health.Close)
		reg := beacon.Registration{
			ID: "web-1", Service: "web", Address: "127.0.0.2", Port: 8080,
			Tags:    []string{"v1", "canary"},
			Meta:    map[string]string{"version": "1.2.3", "zone": "a"},
			Weights: beacon.Weights{Passing: 10, Warning: 2},
			Checks: []beacon.Check{
				{TTL: time.Minute, InitialStatus: beacon.HealthPassing},
				{
					HTTP: health.URL + "/health", Interval: 10 * time.Second, Timeout: time.Second,
					InitialStatus: beacon.HealthPassing, DeregisterCriticalAfter: time.Minute,
				},
			},
		}
		mustRegister(t, ctx, r, reg)
		want := beacon.Instance{
			ID: reg.ID, Service: reg.Service, Node: srv.Name, Address: reg.Address, Port: reg.Port,
			Tags: reg.Tags, Meta: reg.Meta, Weights: reg.Weights, Health: beacon.HealthPassing,
		}
		for _, q := range []beacon.Query{
			{Service: "web"},
			{Service: "web", IncludeUnhealthy: true},
		} {
			got, _ := lookup(t, ctx, r, q)
			if len(got) != 1 || !sameInstance(got[0], want) {
				t.Errorf("Instances(%s) = %+v, want [%+v]", describe(q), got, want)
			}
		}
		var gotChecks []string
		for _, c := range agentChecks(t, ctx, srv, reg.ID) {
			gotChecks = append(gotChecks, c.CheckID)
		}
		if wantChecks := slices.Sorted(slices.Values(reg.CheckIDs())); !slices.Equal(gotChecks, wantChecks) {
			t.Errorf("agent checks of %q = %q, want %q (Registration.CheckIDs)", reg.ID, gotChecks, wantChecks)
		}
	})

	t.Run("AgentService", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		reg := beacon.Registration{
			ID: "agent-svc/1", Service: "agentsvc", Address: "127.0.0.3", Port: 7000,
			Tags: []string{"a"}, Meta: map[string]string{"k": "v"}, Weights: beacon.Weights{Passing: 3, Warning: 1},
			Checks: []beacon.Check{{TTL: time.Minute, InitialStatus: beacon.HealthPassing}},
		}
		mustRegister(t, ctx, r, reg)
		got, err := r.AgentService(ctx, reg.ID)
		want := beacon.Instance{
			ID: reg.ID, Service: reg.Service, Address: reg.Address, Port: reg.Port,
			Tags: reg.Tags, Meta: reg.Meta, Weights: reg.Weights,
		}
		if err != nil || !sameInstance(got, want) {
			t.Errorf("AgentService(%q) = %+v, %v; want %+v", reg.ID, got, err, want)
		}
		if err := r.Deregister(ctx, reg.ID); err != nil {
			t.Fatalf("Deregister(%q) = %v", reg.ID, err)
		}
		if _, err := r.AgentService(ctx, reg.ID); !errors.Is(err, beacon.ErrNotFound) {
			t.Errorf("AgentService(%q) after Deregister = %v, want ErrNotFound", reg.ID, err)
		}
	})

	t.Run("UpsertReplacesMeta", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		reg := ttlRegistration("upsert-1", "upsert", "old")
		reg.Meta = map[string]string{"version": "1", "zone": "a"}
		mustRegister(t, ctx, r, reg)
		reg.Tags = []string{"new"}
		reg.Meta = map[string]string{"version": "2"}
		mustRegister(t, ctx, r, reg)
		q := beacon.Query{Service: "upsert", IncludeUnhealthy: true}
		got, _ := lookup(t, ctx, r, q)
		if len(got) != 1 || !maps.Equal(got[0].Meta, reg.Meta) || !slices.Equal(got[0].Tags, reg.Tags) {
			t.Errorf("Instances(%s) after a second Register = %+v, want one instance with tags %q and meta %v", describe(q), got, reg.Tags, reg.Meta)
		}
	})

	t.Run("UpsertDropsChecks", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		// Explicit check IDs: default IDs are numbered only when there are
		// several, so dropping one would rename the other.
		keep := beacon.Check{ID: "drop-1:keep", TTL: time.Minute, InitialStatus: beacon.HealthPassing}
		drop := beacon.Check{ID: "drop-1:drop", TTL: time.Minute, InitialStatus: beacon.HealthCritical}
		reg := beacon.Registration{ID: "drop-1", Service: "drop", Port: 9000, Checks: []beacon.Check{keep, drop}}
		mustRegister(t, ctx, r, reg)
		all := beacon.Query{Service: "drop", IncludeUnhealthy: true}
		if got, _ := lookup(t, ctx, r, all); len(got) != 1 || got[0].Health != beacon.HealthCritical {
			t.Fatalf("Instances(%s) with a critical check = %+v, want one critical instance", describe(all), got)
		}

		reg.Checks = []beacon.Check{keep}
		mustRegister(t, ctx, r, reg)
		mustUpdateTTL(t, ctx, r, keep.ID, beacon.HealthPassing)
		if got := agentChecks(t, ctx, srv, reg.ID); len(got) != 1 || got[0].CheckID != keep.ID {
			t.Errorf("agent checks of %q after re-registering with one = %+v, want only %q", reg.ID, got, keep.ID)
		}
		// Had the dropped check survived, it would still hold the
		// instance critical.
		for _, q := range []beacon.Query{{Service: "drop"}, all} {
			if got, _ := lookup(t, ctx, r, q); len(got) != 1 || got[0].Health != beacon.HealthPassing {
				t.Errorf("Instances(%s) after dropping the critical check = %+v, want one passing instance", describe(q), got)
			}
		}
	})

	t.Run("Deregister", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		reg := ttlRegistration("gone-1", "gone")
		mustRegister(t, ctx, r, reg)
		mustDeregister(t, ctx, r, reg.ID)
		q := beacon.Query{Service: "gone", IncludeUnhealthy: true}
		if got, _ := lookup(t, ctx, r, q); len(got) != 0 {
			t.Errorf("Instances(%s) after Deregister = %+v, want none", describe(q), got)
		}
		if got := agentChecks(t, ctx, srv, reg.ID); len(got) != 0 {
			t.Errorf("agent checks of %q after Deregister = %+v, want none", reg.ID, got)
		}
		// The goal of Deregister, the instance's absence, is met.
		if err := r.Deregister(ctx, reg.ID); err != nil {
			t.Errorf("Deregister(%q) twice = %v, want nil", reg.ID, err)
		}
		if err := r.Deregister(ctx, "never-registered"); err != nil {
			t.Errorf("Deregister(%q) = %v, want nil", "never-registered", err)
		}
	})

	t.Run("ReservedCharactersInID", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		// Every URL delimiter a backend must escape: path, fragment,
		// query and escape characters.
		reg := ttlRegistration("web/1#a?b%c", "reserved")
		mustRegister(t, ctx, r, reg)
		q := beacon.Query{Service: "reserved", IncludeUnhealthy: true}
		if got, _ := lookup(t, ctx, r, q); !slices.Equal(ids(got), []string{reg.ID}) {
			t.Errorf("Instances(%s) = IDs %q, want [%q]", describe(q), ids(got), reg.ID)
		}
		// The default check ID embeds the instance ID.
		check := reg.CheckIDs()[0]
		mustUpdateTTL(t, ctx, r, check, beacon.HealthWarning)
		if got, _ := lookup(t, ctx, r, q); len(got) != 1 || got[0].Health != beacon.HealthWarning {
			t.Errorf("Instances(%s) after UpdateTTL(%q, warning) = %+v, want one instance warning", describe(q), check, got)
		}
		mustDeregister(t, ctx, r, reg.ID)
		if got, _ := lookup(t, ctx, r, q); len(got) != 0 {
			t.Errorf("Instances(%s) after Deregister(%q) = %+v, want none", describe(q), reg.ID, got)
		}
	})
}

// sameInstance compares every field; nil and empty tags and meta are equal.
func sameInstance(got, want beacon.Instance) bool {
	return got.ID == want.ID && got.Service == want.Service && got.Node == want.Node &&
		got.Address == want.Address && got.Port == want.Port &&
		slices.Equal(got.Tags, want.Tags) && maps.Equal(got.Meta, want.Meta) &&
		got.Weights == want.Weights && got.Health == want.Health &&
		maps.Equal(got.TaggedAddresses, want.TaggedAddresses) && maps.Equal(got.NodeTaggedAddresses, want.NodeTaggedAddresses)
}
