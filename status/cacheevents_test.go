package status

import (
	"testing"

	"github.com/beaconsd/beacon/discovery"
)

// TestCacheKinds: every kind the cache reports has the timeline's kind of
// the same name, and an event's fields and datacenter carry over.
func TestCacheKinds(t *testing.T) {
	all := []discovery.EventKind{discovery.EventInstanceAdded, discovery.EventInstanceRemoved, discovery.EventHealthChanged,
		discovery.EventInstancesChanged, discovery.EventAgentDown, discovery.EventAgentUp, discovery.EventFailedOver, discovery.EventStaleViewRepaired, discovery.EventTokenRotated}
	if len(cacheKinds) != len(all) {
		t.Errorf("cacheKinds has %d kinds, discovery %d", len(cacheKinds), len(all))
	}
	for _, k := range all {
		if sk, ok := cacheKinds[k]; !ok || string(sk) != string(k) {
			t.Errorf("discovery kind %q maps to %q", k, sk)
		}
	}
	e := fromCache(discovery.Event{Kind: discovery.EventInstanceAdded, Service: "web", Datacenter: "dc2", Instance: "web-1", Agent: "http://u:p@127.0.0.1:8500", Detail: "127.0.0.1:80, passing"})
	if e.Kind != InstanceAdded || e.Service != "web" || e.Instance != "web-1" || e.Agent != "http://127.0.0.1:8500" || e.Detail != "127.0.0.1:80, passing (in dc2)" {
		t.Errorf("fromCache = %+v", e)
	}
}
