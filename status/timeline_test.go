package status_test

import (
	"context"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/status"
)

// TestTimelineFromCacheEvents: over a real cache on a real agent, the
// timeline records an instance as the cache publishes it, with its ID,
// and its removal; the sampler does not also record the count change.
// Sampling is off, so nothing here can come from samples.
func TestTimelineFromCacheEvents(t *testing.T) {
	srv := consultest.NewServer(t)
	cfg := srv.Config()
	c := newCache(t, cfg)
	url := serve(t, status.New(status.WithCache(c), status.WithSampling(0, 0)))
	watch(t, c, "tl")

	r, err := consulhttp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := r.Register(ctx, beacon.Registration{ID: "tl-1", Service: "tl", Address: "127.0.0.1", Port: 9001}); err != nil {
		t.Fatal(err)
	}
	has := func(k status.EventKind) func(status.Report) bool {
		return func(r status.Report) bool {
			for _, e := range r.Events {
				if e.Kind == k && e.Service == "tl" && e.Instance == "tl-1" {
					return true
				}
			}
			return false
		}
	}
	until(t, url, "tl-1 added in the timeline", has(status.InstanceAdded))
	if err := r.Deregister(ctx, "tl-1"); err != nil {
		t.Fatal(err)
	}
	rep := until(t, url, "tl-1 removed in the timeline", has(status.InstanceRemoved))
	if k := rep.Events[0].Kind; k != status.InstanceRemoved {
		t.Errorf("newest event %q, want %q first", k, status.InstanceRemoved)
	}
	for _, e := range rep.Events {
		if e.Kind == status.InstancesChanged {
			t.Errorf("event %+v: the sampler inferred what the cache reported", e)
		}
	}
	if html := fetch(t, url, false); !strings.Contains(html, "instance_added") || !strings.Contains(html, "tl-1") {
		t.Error("the HTML timeline lacks the instance added")
	}
}
