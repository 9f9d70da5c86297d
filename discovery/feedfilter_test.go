package discovery_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestFeedAsksForWatchedServices: the change feed's summaries query names
// the services the cache watches (?filter), so a host watching a few
// services of a large datacenter reads their summaries, not everyone's,
// at each change; a service watched later is named from the next round.
func TestFeedAsksForWatchedServices(t *testing.T) {
	srv := consultest.NewServer(t)
	target, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var filters []string
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/internal/ui/services" {
			mu.Lock()
			filters = append(filters, r.URL.Query().Get("filter"))
			mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })

	r := registry(t, srv.Config())
	for _, svc := range []string{"alpha", "beta", "gamma"} {
		register(t, r, svc+"-1", svc, beacon.HealthPassing)
	}
	c := newCache(t, consul.Config{Addresses: []string{hs.Listener.Addr().String()}})
	a, err := c.Watch(beacon.Query{Service: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	until(t, a, "alpha's first answer", func(s *discovery.Snapshot) bool { return len(s.Instances) == 1 })
	b, err := c.Watch(beacon.Query{Service: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	until(t, b, "beta's first answer", func(s *discovery.Snapshot) bool { return len(s.Instances) == 1 })

	const both = `Service.Service == "alpha" or Service.Service == "beta"`
	n := 0
	testutil.Eventually(t, deadline, "a summaries query naming alpha and beta", func() error {
		// A change elsewhere in the datacenter ends the feed's blocking
		// query, so it asks again with the names watched now.
		n++
		register(t, r, "gamma-"+strconv.Itoa(n+1), "gamma", beacon.HealthPassing)
		mu.Lock()
		defer mu.Unlock()
		for _, f := range filters {
			if f == both {
				return nil
			}
		}
		return testutil.Want(false, "filters sent = %q, want one of %q", filters, both)
	})
	mu.Lock()
	defer mu.Unlock()
	for _, f := range filters {
		if f == "" || strings.Contains(f, "gamma") {
			t.Errorf("a summaries query asked for %q: want only watched services named", f)
		}
	}
}
