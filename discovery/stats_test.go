package discovery_test

import (
	"slices"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestStatsAndAgents: what a status page shows of a watch and of the
// agents, on a real agent: the query's tags, the answer's index, passing
// against published instances, the agent asked; and when the agent is
// stopped, the agent marked down with its cause and when, and the watch's
// error with when it began.
func TestStatsAndAgents(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	register(t, r, "s-1", "stats", beacon.HealthPassing)
	c := newCache(t, srv.Config())
	w, err := c.Watch(beacon.Query{Service: "stats", Tags: []string{"v1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	all, err := c.Watch(beacon.Query{Service: "stats"})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	until(t, all, "one instance", func(s *discovery.Snapshot) bool { return len(s.Instances) == 1 })
	var st discovery.WatchStats
	for _, s := range c.Stats() {
		if s.Service == "stats" && len(s.Tags) == 0 {
			st = s
		}
	}
	if st.Index == 0 || st.Passing != 1 || st.Instances != 1 || st.Agent != srv.HTTPAddr || !st.ErrSince.IsZero() {
		t.Errorf("Stats() for stats = %+v; want an index, 1 passing of 1, agent %s, no error", st, srv.HTTPAddr)
	}
	tagged := false
	for _, s := range c.Stats() {
		tagged = tagged || s.Service == "stats" && slices.Equal(s.Tags, []string{"v1"})
	}
	if !tagged {
		t.Errorf("Stats() = %+v; want a watch of stats with tags [v1]", c.Stats())
	}
	if ag := c.Agents(); len(ag) != 1 || ag[0].Address != srv.HTTPAddr || !ag[0].Current || ag[0].Down || ag[0].LastAnswer.IsZero() {
		t.Errorf("Agents() = %+v; want %s, current, up, answered", ag, srv.HTTPAddr)
	}

	srv.Stop()
	until(t, all, "the outage", func(s *discovery.Snapshot) bool { return s.Err != nil })
	testutil.Eventually(t, deadline, "the agent marked down", func() error {
		ag := c.Agents()
		return testutil.Want(len(ag) == 1 && ag[0].Down && !ag[0].Since.IsZero() && ag[0].LastError != nil, "Agents() = %+v", ag)
	})
	for _, s := range c.Stats() {
		if s.Service == "stats" && len(s.Tags) == 0 && (s.Err == nil || s.ErrSince.IsZero()) {
			t.Errorf("Stats() for stats after the outage = %+v; want an error and when it began", s)
		}
	}
}
