package consulkit_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/lb"
	"github.com/go-kit/log"
	"go.uber.org/goleak"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulkit"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/registrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const deadline = 30 * time.Second

func newClient(t *testing.T, cfg consul.Config) *consulkit.Client {
	t.Helper()
	c, err := consulkit.New(cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ttlReg(id string, port int) beacon.Registration {
	return beacon.Registration{
		ID: id, Service: "kitsvc", Address: "127.0.0.1", Port: port,
		Checks: []beacon.Check{{TTL: time.Minute, InitialStatus: beacon.HealthPassing}},
	}
}

func TestInstancerFeedsGoKitEndpointer(t *testing.T) {
	srv := consultest.NewServer(t)
	c := newClient(t, srv.Config())
	ctx := context.Background()
	for i, id := range []string{"k1", "k2"} {
		if err := c.Register(ctx, ttlReg(id, 9001+i)); err != nil {
			t.Fatal(err)
		}
	}
	inst := consulkit.NewInstancer(c, beacon.Query{Service: "kitsvc"}, log.NewNopLogger())
	defer inst.Stop()

	factory := func(instance string) (endpoint.Endpoint, io.Closer, error) {
		return func(context.Context, any) (any, error) { return instance, nil }, nil, nil
	}
	endpointer := sd.NewEndpointer(inst, factory, log.NewNopLogger())
	defer endpointer.Close()
	balancer := lb.NewRoundRobin(endpointer)

	// The Endpointer updates its endpoints on a goroutine of its own and
	// says nothing when it has: polled.
	testutil.Eventually(t, deadline, "two endpoints", func() error {
		eps, err := endpointer.Endpoints()
		return testutil.Want(len(eps) == 2, "%d endpoints (%v)", len(eps), err)
	})
	var seen []string
	for range 2 {
		e, err := balancer.Endpoint()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := e(ctx, nil)
		seen = append(seen, got.(string))
	}
	slices.Sort(seen)
	if want := []string{"127.0.0.1:9001", "127.0.0.1:9002"}; !slices.Equal(seen, want) {
		t.Errorf("round robin over the Instancer = %q, want %q", seen, want)
	}

	if err := c.Deregister(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, deadline, "one endpoint after deregister", func() error {
		eps, err := endpointer.Endpoints()
		return testutil.Want(len(eps) == 1, "%d endpoints (%v)", len(eps), err)
	})
}

// TestInstancerStopCancelsInFlightQuery needs no agent: registrytest's
// Memory answers the first lookup, and its fault hook holds the next one,
// the blocking query, until its context ends, reporting when it started
// and how it ended. (That consulkit.Client's own calls end with their
// context is registrytest.Run's Blocking group.)
func TestInstancerStopCancelsInFlightQuery(t *testing.T) {
	m := registrytest.NewMemory()
	started, ended := make(chan struct{}, 1), make(chan error, 1)
	lookups := 0 // only the Instancer's goroutine touches it
	m.SetFault(func(ctx context.Context, op registrytest.Op, _ string) error {
		if op != registrytest.OpInstances {
			return nil
		}
		if lookups++; lookups == 1 {
			return nil
		}
		started <- struct{}{}
		<-ctx.Done()
		ended <- ctx.Err()
		return ctx.Err()
	})
	inst := consulkit.NewInstancer(m, beacon.Query{Service: "nothing-here"}, log.NewNopLogger())
	select {
	case <-started: // a 5-minute blocking query is in flight
	case <-time.After(deadline):
		t.Fatal("the Instancer never sent a blocking query")
	}
	stopped := make(chan struct{})
	go func() { inst.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(deadline):
		t.Fatal("Stop did not return: the in-flight blocking query was not cancelled")
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the in-flight blocking query ended with %v, want context.Canceled", err)
		}
	default:
		t.Error("Stop returned while the blocking query was still in flight")
	}
	inst.Stop() // twice is safe
}

func TestRegistrar(t *testing.T) {
	srv := consultest.NewServer(t)
	c := newClient(t, srv.Config())
	if _, err := c.Registrar(beacon.Registration{ID: "x", Service: "bad\x00name"}, log.NewNopLogger()); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("Registrar(invalid) = %v, want ErrInvalid", err)
	}
	h2c := beacon.Registration{ID: "h2c", Service: "kitsvc", Checks: []beacon.Check{{H2PING: "127.0.0.1:8080", Interval: time.Second}}}
	if _, err := c.Registrar(h2c, log.NewNopLogger()); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("Registrar(cleartext H2PING) = %v, want ErrInvalid: go-kit would send it as TLS", err)
	}
	r, err := c.Registrar(ttlReg("r1", 9100), log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	r.Register()
	ctx := context.Background()
	insts, _, err := c.Instances(ctx, beacon.Query{Service: "kitsvc"})
	if err != nil || len(insts) != 1 || insts[0].ID != "r1" {
		t.Errorf("after Registrar.Register Instances() = %+v, %v; want r1", insts, err)
	}
	r.Deregister()
	insts, _, err = c.Instances(ctx, beacon.Query{Service: "kitsvc", IncludeUnhealthy: true})
	if err != nil || len(insts) != 0 {
		t.Errorf("after Registrar.Deregister Instances() = %+v, %v; want none", insts, err)
	}
}
