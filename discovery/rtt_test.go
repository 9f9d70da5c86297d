package discovery_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulkit"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/internal/testutil"
)

// origin8 and at place a node in Consul's 8 dimensions: at(ms) is ms
// milliseconds from the origin along the first.
var origin8 = []float64{0, 0, 0, 0, 0, 0, 0, 0}

func at(ms float64) []float64 { return []float64{ms / 1000, 0, 0, 0, 0, 0, 0, 0} }

// waitRTT waits on h's notifications until node's RTT satisfies ok.
func waitRTT(t *testing.T, h *discovery.RTTWatcher, node string, ok func(time.Duration, bool) bool) *beacon.NodeRTTs {
	t.Helper()
	timeout := time.After(deadline)
	for {
		if tab := h.RTTs(); tab != nil {
			if d, known := tab.RTT(node); ok(d, known) {
				return tab
			}
		}
		select {
		case <-h.Changed():
		case <-timeout:
			d, known := h.RTTs().RTT(node)
			t.Fatalf("RTT(%q) = %v, %v after %v (last error %v)", node, d, known, deadline, h.Err())
		}
	}
}

// TestWatchRTTs: the cache's coordinate watch learns the agent's node,
// estimates RTTs to nodes given coordinates, follows a coordinate that
// moves, and stops with its last handle; service watches beside it keep
// the streaming backend.
func TestWatchRTTs(t *testing.T) {
	for _, backend := range []struct {
		name string
		opts []discovery.Option
	}{
		{"consulhttp", nil},
		{"consulkit", []discovery.Option{discovery.WithBackend(consulkit.Backend)}},
	} {
		t.Run(backend.name, func(t *testing.T) {
			srv := consultest.NewServer(t)
			srv.RegisterExternal(t, "node-a", "127.0.0.1", consultest.ExternalInstance{ID: "web-a", Service: "web", Port: 9001})
			srv.SetCoordinate(t, srv.Name, origin8...)
			srv.SetCoordinate(t, "node-a", at(5)...)
			c := newCache(t, srv.Config(), append(backend.opts, discovery.WithRTTRefresh(10*time.Millisecond))...)

			web, err := c.Watch(beacon.Query{Service: "web"})
			if err != nil {
				t.Fatal(err)
			}
			defer web.Close()
			h, err := c.WatchRTTs()
			if err != nil {
				t.Fatalf("WatchRTTs() = %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			if _, err := h.Wait(ctx); err != nil {
				t.Fatalf("Wait() = %v", err)
			}
			tab := waitRTT(t, h, "node-a", func(d time.Duration, ok bool) bool { return ok && d > 4*time.Millisecond && d < 6*time.Millisecond })
			if tab.From != srv.Name {
				t.Errorf("RTTs().From = %q, want the agent's node %q", tab.From, srv.Name)
			}
			if d, ok := tab.RTT(srv.Name); !ok || d != 0 {
				t.Errorf("RTT(own node) = %v, %v; want 0, true", d, ok)
			}
			// A second handle joins the same watch.
			h2, err := c.WatchRTTs()
			if err != nil || h2.RTTs() != h.RTTs() {
				t.Fatalf("second WatchRTTs() = %v with table %p, want the first's %p", err, h2.RTTs(), h.RTTs())
			}
			h2.Close()

			srv.SetCoordinate(t, "node-a", at(40)...)
			waitRTT(t, h, "node-a", func(d time.Duration, ok bool) bool { return ok && d > 39*time.Millisecond })

			// A health answer after a change comes from a blocking query:
			// the streaming backend's, unless something turned it off.
			if _, err := web.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			srv.RegisterExternal(t, "node-b", "127.0.0.1", consultest.ExternalInstance{ID: "web-b", Service: "web", Port: 9002})
			testutil.Eventually(t, deadline, "web's second instance", func() error {
				for _, st := range c.Stats() {
					if st.Service == "web" && st.Instances == 2 {
						if st.Backend != beacon.QueryBackendStreaming {
							t.Errorf("Stats(web).Backend = %q beside the coordinate watch, want %q", st.Backend, beacon.QueryBackendStreaming)
						}
						return nil
					}
				}
				return errors.New("not yet")
			})
			h.Close()
			h.Close() // twice is fine
		})
	}
}

// TestWatchRTTsClosed: a closed cache gives no handle.
func TestWatchRTTsClosed(t *testing.T) {
	srv := consultest.NewServer(t)
	c := newCache(t, srv.Config())
	c.Close()
	if _, err := c.WatchRTTs(); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("WatchRTTs() after Close = %v, want ErrClosed", err)
	}
}

// TestWatchRTTsDisabled: with coordinates disabled on the agent, the first
// attempt's 401 is what Wait returns, and there is no table.
func TestWatchRTTsDisabled(t *testing.T) {
	srv := consultest.NewServer(t, consultest.WithConfigJSON(`{"disable_coordinates": true}`))
	c := newCache(t, srv.Config())
	h, err := c.WatchRTTs()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	tab, err := h.Wait(ctx)
	var se *beacon.StatusError
	if !errors.As(err, &se) || se.StatusCode != 401 || tab != nil || h.RTTs() != nil {
		t.Errorf("Wait() with coordinates disabled = %v, %v; want no table and a *beacon.StatusError 401", tab, err)
	}
}

// TestWatchRTTsFollowsTheAgent: the table is always from the node of the
// agent that lists the coordinates. The first agent dies while the
// coordinate watch waits on its rate limit; a service watch moves the
// cache to the second agent meanwhile, so the coordinate watch's next
// query goes there with an index: it must ask that agent's name, not keep
// the first one's.
func TestWatchRTTsFollowsTheAgent(t *testing.T) {
	t.Parallel()
	cl := consultest.NewCluster(t, 1, 2)
	srv, a1, a2 := cl.Servers[0], cl.Clients[0], cl.Clients[1]
	srv.RegisterExternal(t, "node-x", "127.0.0.1", consultest.ExternalInstance{ID: "x-1", Service: "x", Port: 9001})
	srv.SetCoordinate(t, a1.Name, origin8...)
	srv.SetCoordinate(t, a2.Name, origin8...)
	srv.SetCoordinate(t, "node-x", at(5)...)
	// A refresh long enough that the watch's third query waits on it.
	c := newCache(t, cl.Config(a1, a2), discovery.WithRTTRefresh(20*time.Second))
	svc, err := c.Watch(beacon.Query{Service: "consul"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	h, err := c.WatchRTTs()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tab := waitRTT(t, h, "node-x", func(d time.Duration, ok bool) bool { return ok })
	if tab.From != a1.Name {
		t.Fatalf("RTTs().From = %q, want the first agent's node %q", tab.From, a1.Name)
	}
	// The second query (a blocking one) returns with this change; the
	// third waits on the rate limit.
	srv.SetCoordinate(t, "node-x", at(40)...)
	waitRTT(t, h, "node-x", func(d time.Duration, ok bool) bool { return ok && d > 30*time.Millisecond })

	a1.Kill()
	timeout := time.After(deadline + 20*time.Second)
	for {
		if tab := h.RTTs(); tab.From == a2.Name {
			return
		}
		select {
		case <-h.Changed():
		case <-timeout:
			t.Fatalf("RTTs().From = %q after the first agent died, want the second's node %q (last error %v)", h.RTTs().From, a2.Name, h.Err())
		}
	}
}

// TestWithRTTRefreshInvalid: a refresh of zero or less is refused, and
// the error names the option.
func TestWithRTTRefreshInvalid(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		_, err := discovery.New(consul.Config{Addresses: []string{"127.0.0.1:1"}}, discovery.WithRTTRefresh(d))
		var ve *beacon.ValidationError
		if !errors.Is(err, beacon.ErrInvalid) || !errors.As(err, &ve) || ve.Field != "WithRTTRefresh" {
			t.Errorf("New(WithRTTRefresh(%v)) = %v, want a ValidationError on WithRTTRefresh", d, err)
		}
	}
}
