package keeper_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

// BEACON_STRESS=1: the whole package beside a CPU hog (testutil.StressMain).
func TestMain(m *testing.M) { goleak.VerifyTestMain(testutil.StressMain(m, 15*time.Minute)) }

// deadline bounds every wait: generous for a loaded 2-core machine. How
// fast things happen is logged as a figure, not asserted.
const deadline = 30 * time.Second

func registration(id string) beacon.Registration {
	return beacon.Registration{ID: id, Service: "kept", Address: "127.0.0.1", Port: 9000, Meta: map[string]string{"version": "1"}}
}

func client(t *testing.T, cfg consul.Config) *consulhttp.Client {
	t.Helper()
	c, err := consulhttp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newKeeper(t *testing.T, cfg consul.Config, r beacon.Registration, opts ...keeper.Option) *keeper.Keeper {
	t.Helper()
	k, err := keeper.New(cfg, r, opts...)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		_ = k.Stop(ctx)
	})
	return k
}

func start(t *testing.T, k *keeper.Keeper) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Start(ctx); err != nil {
		t.Fatalf("Start() = %v", err)
	}
}

// instances returns what Consul reports for the "kept" service; errors
// count as "nothing seen yet".
func instances(c beacon.Registry, all bool) []beacon.Instance {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	insts, _, err := c.Instances(ctx, beacon.Query{Service: "kept", IncludeUnhealthy: all})
	if err != nil {
		return nil
	}
	return insts
}

func passing(c beacon.Registry, id string) bool {
	return slices.ContainsFunc(instances(c, false), func(in beacon.Instance) bool { return in.ID == id })
}

func TestStartHeartbeatStop(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	k := newKeeper(t, srv.Config(), registration("k-1"), keeper.WithTTL(time.Second))
	start(t, k)
	if !passing(c, "k-1") {
		t.Fatal("instance not passing right after Start")
	}
	// Several TTLs later it is still passing: the heartbeat works.
	first := k.Status().LastHeartbeat
	testutil.Eventually(t, deadline, "three heartbeats", func() error {
		return testutil.Want(k.Status().LastHeartbeat.Sub(first) >= 900*time.Millisecond, "Status() = %+v", k.Status())
	})
	if !passing(c, "k-1") {
		t.Errorf("instance not passing after several TTLs of heartbeats")
	}
	st := k.Status()
	if !st.Registered || st.Agent != srv.HTTPAddr || st.LastError != nil {
		t.Errorf("Status() = %+v, want registered on %s with no error", st, srv.HTTPAddr)
	}

	ctx := context.Background()
	if err := k.Stop(ctx); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	if got := instances(c, true); len(got) != 0 {
		t.Errorf("after Stop Instances(all) = %+v, want none", got)
	}
	if err := k.Stop(ctx); err != nil {
		t.Errorf("Stop() twice = %v, want nil", err)
	}
	if err := k.Start(ctx); !errors.Is(err, keeper.ErrStopped) {
		t.Errorf("Start() after Stop = %v, want ErrStopped", err)
	}
}

func TestDrainMarksCriticalBeforeDeregistering(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	k := newKeeper(t, srv.Config(), registration("k-drain"), keeper.WithDrainGrace(time.Hour))
	start(t, k)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- k.Stop(ctx) }()
	// During the grace the instance is registered but not passing.
	testutil.Eventually(t, deadline, "draining instance critical", func() error {
		all := instances(c, true)
		return testutil.Want(len(all) == 1 && all[0].Health == beacon.HealthCritical, "registered: %+v", all)
	})
	if passing(c, "k-drain") {
		t.Error("draining instance still in passing results")
	}
	cancel() // cuts the hour-long grace short
	awaitStopped(t, stopped)
	if got := instances(c, true); len(got) != 0 {
		t.Errorf("after Stop Instances(all) = %+v, want none (deregistered even though ctx ended)", got)
	}
}

func TestUpdate(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	k := newKeeper(t, srv.Config(), registration("k-upd"))
	start(t, k)
	r := registration("k-upd")
	r.Meta = map[string]string{"version": "2"}
	r.Tags = []string{"new"}
	if err := k.Update(context.Background(), r); err != nil {
		t.Fatalf("Update() = %v", err)
	}
	got := instances(c, true)
	if len(got) != 1 || got[0].Meta["version"] != "2" || !slices.Equal(got[0].Tags, []string{"new"}) {
		t.Errorf("after Update Instances() = %+v, want one instance with version=2 and tag new", got)
	}
	bad := r
	bad.Meta = map[string]string{"consul-x": "y"}
	if err := k.Update(context.Background(), bad); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("Update(invalid) = %v, want ErrInvalid", err)
	}
	other := registration("another-id")
	if err := k.Update(context.Background(), other); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("Update(other ID) = %v, want ErrInvalid", err)
	}
}

func TestReRegistersAfterAgentRestart(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	k := newKeeper(t, srv.Config(), registration("k-restart"))
	start(t, k)
	srv.Restart(t) // a dev agent: every registration is gone; returns once a leader is elected
	took := testutil.Eventually(t, deadline, "instance passing again after the agent restart", func() error { return testutil.Want(passing(c, "k-restart"), "k-restart not passing") })
	t.Logf("agent restarted (leader elected) → instance passing again: %v (TTL %v, heartbeat every %v)", took, keeper.DefaultTTL, keeper.DefaultTTL/3)
	if got := instances(c, true); len(got) != 1 {
		t.Errorf("after re-registration Instances(all) = %d, want 1", len(got))
	}
}

func TestReconcileRepairsLostRegistration(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	// A TTL far longer than the test: only reconciling can notice the loss.
	k := newKeeper(t, srv.Config(), registration("k-rec"), keeper.WithTTL(time.Hour), keeper.WithReconcileInterval(200*time.Millisecond))
	start(t, k)
	if err := c.Deregister(context.Background(), "k-rec"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, deadline, "reconcile re-registers", func() error { return testutil.Want(passing(c, "k-rec"), "k-rec not passing") })
}

func TestStartGivesUpWhenContextEnds(t *testing.T) {
	cfg := consul.Config{Addresses: []string{"127.0.0.1:1"}, Timeout: time.Second}
	k, err := keeper.New(cfg, registration("k-none"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = k.Start(ctx)
	// The last attempt's error is ErrUnavailable (connection refused) or,
	// when the deadline cut an attempt short, the deadline itself; either
	// way the message names the agent.
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Start() against no agent = %v, want a deadline error naming the agent", err)
	}
	if err := k.Stop(context.Background()); err != nil {
		t.Errorf("Stop() after failed Start = %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	cfg := consul.Config{}
	for name, tc := range map[string]struct {
		r    beacon.Registration
		opts []keeper.Option
	}{
		"bad registration":                {beacon.Registration{ID: "x", Service: "control\ncharacter"}, nil},
		"deregister after below a minute": {registration("x"), []keeper.Option{keeper.WithDeregisterCriticalAfter(30 * time.Second)}},
		"non-positive reconcile interval": {registration("x"), []keeper.Option{keeper.WithReconcileInterval(0)}},
		"TTL too short to heartbeat":      {registration("x"), []keeper.Option{keeper.WithTTL(time.Nanosecond)}},
	} {
		if _, err := keeper.New(cfg, tc.r, tc.opts...); !errors.Is(err, beacon.ErrInvalid) {
			t.Errorf("New(%s) = %v, want ErrInvalid", name, err)
		}
	}
}

func TestHealthFunc(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	health := make(chan beacon.Health, 1)
	health <- beacon.HealthPassing
	current := beacon.HealthPassing
	k := newKeeper(t, srv.Config(), registration("k-health"), keeper.WithTTL(600*time.Millisecond), keeper.WithHealth(func(context.Context) (beacon.Health, string) {
		select {
		case current = <-health:
		default:
		}
		return current, "self-check: " + string(current)
	}))
	start(t, k)
	health <- beacon.HealthWarning
	testutil.Eventually(t, deadline, "warning reported", func() error {
		all := instances(c, true)
		return testutil.Want(len(all) == 1 && all[0].Health == beacon.HealthWarning, "registered: %+v", all)
	})
	health <- beacon.HealthPassing
	testutil.Eventually(t, deadline, "passing again", func() error { return testutil.Want(passing(c, "k-health"), "k-health not passing") })
}

// TestStopDuringStart: a Stop while Start still retries ends the retries;
// nothing keeps running (goleak checks) and Start reports why it ended.
func TestStopDuringStart(t *testing.T) {
	cfg := consul.Config{Addresses: []string{"127.0.0.1:1"}, Timeout: time.Second}
	k, err := keeper.New(cfg, registration("k-race"))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- k.Start(context.Background()) }() // no deadline: only Stop ends it
	stopped := make(chan error, 1)
	go func() { stopped <- k.Stop(context.Background()) }()
	for _, ch := range []chan error{started, stopped} {
		select {
		case <-ch:
		case <-time.After(deadline):
			t.Fatal("Start or Stop did not return")
		}
	}
	if err := k.Update(context.Background(), registration("k-race")); !errors.Is(err, keeper.ErrStopped) {
		t.Errorf("Update() after Stop = %v, want ErrStopped", err)
	}
}

func TestConcurrentStopsAgree(t *testing.T) {
	srv := consultest.NewServer(t)
	k := newKeeper(t, srv.Config(), registration("k-stops"), keeper.WithDrainGrace(200*time.Millisecond))
	start(t, k)
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- k.Stop(context.Background()) }()
	}
	c := client(t, srv.Config())
	for range 3 {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("Stop() = %v", err)
			}
			// Whichever Stop returns, the instance is already gone.
			if got := instances(c, true); len(got) != 0 {
				t.Errorf("after a Stop returned, Instances(all) = %+v, want none", got)
			}
		case <-time.After(deadline):
			t.Fatal("Stop did not return")
		}
	}
}

// TestNameDNSCannotServe: a name Consul accepts but its DNS cannot serve is
// accepted, with one warning, from New, saying so; a DNS label gets none.
// On an agent (below) such a name is registered and found.
func TestNameDNSCannotServe(t *testing.T) {
	for _, svc := range []string{"legacy_svc", "api.v2", "kept"} {
		logs := &testutil.Buffer{}
		r := registration("k-dns")
		r.Service = svc
		k, err := keeper.New(consul.Config{}, r, keeper.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
		if err != nil {
			t.Errorf("New(Service %q) = %v, want it accepted", svc, err)
			continue
		}
		_ = k.Stop(context.Background())
		want := 1
		if svc == "kept" {
			want = 0
		}
		if got := strings.Count(logs.String(), "Consul DNS will not find"); got != want {
			t.Errorf("New(Service %q) logged the DNS warning %d times, want %d:\n%s", svc, got, want, logs)
		}
	}
}

func TestNameDNSCannotServeOnAnAgent(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	r := registration("k-legacy")
	r.Service = "legacy_svc"
	k := newKeeper(t, srv.Config(), r)
	start(t, k)
	got, _, err := c.Instances(context.Background(), beacon.Query{Service: "legacy_svc"})
	if err != nil || len(got) != 1 || got[0].ID != "k-legacy" {
		t.Errorf("Instances(legacy_svc) = %+v, %v; want k-legacy passing", got, err)
	}
}

// awaitStopped waits for a Stop whose context was cancelled to return nil.
func awaitStopped(t *testing.T, stopped <-chan error) {
	t.Helper()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Stop() = %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("Stop did not return when its context ended")
	}
}
