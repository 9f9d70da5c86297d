package discovery_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
)

// TestPausedAgent: a paused (SIGSTOP) agent accepts connections and answers
// nothing, so a long poll on it would hang for its whole deadline (over five
// minutes by default) and the watch would never learn of changes. The
// cache's watchdog notices within seconds, ends the requests in flight to
// it, and moves the watch to the next agent; a change made meanwhile
// through that agent is seen. The time is logged (watchdog: a probe every
// 5 s, two misses of 2 s).
func TestPausedAgent(t *testing.T) {
	t.Parallel()
	cl := consultest.NewCluster(t, 1, 1)
	client, server := cl.Clients[0], cl.Servers[0]
	viaServer := registry(t, cl.Config(server))
	register(t, registry(t, cl.Config(client)), "api-1", "api", beacon.HealthPassing)

	c := newCache(t, cl.Config(client, server))
	w, _ := waitFirst(t, c, "api")
	until(t, w, "api-1 seen", func(s *discovery.Snapshot) bool { return slices.Equal(ids(s), []string{"api-1"}) })
	// Let the watch settle into its long poll on the client agent.
	time.Sleep(1500 * time.Millisecond)

	client.Pause()
	t.Cleanup(client.Resume) // before the cluster's own cleanup kills it
	paused := time.Now()
	register(t, viaServer, "api-2", "api", beacon.HealthPassing)
	s := until(t, w, "a change made through the other agent during the pause", func(s *discovery.Snapshot) bool {
		return slices.Contains(ids(s), "api-2")
	})
	t.Logf("agent paused → watch moved and saw the change in %v", time.Since(paused).Round(time.Millisecond))
	if s.Err != nil {
		t.Errorf("snapshot after the move: error %v, want none", s.Err)
	}
	for _, st := range c.Stats() {
		if st.Service == "api" && st.Err != nil && !errors.Is(st.Err, beacon.ErrUnavailable) {
			t.Errorf("Stats error %v, want nil or ErrUnavailable", st.Err)
		}
	}
}
