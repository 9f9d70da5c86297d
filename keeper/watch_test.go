package keeper_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consulkit"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestWatchAgentService: what the keeper's watcher relies on, from both
// backends on a real agent: a read without a hash answers at once with the
// copy's hash; a long poll with it returns when the copy changes, with
// "not found" when it is removed, and with ErrUnavailable the moment the
// agent dies (well before its wait).
func TestWatchAgentService(t *testing.T) {
	for name, b := range map[string]consul.Backend{"consulhttp": consulhttp.Backend, "consulkit": consulkit.Backend} {
		t.Run(name, func(t *testing.T) {
			srv := consultest.NewServer(t)
			reg, err := b(srv.Config())
			if err != nil {
				t.Fatal(err)
			}
			w, ok := reg.(beacon.AgentServiceWatcher)
			if !ok {
				t.Fatalf("%T is no beacon.AgentServiceWatcher", reg)
			}
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			if _, _, err := w.WatchAgentService(ctx, "w-1", "", time.Minute); !errors.Is(err, beacon.ErrNotFound) {
				t.Fatalf("WatchAgentService(unknown) = %v, want ErrNotFound", err)
			}
			r := registration("w-1")
			if err := reg.Register(ctx, r); err != nil {
				t.Fatal(err)
			}
			in, h1, err := w.WatchAgentService(ctx, "w-1", "", time.Minute)
			if err != nil || in.ID != "w-1" || h1 == "" {
				t.Fatalf("WatchAgentService(no hash) = %+v, %q, %v; want w-1 and a hash", in, h1, err)
			}

			type result struct {
				in   beacon.Instance
				hash string
				err  error
			}
			poll := func(hash string) <-chan result {
				ch := make(chan result, 1)
				go func() {
					in, h, err := w.WatchAgentService(ctx, "w-1", hash, 5*time.Minute)
					ch <- result{in, h, err}
				}()
				return ch
			}
			wait := func(ch <-chan result, what string) result {
				t.Helper()
				select {
				case res := <-ch:
					return res
				case <-time.After(deadline):
					t.Fatalf("%s: the long poll did not return", what)
					return result{}
				}
			}

			changed := poll(h1)
			r.Meta = map[string]string{"version": "2"}
			if err := reg.Register(ctx, r); err != nil {
				t.Fatal(err)
			}
			res := wait(changed, "copy changed")
			if res.err != nil || res.hash == h1 || res.in.Meta["version"] != "2" {
				t.Fatalf("long poll after a change = %+v, %q, %v; want version 2 and a hash other than %q", res.in, res.hash, res.err, h1)
			}

			removed := poll(res.hash)
			if err := reg.Deregister(ctx, "w-1"); err != nil {
				t.Fatal(err)
			}
			if res := wait(removed, "copy removed"); !errors.Is(res.err, beacon.ErrNotFound) {
				t.Fatalf("long poll after Deregister = %v, want ErrNotFound", res.err)
			}

			if err := reg.Register(ctx, r); err != nil {
				t.Fatal(err)
			}
			_, h, err := w.WatchAgentService(ctx, "w-1", "", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			died := poll(h)
			srv.Stop()
			if res := wait(died, "agent killed"); !errors.Is(res.err, beacon.ErrUnavailable) {
				t.Fatalf("long poll when the agent died = %v, want ErrUnavailable", res.err)
			}
		})
	}
}

// TestRepairsClientRestartWithoutFailover: a client agent restarts with
// its data dir wiped (the registration lost). With heartbeats every 20
// minutes, only the watcher (its long poll breaks) and the heartbeat's
// retries can bring the instance back; it comes back on that same agent,
// not through the other one configured.
func TestRepairsClientRestartWithoutFailover(t *testing.T) {
	testutil.StressIfAsked(t, 2*time.Minute)
	cl := consultest.NewCluster(t, 1, 1)
	agent, server := cl.Clients[0], cl.Servers[0]
	cfg := cl.Config(agent, server)
	reader := client_(t, server)
	k := newKeeper(t, cfg, registration("k-watch"), slowTicks()...)
	start(t, k)

	agent.Restart(t, false)
	took := testutil.Eventually(t, deadline, "passing again on the restarted agent", func() error {
		for _, in := range instances(reader, false) {
			if in.ID == "k-watch" && in.Node == agent.Name {
				return nil
			}
		}
		return testutil.Want(false, "k-watch not passing on %s", agent.Name)
	})
	t.Logf("restarted agent ready (leader known, node synced) → instance passing: %v", took)
	if st := k.Status(); st.Agent != cfg.Addresses[0] || st.Failovers != 0 {
		t.Errorf("Status() = %+v, want still on %s, no failover", st, cfg.Addresses[0])
	}
	if got := instances(reader, true); len(got) != 1 {
		t.Errorf("Instances(all) = %+v, want one", got)
	}
}
