package grpcresolver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/grpcresolver"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// deadline bounds every wait: generous for a loaded machine. Nothing about
// speed is asserted.
const deadline = 30 * time.Second

const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

func newCache(t *testing.T, cfg consul.Config, opts ...discovery.Option) *discovery.Cache {
	t.Helper()
	c, err := discovery.New(cfg, opts...)
	if err != nil {
		t.Fatalf("discovery.New() = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// greeter is a gRPC server offering the standard health service and
// counting the RPCs it serves.
type greeter struct {
	port  int
	calls atomic.Int64
}

func startGreeter(t *testing.T) *greeter {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &greeter{port: lis.Addr().(*net.TCPAddr).Port}
	count := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		g.calls.Add(1)
		return h(ctx, req)
	}
	s := grpc.NewServer(grpc.UnaryInterceptor(count))
	healthpb.RegisterHealthServer(s, health.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-served
	})
	return g
}

// keep registers g as instance id of "greeter" through a keeper.
func keep(t *testing.T, cfg consul.Config, id string, g *greeter) *keeper.Keeper {
	t.Helper()
	k, err := keeper.New(cfg, beacon.Registration{ID: id, Service: "greeter", Address: "127.0.0.1", Port: g.port})
	if err != nil {
		t.Fatalf("keeper.New(%q) = %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		_ = k.Stop(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Start(ctx); err != nil {
		t.Fatalf("Start(%q) = %v", id, err)
	}
	return k
}

func dial(t *testing.T, target string, b resolver.Builder) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target,
		grpc.WithResolvers(b),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(roundRobin))
	if err != nil {
		t.Fatalf("grpc.NewClient(%q) = %v", target, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func check(t *testing.T, c healthpb.HealthClient, opts ...grpc.CallOption) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{}, opts...)
	if err != nil {
		t.Fatalf("Check() = %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check() status = %v, want SERVING", resp.GetStatus())
	}
}

func TestRoundRobinFollowsConsul(t *testing.T) {
	srv := consultest.NewServer(t)
	a, b := startGreeter(t), startGreeter(t)
	ka := keep(t, srv.Config(), "greeter-a", a)
	keep(t, srv.Config(), "greeter-b", b)
	cache := newCache(t, srv.Config())
	conn := dial(t, "consul:///greeter", grpcresolver.NewBuilder(cache))
	hc := healthpb.NewHealthClient(conn)

	check(t, hc, grpc.WaitForReady(true))
	// Round robin only picks connected servers: call until both have answered.
	start := time.Now()
	for a.calls.Load() == 0 || b.calls.Load() == 0 {
		if time.Since(start) > deadline {
			t.Fatalf("calls a=%d b=%d: both servers not reached within %v", a.calls.Load(), b.calls.Load(), deadline)
		}
		check(t, hc, grpc.WaitForReady(true))
	}
	a.calls.Store(0)
	b.calls.Store(0)
	for range 20 {
		check(t, hc)
	}
	if a.calls.Load() == 0 || b.calls.Load() == 0 {
		t.Fatalf("20 RPCs: a=%d b=%d, want both servers used", a.calls.Load(), b.calls.Load())
	}
	t.Logf("20 RPCs: a=%d b=%d", a.calls.Load(), b.calls.Load())

	// Stopping a's keeper drains it (critical, then deregistered): the
	// resolver drops it and every RPC goes to b, though a still serves.
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := ka.Stop(ctx); err != nil {
		t.Fatalf("Stop(greeter-a) = %v", err)
	}
	start = time.Now()
	for batches := 1; ; batches++ {
		a.calls.Store(0)
		b.calls.Store(0)
		for range 20 {
			check(t, hc)
		}
		if a.calls.Load() == 0 && b.calls.Load() == 20 {
			t.Logf("after Stop: a batch of 20 all on b after %d batches, %v", batches, time.Since(start))
			break
		}
		if time.Since(start) > deadline {
			t.Fatalf("after Stop: a=%d b=%d of 20 RPCs, want all on b within %v", a.calls.Load(), b.calls.Load(), deadline)
		}
	}
}

// fakeCC records what a resolver pushes. It embeds the interface so that
// methods grpc adds later need no change here.
type fakeCC struct {
	resolver.ClientConn
	states chan resolver.State
	errs   chan error
}

func newFakeCC() *fakeCC {
	return &fakeCC{states: make(chan resolver.State, 100), errs: make(chan error, 100)}
}

func (f *fakeCC) UpdateState(s resolver.State) error {
	f.states <- s
	return nil
}

func (f *fakeCC) ReportError(err error) { f.errs <- err }

func (f *fakeCC) nextState(t *testing.T) resolver.State {
	t.Helper()
	select {
	case s := <-f.states:
		return s
	case err := <-f.errs:
		t.Fatalf("ReportError(%v), want UpdateState", err)
	case <-time.After(deadline):
		t.Fatalf("no UpdateState within %v", deadline)
	}
	return resolver.State{}
}

// quiet fails if the resolver pushed or reported anything not yet consumed.
func (f *fakeCC) quiet(t *testing.T, when string) {
	t.Helper()
	select {
	case s := <-f.states:
		t.Fatalf("%s: UpdateState(%v), want nothing pushed", when, s.Addresses)
	case err := <-f.errs:
		t.Fatalf("%s: ReportError(%v), want nothing reported", when, err)
	default:
	}
}

func addrs(s resolver.State) []string {
	var out []string
	for _, a := range s.Addresses {
		out = append(out, a.Addr)
	}
	return out
}

// logRecorder keeps every record logged through it, so that a test can
// wait until the resolver has seen a snapshot it chose not to push.
type logRecorder struct {
	attrs []slog.Attr
	*logs
}

type logs struct {
	mu      sync.Mutex
	records []loggedRecord
	changed chan struct{}
}

type loggedRecord struct {
	msg   string
	attrs map[string]slog.Value
}

func newLogRecorder() *logRecorder {
	return &logRecorder{logs: &logs{changed: make(chan struct{}, 1)}}
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := loggedRecord{msg: r.Message, attrs: map[string]slog.Value{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value
		return true
	})
	h.mu.Lock()
	h.records = append(h.records, rec)
	h.mu.Unlock()
	select {
	case h.changed <- struct{}{}:
	default:
	}
	return nil
}

func (h *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &logRecorder{attrs: append(append([]slog.Attr(nil), h.attrs...), as...), logs: h.logs}
}

func (h *logRecorder) WithGroup(string) slog.Handler { return h }

// waitForSkip waits until a record satisfies match, failing at once if cc
// is pushed or reported anything meanwhile: match describes a snapshot the
// resolver saw and chose to keep quiet about.
func (h *logRecorder) waitForSkip(t *testing.T, cc *fakeCC, what string, match func(loggedRecord) bool) {
	t.Helper()
	end := time.After(deadline)
	for seen := 0; ; {
		h.mu.Lock()
		recs := h.records[seen:]
		seen = len(h.records)
		h.mu.Unlock()
		for _, r := range recs {
			if match(r) {
				return
			}
		}
		select {
		case <-h.changed:
		case st := <-cc.states:
			t.Fatalf("waiting for %s: UpdateState(%v), want nothing pushed", what, st.Addresses)
		case err := <-cc.errs:
			t.Fatalf("waiting for %s: ReportError(%v), want nothing reported", what, err)
		case <-end:
			t.Fatalf("%s: not logged within %v", what, deadline)
		}
	}
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

func register(t *testing.T, r beacon.Registry, id string, port int, version string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	err := r.Register(ctx, beacon.Registration{
		ID: id, Service: "greeter", Address: "127.0.0.1", Port: port,
		Meta:   map[string]string{"version": version},
		Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthPassing}},
	})
	if err != nil {
		t.Fatalf("Register(%q) = %v", id, err)
	}
}

func build(t *testing.T, b resolver.Builder, target string, cc resolver.ClientConn) resolver.Resolver {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatalf("Build(%q) = %v", target, err)
	}
	t.Cleanup(r.Close)
	return r
}

func TestUnchangedSetIsNotPushedAndEmptyIs(t *testing.T) {
	srv := consultest.NewServer(t)
	reg := registry(t, srv.Config())
	register(t, reg, "g-1", 9001, "1")
	cache := newCache(t, srv.Config())
	logs := newLogRecorder()
	cc := newFakeCC()
	build(t, grpcresolver.NewBuilder(cache, grpcresolver.WithLogger(slog.New(logs))), "consul:///greeter", cc)

	s := cc.nextState(t)
	if got := addrs(s); len(got) != 1 || got[0] != "127.0.0.1:9001" {
		t.Fatalf("first UpdateState addresses = %v, want [127.0.0.1:9001]", got)
	}
	if len(s.Endpoints) != 1 {
		t.Fatalf("first UpdateState endpoints = %v, want one", s.Endpoints)
	}
	if k, ok := grpcresolver.InstanceKeyOf(s.Endpoints[0]); !ok || k.ID != "g-1" || k.Node == "" {
		t.Errorf("InstanceKeyOf(endpoint) = %+v, %v; want ID g-1 on a node", k, ok)
	}

	// New metadata changes the watch's snapshot but not the address set.
	w, err := cache.Watch(beacon.Query{Service: "greeter"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	register(t, reg, "g-1", 9001, "2")
	var index uint64
	for end := time.After(deadline); index == 0; {
		if snap := w.Snapshot(); snap != nil && len(snap.Instances) == 1 && snap.Instances[0].Meta["version"] == "2" {
			index = snap.Index
			continue
		}
		select {
		case <-w.Changed():
		case <-end:
			t.Fatalf("meta change not seen within %v", deadline)
		}
	}
	logs.waitForSkip(t, cc, "the resolver skipping the meta-only snapshot", func(r loggedRecord) bool {
		return strings.Contains(r.msg, "unchanged") && r.attrs["index"].Uint64() >= index
	})
	cc.quiet(t, "after a meta-only change")

	// Scale to zero is pushed: an empty set.
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := reg.Deregister(ctx, "g-1"); err != nil {
		t.Fatal(err)
	}
	if got := addrs(cc.nextState(t)); len(got) != 0 {
		t.Fatalf("after deregistering UpdateState addresses = %v, want none", got)
	}

	register(t, reg, "g-2", 9002, "1")
	if got := addrs(cc.nextState(t)); len(got) != 1 || got[0] != "127.0.0.1:9002" {
		t.Fatalf("after registering g-2 UpdateState addresses = %v, want [127.0.0.1:9002]", got)
	}
}

func TestTagsSelect(t *testing.T) {
	srv := consultest.NewServer(t)
	reg := registry(t, srv.Config())
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for i, tags := range [][]string{{"a"}, {"a", "b"}, {"b"}} {
		err := reg.Register(ctx, beacon.Registration{
			ID: fmt.Sprint("t-", i), Service: "greeter", Address: "127.0.0.1", Port: 9100 + i, Tags: tags,
			Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthPassing}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	cache := newCache(t, srv.Config())
	cc := newFakeCC()
	build(t, grpcresolver.NewBuilder(cache), "consul://ignored.example/greeter?tag=a&tag=b", cc)
	if got := addrs(cc.nextState(t)); len(got) != 1 || got[0] != "127.0.0.1:9101" {
		t.Errorf("tags a and b: UpdateState addresses = %v, want [127.0.0.1:9101]", got)
	}
}

func TestErrorReportedUntilConsulAnswers(t *testing.T) {
	// A port nothing listens on: the first lookup fails at once.
	addr := testutil.ClosedAddr(t)
	cache := newCache(t, consul.Config{Addresses: []string{addr}})
	cc := newFakeCC()
	build(t, grpcresolver.NewBuilder(cache), "consul:///greeter", cc)
	select {
	case err := <-cc.errs:
		if !errors.Is(err, beacon.ErrUnavailable) {
			t.Errorf("ReportError(%v), want an error matching beacon.ErrUnavailable", err)
		}
	case s := <-cc.states:
		t.Fatalf("UpdateState(%v), want ReportError", s.Addresses)
	case <-time.After(deadline):
		t.Fatalf("no ReportError within %v", deadline)
	}
}

func TestLastAddressesKeptWhenConsulFails(t *testing.T) {
	srv := consultest.NewServer(t)
	register(t, registry(t, srv.Config()), "g-1", 9001, "1")
	cache := newCache(t, srv.Config())
	logs := newLogRecorder()
	cc := newFakeCC()
	build(t, grpcresolver.NewBuilder(cache, grpcresolver.WithLogger(slog.New(logs))), "consul:///greeter", cc)
	if got := addrs(cc.nextState(t)); len(got) != 1 {
		t.Fatalf("UpdateState addresses = %v, want one", got)
	}

	srv.Stop()
	logs.waitForSkip(t, cc, "the resolver keeping its addresses", func(r loggedRecord) bool {
		return strings.Contains(r.msg, "keeping the last addresses")
	})
	cc.quiet(t, "after Consul stopped")
}

func TestBuildRejectsBadTargets(t *testing.T) {
	// Nothing listens here; a bad target never gets as far as a lookup.
	cache := newCache(t, consul.Config{Addresses: []string{"127.0.0.1:1"}})
	b := grpcresolver.NewBuilder(cache)
	if b.Scheme() != grpcresolver.Scheme {
		t.Errorf("Scheme() = %q, want %q", b.Scheme(), grpcresolver.Scheme)
	}
	for _, target := range []string{
		"consul:///",
		"consul:///" + strings.Repeat("a", 513), // over Consul's limit
		"consul:///a%01b",                       // a control character
		"consul:///greeter/extra",
		"consul:///greeter?tag=",
		"consul:///greeter?tag=a&tag=",
		"consul:///greeter?tags=a",
		"consul:///greeter?tag=%zz",
	} {
		t.Run(target, func(t *testing.T) {
			u, err := url.Parse(target)
			if err != nil {
				// Some targets are too broken for net/url; gRPC would refuse them itself.
				t.Skipf("url.Parse(%q) = %v", target, err)
			}
			r, err := b.Build(resolver.Target{URL: *u}, newFakeCC(), resolver.BuildOptions{})
			if err == nil {
				r.Close()
				t.Fatalf("Build(%q) = nil error, want one", target)
			}
			if !errors.Is(err, beacon.ErrInvalid) {
				t.Errorf("Build(%q) = %v, want an error matching beacon.ErrInvalid", target, err)
			}
		})
	}
}

func TestBuildAfterCacheClosed(t *testing.T) {
	cache := newCache(t, consul.Config{Addresses: []string{"127.0.0.1:1"}})
	cache.Close()
	u, _ := url.Parse("consul:///greeter")
	_, err := grpcresolver.NewBuilder(cache).Build(resolver.Target{URL: *u}, newFakeCC(), resolver.BuildOptions{})
	if !errors.Is(err, discovery.ErrClosed) {
		t.Errorf("Build() on a closed cache = %v, want discovery.ErrClosed", err)
	}
}

func TestCloseTwice(t *testing.T) {
	cache := newCache(t, consul.Config{Addresses: []string{"127.0.0.1:1"}})
	u, _ := url.Parse("consul:///greeter")
	r, err := grpcresolver.NewBuilder(cache).Build(resolver.Target{URL: *u}, newFakeCC(), resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.ResolveNow(resolver.ResolveNowOptions{})
	r.Close()
	r.Close()
}

// consul:///NAME.query.consul follows the prepared query NAME.
func TestPreparedQueryTarget(t *testing.T) {
	srv := consultest.NewServer(t)
	reg := registry(t, srv.Config())
	register(t, reg, "g-1", 9001, "1")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := reg.CreateQuery(ctx, beacon.PreparedQuery{Name: "greeter-q", Service: "greeter"}); err != nil {
		t.Fatalf("CreateQuery() = %v", err)
	}
	cache := newCache(t, srv.Config())
	cc := newFakeCC()
	build(t, grpcresolver.NewBuilder(cache), "consul:///greeter-q.query.consul", cc)
	if got := addrs(cc.nextState(t)); len(got) != 1 || got[0] != "127.0.0.1:9001" {
		t.Fatalf("UpdateState addresses = %v, want [127.0.0.1:9001]", got)
	}
	u, _ := url.Parse("consul:///greeter-q.query.consul?tag=a")
	if _, err := grpcresolver.NewBuilder(cache).Build(resolver.Target{URL: *u}, newFakeCC(), resolver.BuildOptions{}); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("Build(a prepared query with a tag) = %v, want ErrInvalid", err)
	}
}
