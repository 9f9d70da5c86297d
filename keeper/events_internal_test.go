package keeper

import (
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
)

// TestNoListenerNoCost: with nobody listening, emitting and publishing an
// unchanged set of stale agents allocate nothing (they run on every
// registration; a heartbeat emits nothing at all unless it recovers).
func TestNoListenerNoCost(t *testing.T) {
	k, err := New(consul.Config{Addresses: []string{"127.0.0.1:1"}}, beacon.Registration{ID: "x", Service: "x", Port: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer k.closeAgents()
	if n := testing.AllocsPerRun(100, func() {
		k.emit(EventRegistered, k.agents[0].Addr, "started")
		k.publishStale()
	}); n != 0 {
		t.Errorf("emit and publishStale without listeners: %v allocations, want 0", n)
	}
	stop := k.Notify(func(Event) {})
	if !k.listened() {
		t.Errorf("listened() = false with a listener")
	}
	stop()
	stop()
	if k.listened() {
		t.Errorf("listened() = true after the only listener stopped")
	}
}
