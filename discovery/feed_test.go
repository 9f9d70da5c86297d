package discovery_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
)

// TestFeedDrivesWatchesBeyondTheBudget: with a budget of three long polls,
// two watches get their own and the rest follow the shared change feed:
// new instances, health changes and removals arrive through it. The wait is
// ten minutes, so the sweep (one fetch per watch per wait period) cannot be
// what delivers them within the test's deadline; a meta-only change, which
// touches no check, arrives with the sweep, shown with a short wait.
func TestFeedDrivesWatchesBeyondTheBudget(t *testing.T) {
	for _, tc := range []struct {
		name string
		wait time.Duration
	}{{"feed", 10 * time.Minute}, {"sweep", 2 * time.Second}} {
		t.Run(tc.name, func(t *testing.T) { testFeed(t, tc.wait, tc.name == "sweep") })
	}
}

func testFeed(t *testing.T, wait time.Duration, sweep bool) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	c := newCache(t, srv.Config(), discovery.WithMaxLongPolls(3), discovery.WithWaitTime(wait))
	var ws []*discovery.Watcher
	for i := range 6 {
		svc := "feed" + strconv.Itoa(i)
		register(t, r, svc+"-a", svc, beacon.HealthPassing)
		w, err := c.Watch(beacon.Query{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ws = append(ws, w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for i, w := range ws {
		if s, err := w.Wait(ctx); err != nil || len(s.Instances) != 1 {
			t.Fatalf("watch %d first answer = %v, %v; want one instance", i, s, err)
		}
	}
	fed := ws[5] // beyond the budget
	if sweep {
		err := r.Register(ctx, beacon.Registration{
			ID: "feed5-a", Service: "feed5", Address: "127.0.0.1", Port: testPort("feed5-a"), Meta: map[string]string{"v": "2"},
			Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthPassing}},
		})
		if err != nil {
			t.Fatal(err)
		}
		until(t, fed, "meta-only change through the sweep", func(s *discovery.Snapshot) bool {
			return len(s.Instances) == 1 && s.Instances[0].Meta["v"] == "2"
		})
		return
	}
	register(t, r, "feed5-b", "feed5", beacon.HealthPassing)
	until(t, fed, "new instance through the feed", func(s *discovery.Snapshot) bool { return slices.Equal(ids(s), []string{"feed5-a", "feed5-b"}) })

	if err := r.UpdateTTL(ctx, "service:feed5-b", beacon.HealthCritical, "down"); err != nil {
		t.Fatal(err)
	}
	until(t, fed, "health change through the feed", func(s *discovery.Snapshot) bool { return slices.Equal(ids(s), []string{"feed5-a"}) })

	if err := r.Deregister(ctx, "feed5-a"); err != nil {
		t.Fatal(err)
	}
	until(t, fed, "removal through the feed", func(s *discovery.Snapshot) bool { return len(s.Instances) == 0 })
}
