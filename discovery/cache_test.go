package discovery_test

import (
	"context"
	"errors"
	"hash/fnv"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/internal/testutil"
)

// BEACON_STRESS=1: the whole package beside a CPU hog (testutil.StressMain).
func TestMain(m *testing.M) { goleak.VerifyTestMain(testutil.StressMain(m, 15*time.Minute)) }

// deadline bounds every wait; figures are logged, not asserted.
const deadline = 30 * time.Second

func newCache(t *testing.T, cfg consul.Config, opts ...discovery.Option) *discovery.Cache {
	t.Helper()
	c, err := discovery.New(cfg, opts...)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func registry(t *testing.T, cfg consul.Config) *consulhttp.Client {
	t.Helper()
	r, err := consulhttp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func register(t *testing.T, r beacon.Registry, id, service string, status beacon.Health) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	err := r.Register(ctx, beacon.Registration{
		ID: id, Service: service, Address: "127.0.0.1", Port: testPort(id),
		Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: status}},
	})
	if err != nil {
		t.Fatalf("Register(%q) = %v", id, err)
	}
}

// testPort gives each test instance a port of its own: discovery offers
// one entry per address and port, so instances sharing one would be copies.
func testPort(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return 9000 + int(h.Sum32()%20000)
}

// next waits for the watcher's next change and returns the snapshot.
func next(t *testing.T, w *discovery.Watcher) *discovery.Snapshot {
	t.Helper()
	select {
	case <-w.Changed():
		return w.Snapshot()
	case <-time.After(deadline):
		t.Fatalf("no change within %v", deadline)
		return nil
	}
}

// until waits for changes until cond holds for the snapshot.
func until(t *testing.T, w *discovery.Watcher, what string, cond func(*discovery.Snapshot) bool) *discovery.Snapshot {
	t.Helper()
	end := time.After(deadline)
	for {
		if s := w.Snapshot(); s != nil && cond(s) {
			return s
		}
		select {
		case <-w.Changed():
		case <-end:
			t.Fatalf("%s: not within %v (last snapshot %+v)", what, deadline, w.Snapshot())
		}
	}
}

func ids(s *discovery.Snapshot) []string {
	var out []string
	for _, in := range s.Instances {
		out = append(out, in.ID)
	}
	slices.Sort(out)
	return out
}

func TestWatchFollowsChangesAndScaleToZero(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	register(t, r, "a", "web", beacon.HealthPassing)
	c := newCache(t, srv.Config())

	w, err := c.Watch(beacon.Query{Service: "web"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	s, err := w.Wait(ctx)
	if err != nil || !slices.Equal(ids(s), []string{"a"}) {
		t.Fatalf("Wait() = %v, %v; want [a]", s, err)
	}

	register(t, r, "b", "web", beacon.HealthPassing)
	until(t, w, "b appears", func(s *discovery.Snapshot) bool { return slices.Equal(ids(s), []string{"a", "b"}) })
	register(t, r, "c", "web", beacon.HealthCritical)
	// A critical instance is not published: nothing changes for passing-only.
	for _, id := range []string{"a", "b", "c"} {
		if err := r.Deregister(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	s = until(t, w, "scale to zero", func(s *discovery.Snapshot) bool { return len(s.Instances) == 0 })
	if s.Err != nil {
		t.Errorf("empty snapshot carries error %v, want nil (an empty answer is an answer)", s.Err)
	}
	if _, err := c.Pick(ctx, "web", balancer.NewRoundRobin()); !errors.Is(err, beacon.ErrNoInstances) {
		t.Errorf("Pick() after scale to zero = %v, want ErrNoInstances", err)
	}
}

func TestWatchesAreShared(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	register(t, r, "a", "shared", beacon.HealthPassing)
	c := newCache(t, srv.Config())
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	w1, _ := c.Watch(beacon.Query{Service: "shared"})
	w2, _ := c.Watch(beacon.Query{Service: "shared"})
	s1, _ := w1.Wait(ctx)
	s2, _ := w2.Wait(ctx)
	if s1 != s2 {
		t.Errorf("two watchers of one query hold different snapshots: one loop should serve both")
	}
	w1.Close()
	register(t, r, "b", "shared", beacon.HealthPassing)
	until(t, w2, "the remaining watcher still sees changes", func(s *discovery.Snapshot) bool { return len(s.Instances) == 2 })
	w2.Close()
	w2.Close() // twice is safe
}

func TestNoPassingPolicy(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	register(t, r, "warn-1", "svc", beacon.HealthWarning)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	strict := newCache(t, srv.Config())
	insts, err := strict.Instances(ctx, "svc")
	if err != nil || len(insts) != 0 {
		t.Errorf("default policy Instances() = %+v, %v; want none", insts, err)
	}
	lenient := newCache(t, srv.Config(), discovery.WithNoPassingPolicy(discovery.FallBackToWarning))
	insts, err = lenient.Instances(ctx, "svc")
	if err != nil || len(insts) != 1 || insts[0].Health != beacon.HealthWarning {
		t.Errorf("fallback policy Instances() = %+v, %v; want the warning instance", insts, err)
	}
	register(t, r, "pass-1", "svc", beacon.HealthPassing)
	w, _ := lenient.Watch(beacon.Query{Service: "svc"})
	defer w.Close()
	until(t, w, "passing instance preferred", func(s *discovery.Snapshot) bool { return slices.Equal(ids(s), []string{"pass-1"}) })
}

// TestOutage: the agent dies for a while under continuous picks; no pick
// fails, the snapshot shows its age and error; a fresh agent comes up (a
// dev agent: empty, its index starts low again), the instances register
// again, and the cache converges.
func TestCloseStopsEverything(t *testing.T) {
	srv := consultest.NewServer(t)
	c := newCache(t, srv.Config())
	for _, svc := range []string{"x", "y", "z"} {
		if _, err := c.Watch(beacon.Query{Service: svc}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatal("Close did not stop watches blocked in long polls")
	}
	if _, err := c.Watch(beacon.Query{Service: "x"}); !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Watch() after Close = %v, want ErrClosed", err)
	}
}

func TestPinnedWatchesAreBounded(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	c := newCache(t, srv.Config(), discovery.WithMaxPinned(2))
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for _, svc := range []string{"s1", "s2", "s3", "s1"} {
		register(t, r, svc+"-1", svc, beacon.HealthPassing)
		insts, err := c.Instances(ctx, svc)
		if err != nil || len(insts) != 1 {
			t.Errorf("Instances(%q) = %d, %v; want 1 (evicted watches come back on demand)", svc, len(insts), err)
		}
		if n := c.Watching(); n > 2 {
			t.Errorf("after Instances(%q) Watching() = %d, want at most 2", svc, n)
		}
	}
}

// TestSnapshotFile: a process that saw a service writes its snapshot; the
// next one, started while Consul is unreachable, serves it, stale and aged.
func TestSnapshotFile(t *testing.T) {
	path := t.TempDir() + "/snapshots.json"
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	register(t, r, "a", "saved", beacon.HealthPassing)
	register(t, r, "b", "saved", beacon.HealthPassing)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	first, err := discovery.New(srv.Config(), discovery.WithSnapshotFile(path))
	if err != nil {
		t.Fatal(err)
	}
	if insts, err := first.Instances(ctx, "saved"); err != nil || len(insts) != 2 {
		t.Fatalf("Instances() = %d, %v; want 2", len(insts), err)
	}
	first.Close() // writes the file
	srv.Stop()

	second := newCache(t, srv.Config(), discovery.WithSnapshotFile(path))
	s, err := second.Snapshot(ctx, "saved")
	if err != nil {
		t.Fatalf("Snapshot() with Consul down and a saved file = %v", err)
	}
	if len(s.Instances) != 2 || s.Err == nil || !errors.Is(s.Err, beacon.ErrUnavailable) || s.Age() <= 0 {
		t.Errorf("Snapshot() = %d instances, err %v, age %v; want the 2 saved ones, stale, with an age", len(s.Instances), s.Err, s.Age())
	}
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := second.Snapshot(short, "never-saved"); err == nil {
		t.Error("Snapshot(never-saved) with Consul down = nil error, want one")
	}
}

func TestNewRefusesTooFewConns(t *testing.T) {
	cfg := consul.Config{Addresses: []string{"127.0.0.1:1"}, MaxConns: 14}
	c, err := discovery.New(cfg, discovery.WithMaxLongPolls(8))
	var ve *beacon.ValidationError
	if !errors.As(err, &ve) || ve.Field != "MaxConns" {
		if c != nil {
			c.Close()
		}
		t.Fatalf("New(MaxConns 14, 8 long polls) error = %v, want a ValidationError on MaxConns", err)
	}
	c, err = discovery.New(cfg, discovery.WithMaxLongPolls(2))
	if err != nil {
		t.Fatalf("New(MaxConns 14, 2 long polls) = %v, want nil", err)
	}
	c.Close()
}

// A service draining to none is followed at once, whatever the rate
// limit: an answer that lost passing instances lets the next query skip
// the limiter (here one query an hour past a burst of 2, with the hot
// threshold off so that every query would wait on it). Failover waits on
// that last answer.
func TestDrainIsNotRateLimited(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	for _, id := range []string{"d-1", "d-2", "d-3"} {
		register(t, r, id, "drain", beacon.HealthPassing)
	}
	c := newCache(t, srv.Config(), discovery.WithRateLimit(time.Hour, 2), discovery.WithHotThreshold(0, 0), discovery.WithStaleBound(0)) // the guard would repair a watch held back this long
	w, err := c.Watch(beacon.Query{Service: "drain"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	until(t, w, "three passing", func(s *discovery.Snapshot) bool { return len(s.Instances) == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for i, id := range []string{"d-1", "d-2", "d-3"} {
		if err := r.UpdateTTL(ctx, "service:"+id, beacon.HealthCritical, ""); err != nil {
			t.Fatal(err)
		}
		until(t, w, id+" gone", func(s *discovery.Snapshot) bool { return len(s.Instances) == 2-i })
	}
}
