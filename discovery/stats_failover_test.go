package discovery_test

import (
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestStatsErrSinceOfAFailoverWatch: a failover watch's row says when its
// error began, as the watch of the datacenter it serves does. It once said
// 1970: the failover watch copied the error but kept no time of its own.
func TestStatsErrSinceOfAFailoverWatch(t *testing.T) {
	srv := consultest.NewServer(t)
	register(t, registry(t, srv.Config()), "f-1", "f", beacon.HealthPassing)
	c := newCache(t, srv.Config())
	w, err := c.Watch(beacon.Query{Service: "f"}, discovery.FailOver(discovery.Failover{Datacenters: []string{"dc2"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	until(t, w, "f-1", func(s *discovery.Snapshot) bool { return len(s.Instances) == 1 })

	stopped := time.Now()
	srv.Stop()
	testutil.Eventually(t, deadline, "every watch erring", func() error {
		st := c.Stats()
		for _, s := range st {
			if s.Err == nil {
				return testutil.Want(false, "Stats() = %+v", st)
			}
		}
		return testutil.Want(len(st) == 2, "Stats() = %+v, want the failover watch and the local one", st)
	})
	now := time.Now()
	for _, s := range c.Stats() {
		if s.ErrSince.Before(stopped) || s.ErrSince.After(now) {
			t.Errorf("Stats() row %s (failover %v): ErrSince %v, want between the stop (%v) and now (%v)", s.Service, s.Failover, s.ErrSince, stopped, now)
		}
	}
}
