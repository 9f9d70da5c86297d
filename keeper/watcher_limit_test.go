package keeper_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/keeper"
	"github.com/beaconsd/beacon/registrytest"
)

// TestWatcherIgnoredHashDoesNotSpin: an agent (or a proxy before it) that
// ignores ?hash= and answers the watcher's long poll at once, with the
// same hash every time, must not turn it into a hot loop. A fake agent:
// a real one honours the hash.
//
// This test can fail: with the watcher's limiter at rate.Inf the fake
// sees thousands of long polls against a limit of 8 (tried: 4,242 in 3 s
// under -race).
func TestWatcherIgnoredHashDoesNotSpin(t *testing.T) {
	const id = "k-spin"
	path := "/v1/agent/service/" + id
	fake := registrytest.NewFakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == path {
			w.Header().Set("X-Consul-ContentHash", "same")
			_, _ = w.Write([]byte(`{"ID":"` + id + `","Service":"kept","Address":"127.0.0.1","Port":9000}`))
			return
		}
		registrytest.PlausibleAgent(w, r)
	})
	// An hour's TTL: no heartbeat or reconcile asks for the copy meanwhile.
	k := newKeeper(t, fake.Config(consul.Config{}), registration(id), keeper.WithTTL(time.Hour), keeper.WithReconcileInterval(time.Hour))
	began := time.Now()
	start(t, k)
	// Nothing to wait on when the point is that little happens: a fixed
	// window, and a limit far below what a loop without a pause sends in
	// it (thousands): what the limiter (a burst of 3, then one a second)
	// admits from the keeper's start to the count, however long a loaded
	// machine made that, plus the first poll (sent before the watcher
	// waits on the limiter) and 1 of slack.
	const window = 3 * time.Second
	<-time.After(window)
	n := len(fake.RequestsTo(http.MethodGet, path))
	elapsed := time.Since(began)
	limit := 3 + int(elapsed/time.Second) + 2
	t.Logf("%d long polls of the copy in %v (limit %d)", n, elapsed.Round(time.Millisecond), limit)
	if n == 0 {
		t.Fatal("the watcher never polled the agent's copy")
	}
	if n > limit {
		t.Errorf("%d long polls in %v against an agent that ignores the hash, want at most %d: the watcher spins", n, elapsed, limit)
	}
}
