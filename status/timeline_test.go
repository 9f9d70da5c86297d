package status_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/status"
)

// TestTimelineFromCacheEvents: over a real cache on a real agent, the
// timeline records an instance as the cache publishes it, with its ID,
// and its removal; the sampler, running, does not also record the count
// change (the cache reports it live). The test waits for a sample that
// saw the instance and for two samples after the removal, so that a
// sampler inferring the 1 → 0 change would have recorded it.
func TestTimelineFromCacheEvents(t *testing.T) {
	// 50 ms: samples come quickly, and the 360 kept last 18 s, so the
	// history still grows (and samples can be counted) on a slow machine.
	const every = 50 * time.Millisecond
	srv := consultest.NewServer(t)
	cfg := srv.Config()
	c := newCache(t, cfg)
	url := serve(t, status.New(status.WithCache(c), status.WithSampling(every, status.MaxSamples)))
	watch(t, c, "tl")

	r := registry(t, cfg)
	register(t, r, "tl-1", "tl", beacon.HealthPassing)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	has := func(k status.EventKind) func(status.Report) bool {
		return func(r status.Report) bool {
			for _, e := range r.Events {
				if e.Kind == k && e.Service == "tl" && e.Instance == "tl-1" {
					return true
				}
			}
			return false
		}
	}
	samples := func(r status.Report) []int {
		for _, h := range r.Services {
			if h.Service == "tl" {
				return h.Passing
			}
		}
		return nil
	}
	until(t, url, "tl-1 added in the timeline", has(status.InstanceAdded))
	// A sample with the instance, so that the sampler has a 1 to compare.
	until(t, url, "a sample of tl with its instance", func(r status.Report) bool {
		p := samples(r)
		return len(p) > 0 && p[len(p)-1] == 1
	})
	if err := r.Deregister(ctx, "tl-1"); err != nil {
		t.Fatal(err)
	}
	rep := until(t, url, "tl-1 removed in the timeline", has(status.InstanceRemoved))
	if k := rep.Events[0].Kind; k != status.InstanceRemoved {
		t.Errorf("newest event %q, want %q first", k, status.InstanceRemoved)
	}
	n := len(samples(rep))
	if n >= status.MaxSamples {
		t.Fatalf("tl's history is full (%d samples) before the removal: samples cannot be counted", n)
	}
	// Two samples after this report: the second read the cache after the
	// removal was published. Its 0 is recorded in the same step as any
	// event the sampler derives from it.
	rep = until(t, url, "two samples after the removal, the last with no instance", func(r status.Report) bool {
		p := samples(r)
		return len(p) >= n+2 && p[len(p)-1] == 0
	})
	for _, e := range rep.Events {
		if e.Kind == status.InstancesChanged {
			t.Errorf("event %+v: the sampler inferred what the cache reported", e)
		}
	}
	if html := fetch(t, url, false); !strings.Contains(html, "instance_added") || !strings.Contains(html, "tl-1") {
		t.Error("the HTML timeline lacks the instance added")
	}
}
