package registrytest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

// testBlocking checks blocking queries: Query.WaitIndex and Query.WaitTime.
func (s suite) testBlocking(t *testing.T) {
	t.Parallel()
	_, r := s.agent(t)

	// Each subtest watches a service of its own: a service's index moves
	// only when that service changes.
	t.Run("ReturnsOnChange", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		mustRegister(t, ctx, r, ttlRegistration("change-1", "change"))
		_, meta := lookup(t, ctx, r, beacon.Query{Service: "change"})
		// A wait far past the test's own bound: only the change can end it.
		q := beacon.Query{Service: "change", WaitIndex: meta.LastIndex, WaitTime: 5 * time.Minute}
		ch := goInstances(ctx, r, q)
		mustRegister(t, ctx, r, ttlRegistration("change-2", "change"))
		got := receive(t, ch, "Instances("+describe(q)+") after a change")
		if got.err != nil {
			t.Fatalf("Instances(%s) = %v, want nil error", describe(q), got.err)
		}
		if got.meta.LastIndex <= meta.LastIndex {
			t.Errorf("Instances(%s) after a change = index %d, want above %d", describe(q), got.meta.LastIndex, meta.LastIndex)
		}
		if want := []string{"change-1", "change-2"}; !slices.Equal(ids(got.insts), want) {
			t.Errorf("Instances(%s) after a change = IDs %q, want %q", describe(q), ids(got.insts), want)
		}
	})

	t.Run("ReturnsAfterWait", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		// The service exists: for a missing one Consul reports an index
		// that moves with every other service.
		mustRegister(t, ctx, r, ttlRegistration("still-1", "still"))
		_, meta := lookup(t, ctx, r, beacon.Query{Service: "still"})
		const wait = time.Second
		q := beacon.Query{Service: "still", WaitIndex: meta.LastIndex, WaitTime: wait}
		got := receive(t, goInstances(ctx, r, q), "Instances("+describe(q)+")")
		if got.err != nil {
			t.Fatalf("Instances(%s) = %v, want nil error", describe(q), got.err)
		}
		// A lower bound cannot flake: a slow machine only waits longer.
		if got.elapsed < wait/2 {
			t.Errorf("Instances(%s) returned after %v with nothing changed, want about %v", describe(q), got.elapsed, wait)
		}
		if got.meta.LastIndex != meta.LastIndex || !slices.Equal(ids(got.insts), []string{"still-1"}) {
			t.Errorf("Instances(%s) with nothing changed = IDs %q at index %d, want [still-1] at %d", describe(q), ids(got.insts), got.meta.LastIndex, meta.LastIndex)
		}
	})

	t.Run("CallerCancel", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(testContext(t))
		_, meta := lookup(t, ctx, r, beacon.Query{Service: "cancelled"})
		q := beacon.Query{Service: "cancelled", WaitIndex: meta.LastIndex, WaitTime: 5 * time.Minute}
		ch := goInstances(ctx, r, q)
		cancel()
		got := receive(t, ch, "Instances("+describe(q)+") after its context was cancelled")
		if !errors.Is(got.err, context.Canceled) {
			t.Errorf("Instances(%s) with its context cancelled = %v, want an error matching context.Canceled", describe(q), got.err)
		}
	})
}
