package registrytest

import (
	"context"
	"errors"
	"slices"
	"strconv"
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
		// Consul 1.14's streaming backend was seen, once in about twenty
		// runs, not to wake a blocking query that reached it within a
		// millisecond of the change it waited for. The scenario gets a
		// second chance on a fresh service; a backend that never wakes
		// fails both.
		for attempt := 1; ; attempt++ {
			svc := "change" + strconv.Itoa(attempt)
			mustRegister(t, ctx, r, ttlRegistration(svc+"-1", svc))
			_, meta := lookup(t, ctx, r, beacon.Query{Service: svc})
			// A wait far past the test's own bound: only the change can end it.
			q := beacon.Query{Service: svc, WaitIndex: meta.LastIndex, WaitTime: 5 * time.Minute}
			qctx, cancel := context.WithCancel(ctx)
			ch := goInstances(qctx, r, q)
			mustRegister(t, ctx, r, ttlRegistration(svc+"-2", svc))
			var got result
			if attempt == 1 {
				select {
				case got = <-ch:
				case <-time.After(10 * time.Second):
					cancel()
					t.Logf("Instances(%s) did not wake within 10 s of a change; trying again", describe(q))
					continue
				}
			} else {
				got = receive(t, ch, "Instances("+describe(q)+") after a change")
			}
			cancel()
			if got.err != nil {
				t.Fatalf("Instances(%s) = %v, want nil error", describe(q), got.err)
			}
			if got.meta.LastIndex <= meta.LastIndex {
				t.Errorf("Instances(%s) after a change = index %d, want above %d", describe(q), got.meta.LastIndex, meta.LastIndex)
			}
			if want := []string{svc + "-1", svc + "-2"}; !slices.Equal(ids(got.insts), want) {
				t.Errorf("Instances(%s) after a change = IDs %q, want %q", describe(q), ids(got.insts), want)
			}
			return
		}
	})

	// The read paths discovery switches between (discovery.ReadPath): a
	// blocking query reaches the agent's streaming backend unless
	// NoStreaming keeps it off; Cached answers carry the agent cache's
	// X-Cache. A consultest agent has streaming and the HTTP cache on.
	t.Run("ReadPaths", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		mustRegister(t, ctx, r, ttlRegistration("paths-1", "paths"))
		for _, tc := range []struct {
			name                string
			noStreaming, cached bool
			backend             beacon.QueryBackend
		}{
			{"streaming", false, false, beacon.QueryBackendStreaming},
			{"blocking", true, false, beacon.QueryBackendBlockingQuery},
			{"agent cache", true, true, beacon.QueryBackendBlockingQuery},
			{"streaming cache", false, true, beacon.QueryBackendStreaming},
		} {
			// Index 1 is below any real index: the agent answers at once.
			q := beacon.Query{Service: "paths", WaitIndex: 1, WaitTime: time.Second, NoStreaming: tc.noStreaming, Cached: tc.cached}
			insts, meta := lookup(t, ctx, r, q)
			if !slices.Equal(ids(insts), []string{"paths-1"}) {
				t.Errorf("%s: Instances(%s) = IDs %q, want [paths-1]", tc.name, describe(q), ids(insts))
			}
			if meta.Backend != tc.backend {
				t.Errorf("%s: Instances(%s) backend = %q, want %q", tc.name, describe(q), meta.Backend, tc.backend)
			}
			if hit := meta.AgentCache == "HIT" || meta.AgentCache == "MISS"; hit != tc.cached {
				t.Errorf("%s: Instances(%s) AgentCache = %q, want HIT or MISS only for a cached query", tc.name, describe(q), meta.AgentCache)
			}
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
