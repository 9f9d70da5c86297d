package discovery_test

import (
	"context"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/registrytest"
)

// TestWatchCallers counts a callers' service by zone, keeps the same
// *Callers across answers that move nothing between zones, and follows
// those that do.
func TestWatchCallers(t *testing.T) {
	m := registrytest.NewMemory()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := func(id, zone string, port int) {
		t.Helper()
		r := beacon.Registration{ID: id, Service: "callers", Address: "127.0.0.1", Port: port}
		if zone != "" {
			r.Meta = map[string]string{"az": zone}
		}
		if err := m.Register(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	reg("c1", "a", 1)
	reg("c2", "b", 2)
	reg("c3", "", 3)
	c := memCache(t, []beacon.Registry{m})
	zc, err := c.WatchCallers(beacon.Query{Service: "callers"}, "az")
	if err != nil {
		t.Fatal(err)
	}
	defer zc.Close()
	w, err := c.Watch(beacon.Query{Service: "callers"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	waitFor := func(what string, cond func(*balancer.Callers) bool) *balancer.Callers {
		t.Helper()
		for {
			if got := zc.Callers(); got != nil && cond(got) {
				return got
			}
			select {
			case <-w.Changed():
			case <-ctx.Done():
				t.Fatalf("Callers(): never %s", what)
			}
		}
	}
	first := waitFor("a:1 b:1 \"\":1", func(got *balancer.Callers) bool {
		return got.Equal(balancer.NewCallers(map[string]int{"a": 1, "b": 1, "": 1}))
	})
	if again := zc.Callers(); again != first {
		t.Errorf("Callers() twice on one snapshot: %p then %p, want the same", first, again)
	}
	// A change that moves nothing between zones: the same *Callers.
	snap := w.Snapshot()
	reg("c1", "a", 11)
	for w.Snapshot() == snap {
		select {
		case <-w.Changed():
		case <-ctx.Done():
			t.Fatal("no new snapshot after re-registering c1")
		}
	}
	if got := zc.Callers(); got != first {
		t.Errorf("Callers() after a port change = %p, want the same %p", got, first)
	}
	reg("c4", "a", 4)
	waitFor("a:2", func(got *balancer.Callers) bool { return got.Count("a") == 2 && got.Total() == 4 })
}
