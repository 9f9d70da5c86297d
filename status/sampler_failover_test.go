package status

import (
	"testing"
	"time"

	"github.com/beaconsd/beacon/discovery"
)

// TestSamplerFailoverEvents: a failover watch's move to another
// datacenter is one failover event, although its row's datacenter changed
// between the samples; its instance count, mirrored from the datacenter
// served, is recorded once, by that datacenter's own row.
func TestSamplerFailoverEvents(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	h := newHistory(5)
	ev := NewEvents(DefaultEvents)
	h.sample(t0, []discovery.WatchStats{
		{Service: "web", Failover: true, Instances: 1},
		{Service: "web", Instances: 1},
	}, nil, ev)
	h.sample(t0.Add(time.Second), []discovery.WatchStats{
		{Service: "web", Failover: true, Datacenter: "dc2", Failovers: 1, FailoverSince: t0.Add(time.Second / 2), FailoverReason: "0 passing in the local datacenter", Instances: 2},
		{Service: "web", Instances: 0},
		{Service: "web", Datacenter: "dc2", Instances: 2},
	}, nil, ev)
	count := map[EventKind]int{}
	for _, e := range ev.Last() {
		count[e.Kind]++
		if e.Kind == FailedOver && (!e.Time.Equal(t0.Add(time.Second/2)) || e.Detail != "now serving dc2: 0 passing in the local datacenter") {
			t.Errorf("failover event %+v; want the move's time and \"now serving dc2: …\"", e)
		}
	}
	if count[FailedOver] != 1 || count[InstancesChanged] != 1 {
		t.Errorf("events %+v; want one failover and one instances_changed (the local row's 1 → 0)", ev.Last())
	}
}

// TestSamplerLiveInfersNothingTheCacheReports: with a cache that reports
// its events (live), two samples differing in instance count, failover
// and stale views repaired record none of those kinds (the cache has
// recorded each once already), while what only the sampler sees (panic)
// is still recorded.
func TestSamplerLiveInfersNothingTheCacheReports(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	h := newHistory(5)
	h.live = true
	ev := NewEvents(DefaultEvents)
	h.sample(t0, []discovery.WatchStats{
		{Service: "web", Failover: true, Instances: 2},
		{Service: "web", Instances: 2},
	}, nil, ev)
	h.sample(t0.Add(time.Second), []discovery.WatchStats{
		{Service: "web", Failover: true, Datacenter: "dc2", Failovers: 1, FailoverSince: t0.Add(time.Second / 2), FailoverReason: "0 passing in the local datacenter", Instances: 3},
		{Service: "web", Instances: 0, StaleViews: 2, Panic: true, PanicThreshold: 0.5},
		{Service: "web", Datacenter: "dc2", Instances: 3},
	}, nil, ev)
	count := map[EventKind]int{}
	for _, e := range ev.Last() {
		count[e.Kind]++
	}
	for _, k := range []EventKind{InstancesChanged, FailedOver, StaleViewRepaired} {
		if count[k] != 0 {
			t.Errorf("live sampler recorded %d %q events, want 0 (the cache reports them): %+v", count[k], k, ev.Last())
		}
	}
	if count[PanicEntered] != 1 {
		t.Errorf("live sampler recorded %d %q events, want 1: %+v", count[PanicEntered], PanicEntered, ev.Last())
	}
}
