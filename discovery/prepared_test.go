package discovery_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/discovery"
)

// A prepared-query watch sees Consul fail the query over to dc2 and back,
// woken by the local watch of the query's service: with an hour between
// polls, nothing else would make it execute again.
func TestWatchPreparedFollowsFailover(t *testing.T) {
	f, dc1, _ := federation(t)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := registry(t, f.DC("dc1").Config()).CreateQuery(ctx, beacon.PreparedQuery{
		Name: "web-q", Service: "web", OnlyPassing: true, Failover: beacon.QueryFailover{Datacenters: []string{"dc2"}},
	}); err != nil {
		t.Fatalf("CreateQuery() = %v", err)
	}
	c := newCache(t, f.DC("dc1").Config(), discovery.WithQueryPoll(time.Hour))
	events, _ := listen(t, c)
	w, err := c.WatchPrepared("web-q")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s, err := w.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait() = %v", err)
	}
	if s.Service != "web" || s.Datacenter != "" || s.FailedOver || len(s.Instances) != 1 || s.Instances[0].ID != "web-1" {
		t.Fatalf("first snapshot = %+v, want web-1 from the local datacenter", s)
	}

	critical := time.Now()
	setHealth(t, dc1, "web-1", beacon.HealthCritical)
	until(t, w, "the query failed over to dc2", served("dc2", "web-2"))
	t.Logf("failover seen %v after web-1 went critical", time.Since(critical).Round(time.Millisecond))
	e := events.wait(t, "the failover event", func(e discovery.Event) bool { return e.Kind == discovery.EventFailedOver })
	if e.Service != "web-q"+discovery.QuerySuffix || e.Datacenter != "dc2" || e.Detail != "local → dc2" {
		t.Errorf("failover event = %+v, want web-q's, to dc2", e)
	}
	if e := events.wait(t, "web-2 added", func(e discovery.Event) bool { return e.Kind == discovery.EventInstanceAdded }); e.Instance != "web-2" || e.Datacenter != "dc2" {
		t.Errorf("instance event = %+v, want web-2 added in dc2", e)
	}

	setHealth(t, dc1, "web-1", beacon.HealthPassing)
	until(t, w, "the query back in dc1", served("", "web-1"))
	for _, st := range c.Stats() {
		if st.PreparedQuery == "web-q" {
			return
		}
	}
	t.Errorf("Stats() = %+v, want a watch of prepared query web-q", c.Stats())
}

func TestWatchPreparedErrors(t *testing.T) {
	f, _, _ := federation(t)
	c := newCache(t, f.DC("dc1").Config())
	if _, err := c.WatchPrepared("bad/name"); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("WatchPrepared(bad/name) = %v, want ErrInvalid", err)
	}
	w, err := c.WatchPrepared("no-such-query")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s := next(t, w)
	if s.Source != discovery.SourceNone || !errors.Is(s.Err, beacon.ErrNotFound) {
		t.Errorf("snapshot of a missing query = %+v, want SourceNone and an error matching ErrNotFound", s)
	}
}
