package discovery

import (
	"fmt"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

// TestDiffInstances: one event per instance added, removed or changing
// health, in a fixed order; more than MaxInstanceEvents changes in one
// answer give a single summary; an unchanged instance gives nothing.
func TestDiffInstances(t *testing.T) {
	inst := func(id string, h beacon.Health) beacon.Instance {
		return beacon.Instance{ID: id, Node: "n", Address: "::1", Port: 80, Health: h}
	}
	now := time.Unix(1, 0)
	prev := []beacon.Instance{inst("a", beacon.HealthPassing), inst("b", beacon.HealthPassing), inst("c", beacon.HealthPassing)}
	next := []beacon.Instance{inst("a", beacon.HealthPassing), inst("b", beacon.HealthWarning), inst("d", beacon.HealthPassing)}
	got := fmt.Sprint(diffInstances(prev, next, now))
	want := fmt.Sprint([]Event{
		{Time: now, Kind: EventHealthChanged, Instance: "b", Detail: "passing → warning"},
		{Time: now, Kind: EventInstanceAdded, Instance: "d", Detail: "[::1]:80, passing"},
		{Time: now, Kind: EventInstanceRemoved, Instance: "c", Detail: "[::1]:80"},
	})
	if got != want {
		t.Errorf("diff =\n%s\nwant\n%s", got, want)
	}
	if d := diffInstances(prev, prev, now); len(d) != 0 {
		t.Errorf("diff of the same instances = %v, want none", d)
	}

	var many []beacon.Instance
	for i := range MaxInstanceEvents + 1 {
		many = append(many, inst(fmt.Sprint("m", i), beacon.HealthPassing))
	}
	if d := diffInstances(nil, many[:MaxInstanceEvents], now); len(d) != MaxInstanceEvents || d[0].Kind != EventInstanceAdded {
		t.Errorf("diff of %d added = %v, want one event each", MaxInstanceEvents, d)
	}
	d := diffInstances(prev, many, now)
	if len(d) != 1 || d[0].Kind != EventInstancesChanged || d[0].Detail != "3 → 11 instances: 11 added, 3 removed, 0 changed health" {
		t.Errorf("diff of 14 changes = %v, want one summary", d)
	}
}
