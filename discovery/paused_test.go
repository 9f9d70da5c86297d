package discovery_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
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

	sent := &requestSignal{ch: make(chan struct{}, 16)}
	c := newCache(t, cl.Config(client, server), discovery.WithMetrics(sent))
	w, _ := waitFirst(t, c, "api")
	until(t, w, "api-1 seen", func(s *discovery.Snapshot) bool { return slices.Equal(ids(s), []string{"api-1"}) })
	// The watch's second query is its long poll on the client agent.
	for n := 0; n < 2; n++ {
		select {
		case <-sent.ch:
		case <-time.After(deadline):
			t.Fatal("the watch sent no long poll")
		}
	}

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

// requestSignal is a discovery.Metrics that signals every query sent.
type requestSignal struct {
	countingMetrics
	ch chan struct{}
}

func (r *requestSignal) Request(string) {
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

// failingFor answers 500 for one service and passes the rest to a real
// agent: an agent that is alive but cannot answer one query.
type failingFor struct {
	beacon.Registry
	service string
	fails   chan struct{}
}

func (f *failingFor) Instances(ctx context.Context, q beacon.Query) ([]beacon.Instance, beacon.QueryMeta, error) {
	if q.Service == f.service {
		select {
		case f.fails <- struct{}{}:
		default:
		}
		return nil, beacon.QueryMeta{}, &beacon.StatusError{Method: "GET", Path: "/v1/health/service/" + q.Service, StatusCode: 500, Message: "No cluster leader"}
	}
	return f.Registry.Instances(ctx, q)
}

// TestAnsweredErrorKeepsOtherLongPolls: a 5xx from an agent proves it is
// alive, so the long polls of other watches on it are left running; only
// silence (the watchdog) or a transport error ends them.
func TestAnsweredErrorKeepsOtherLongPolls(t *testing.T) {
	srv := consultest.NewServer(t)
	register(t, registry(t, srv.Config()), "a-1", "a", beacon.HealthPassing)
	f := &failingFor{service: "b", fails: make(chan struct{}, 1)}
	c := newCache(t, srv.Config(), discovery.WithBackend(func(cfg consul.Config) (beacon.Registry, error) {
		r, err := consulhttp.New(cfg)
		f.Registry = r
		return f, err
	}))
	wa, _ := waitFirst(t, c, "a")
	wb, err := c.Watch(beacon.Query{Service: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer wb.Close()
	for n := 0; n < 2; n++ { // two failures: the agent was marked down and probed back up
		select {
		case <-f.fails:
		case <-time.After(deadline):
			t.Fatal("watch b was not refused")
		}
	}
	if s := wa.Snapshot(); s.Err != nil || !slices.Equal(ids(s), []string{"a-1"}) {
		t.Errorf("watch a after b's 500s: %v, error %v; want [a-1] and no error", ids(s), s.Err)
	}
}
