package registrytest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consultest"
)

// testMaintenance checks beacon.Maintainer on a real agent: an instance
// in maintenance leaves passing lookups, shows Maintenance, stays in it
// after its agent restarts with its data, and comes back when maintenance
// is off; registering it again drops maintenance (Consul's
// replace-existing-checks), which InMaintenance lets a keeper restore. Skipped for a backend that is not a
// beacon.Maintainer.
func (s suite) testMaintenance(t *testing.T) {
	t.Parallel()
	if _, ok := s.registry(t, consul.Config{Addresses: []string{"127.0.0.1:1"}}).(beacon.Maintainer); !ok {
		t.Skip("backend is not a beacon.Maintainer")
	}
	_, r := s.agent(t)
	m := r.(beacon.Maintainer)

	t.Run("OnOff", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		reg := ttlRegistration("maint-1", "maint")
		mustRegister(t, ctx, r, reg)
		const reason = "registrytest: replacing a disk"
		wantInMaintenance(t, ctx, m, reg.ID, false, "")
		mustMaintain(t, ctx, m, reg.ID, true, reason)
		wantInMaintenance(t, ctx, m, reg.ID, true, reason)
		wantMaintenance(t, ctx, r, "maint", reg.ID, true)
		mustMaintain(t, ctx, m, reg.ID, false, "")
		wantInMaintenance(t, ctx, m, reg.ID, false, "")
		wantMaintenance(t, ctx, r, "maint", reg.ID, false)
		// Off again, for an instance not in maintenance, succeeds.
		mustMaintain(t, ctx, m, reg.ID, false, "")
	})

	t.Run("RegisterDrops", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		reg := ttlRegistration("maint-2", "maint-again")
		mustRegister(t, ctx, r, reg)
		mustMaintain(t, ctx, m, reg.ID, true, "")
		wantInMaintenance(t, ctx, m, reg.ID, true, "")
		mustRegister(t, ctx, r, reg)
		wantInMaintenance(t, ctx, m, reg.ID, false, "")
		wantMaintenance(t, ctx, r, "maint-again", reg.ID, false)
	})

	t.Run("UnknownID", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		for _, on := range []bool{true, false} {
			if err := m.Maintenance(ctx, "no-such-instance", on, ""); !errors.Is(err, beacon.ErrNotFound) {
				t.Errorf("Maintenance(%q, %v) = %v, want an error matching beacon.ErrNotFound", "no-such-instance", on, err)
			}
		}
		wantInMaintenance(t, ctx, m, "no-such-instance", false, "")
	})

	t.Run("ValidationSendsNothing", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		f := NewFakeAgent(t, nil)
		fm := s.fakeRegistry(t, f, consul.Config{}).(beacon.Maintainer)
		for _, tc := range []struct{ id, reason string }{
			{"", "empty ID"},
			{"web-1", strings.Repeat("x", beacon.MaxMaintenanceReason+1)},
			{"web-1", "bad \xff UTF-8"},
			{"web-1", "line\nbreak"},
			{"web-1", "nul\x00"},
		} {
			for _, on := range []bool{true, false} {
				if err := fm.Maintenance(ctx, tc.id, on, tc.reason); !errors.Is(err, beacon.ErrInvalid) {
					t.Errorf("Maintenance(%q, %v, %.20q) = %v, want an error matching beacon.ErrInvalid", tc.id, on, tc.reason, err)
				}
			}
		}
		if _, _, err := fm.InMaintenance(ctx, ""); !errors.Is(err, beacon.ErrInvalid) {
			t.Errorf("InMaintenance(%q) = %v, want an error matching beacon.ErrInvalid", "", err)
		}
		if reqs := f.Requests(); len(reqs) != 0 {
			t.Errorf("invalid Maintenance calls sent %v, want nothing sent", reqs)
		}
	})

	t.Run("IDsOnTheWire", func(t *testing.T) {
		t.Parallel()
		for _, id := range reservedIDs {
			f := NewFakeAgent(t, nil)
			fm := s.fakeRegistry(t, f, consul.Config{}).(beacon.Maintainer)
			if err := fm.Maintenance(testContext(t), id, true, "why? a&b=c #1"); err != nil {
				t.Fatalf("Maintenance(%q) = %v, want nil", id, err)
			}
			got := f.RequestsTo(http.MethodPut, "/v1/agent/service/maintenance/")
			if len(got) != 1 || got[0].Path != "/v1/agent/service/maintenance/"+id {
				t.Fatalf("Maintenance(%q) sent %q, want one PUT with the path decoding to the ID", id, got)
			}
			q, err := url.ParseQuery(got[0].RawQuery)
			if err != nil || q.Get("enable") != "true" || q.Get("reason") != "why? a&b=c #1" {
				t.Errorf("Maintenance(%q) sent query %q, want enable=true and the reason intact", id, got[0].RawQuery)
			}
		}
	})

	t.Run("SurvivesRestart", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		c := consultest.NewCluster(t, 1, 0)
		node := c.Servers[0]
		cr := s.registry(t, node.Config())
		reg := ttlRegistration("maint-kept-1", "maint-kept")
		mustRegister(t, ctx, cr, reg)
		mustMaintain(t, ctx, cr.(beacon.Maintainer), reg.ID, true, "registrytest: kept")
		node.Restart(t, true)
		wantMaintenance(t, ctx, cr, "maint-kept", reg.ID, true)
		// The TTL check may come back critical; only maintenance matters.
		mustUpdateTTL(t, ctx, cr, reg.CheckIDs()[0], beacon.HealthPassing)
		mustMaintain(t, ctx, cr.(beacon.Maintainer), reg.ID, false, "")
		wantMaintenance(t, ctx, cr, "maint-kept", reg.ID, false)
	})
}

func wantInMaintenance(t *testing.T, ctx context.Context, m beacon.Maintainer, id string, on bool, reason string) {
	t.Helper()
	got, why, err := m.InMaintenance(ctx, id)
	if err != nil || got != on || (on && reason != "" && why != reason) {
		t.Fatalf("InMaintenance(%q) = %v, %q, %v, want %v, %q, nil", id, got, why, err, on, reason)
	}
}

func mustMaintain(t *testing.T, ctx context.Context, m beacon.Maintainer, id string, on bool, reason string) {
	t.Helper()
	if err := m.Maintenance(ctx, id, on, reason); err != nil {
		t.Fatalf("Maintenance(%q, %v, %q) = %v, want nil", id, on, reason, err)
	}
}

// wantMaintenance waits (within waitLimit: the catalog follows the agent
// through anti-entropy) until a lookup of service shows id in maintenance
// or out of it, passing only when out.
func wantMaintenance(t *testing.T, ctx context.Context, r beacon.Registry, service, id string, on bool) {
	t.Helper()
	var all, passing []beacon.Instance
	for ctx.Err() == nil {
		var err1, err2 error
		all, _, err1 = r.Instances(ctx, beacon.Query{Service: service, IncludeUnhealthy: true})
		passing, _, err2 = r.Instances(ctx, beacon.Query{Service: service})
		if err1 == nil && err2 == nil && len(all) == 1 && all[0].ID == id && all[0].Maintenance == on &&
			(all[0].Health == beacon.HealthCritical) == on && (len(passing) == 1) != on {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("Instances(%q) = %+v (passing: %+v), want %q with Maintenance %v", service, all, passing, id, on)
}
