package registrytest

import (
	"errors"
	"testing"

	"github.com/beaconsd/beacon"
)

// testTTL checks that UpdateTTL drives an instance's health as lookups see it.
func (s suite) testTTL(t *testing.T) {
	t.Parallel()
	_, r := s.agent(t)

	t.Run("StatusReflected", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		reg := ttlRegistration("api-1", "api")
		mustRegister(t, ctx, r, reg)
		check := reg.CheckIDs()[0]
		for _, tc := range []struct {
			status      beacon.Health
			wantPassing int // instances a passing-only lookup returns
		}{
			{beacon.HealthWarning, 0},
			{beacon.HealthCritical, 0},
			{beacon.HealthPassing, 1},
		} {
			mustUpdateTTL(t, ctx, r, check, tc.status)
			q := beacon.Query{Service: "api"}
			if got, _ := lookup(t, ctx, r, q); len(got) != tc.wantPassing {
				t.Errorf("Instances(%s) after UpdateTTL(%q, %q) = %+v, want %d instances", describe(q), check, tc.status, got, tc.wantPassing)
			}
			q.IncludeUnhealthy = true
			if got, _ := lookup(t, ctx, r, q); len(got) != 1 || got[0].Health != tc.status {
				t.Errorf("Instances(%s) after UpdateTTL(%q, %q) = %+v, want one instance with Health %q", describe(q), check, tc.status, got, tc.status)
			}
		}
	})

	t.Run("UnknownCheck", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		err := r.UpdateTTL(ctx, "no-such-check", beacon.HealthPassing, "")
		if !errors.Is(err, beacon.ErrNotFound) {
			t.Errorf("UpdateTTL(%q) = %v, want an error matching beacon.ErrNotFound", "no-such-check", err)
		}
	})
}
