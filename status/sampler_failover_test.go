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
