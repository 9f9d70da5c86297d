package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/httpclient"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

const (
	service = "SayHello"
	// deadline bounds every wait whose pass criterion is "eventually": a
	// generous bound for a shared 2-core machine. Measured figures are
	// reported separately.
	deadline = 30 * time.Second
	// callTimeout bounds one call; a call that takes longer fails.
	callTimeout = 5 * time.Second
)

// faultsMode is `make faults`: full-length outages.
var faultsMode = os.Getenv("BEACON_FAULTS") != ""

// hogLimit bounds a stressed scenario's CPU hog: longer than any scenario
// runs with 30-second outages on a busy machine.
const hogLimit = 5 * time.Minute

// outage is how long a node stays down: 30 s for `make faults`, 5 s in
// `make test`.
func outage() time.Duration {
	if faultsMode {
		return 30 * time.Second
	}
	return 5 * time.Second
}

// env is one scenario's world: a cluster, the instances, the callers, and
// everything the Beacon components log and send.
type env struct {
	t    *testing.T
	c    *consultest.Cluster
	logs *logSink
	reqs *counter
}

func newEnv(t *testing.T, servers, clients int) *env {
	t.Helper()
	e := &env{t: t, logs: &logSink{}, reqs: &counter{}}
	start := time.Now()
	// Short node names for the report; each cluster has its own addresses.
	e.c = consultest.NewCluster(t, servers, clients, consultest.WithNodeName("faults"))
	t.Logf("cluster of %d servers and %d clients ready in %v", servers, clients, time.Since(start).Round(time.Millisecond))
	// BEACON_STRESS=1: the scenario runs beside a CPU hog, started once
	// the cluster is up (a busy machine, not a slow start, is the fault)
	// and killed when the test ends, before the cluster.
	testutil.StressIfAsked(t, hogLimit)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Beacon log (last 200 lines):\n%s", e.logs.tail(200))
		}
	})
	return e
}

func (e *env) logger(component string) *slog.Logger {
	return slog.New(sinkHandler{slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}), e.logs}).With("c", component)
}

// cfg lists the agents' HTTP addresses in order of preference.
func cfg(nodes ...*consultest.Node) consul.Config {
	var c consul.Config
	for _, n := range nodes {
		c.Addresses = append(c.Addresses, n.HTTPAddr)
	}
	return c
}

// ---- SayHello instances ----

// instance is a SayHello instance in this process: an HTTP server that
// answers /sayHello with its ID and a keeper that registers it through its
// agents, stopped the way cmd/sayhello stops (drain, deregister, then let
// in-flight requests finish).
type instance struct {
	e      *env
	id     string
	addr   string // 127.0.0.1:port, kept across restarts
	agents consul.Config

	mu      sync.Mutex
	srv     *http.Server
	served  chan error
	k       *keeper.Keeper
	running bool
}

// startInstance listens, then registers (listen first, so Consul never
// lists an instance that refuses connections), and is stopped at cleanup.
func (e *env) startInstance(id string, agents ...*consultest.Node) *instance {
	e.t.Helper()
	in := e.newInstance(id, agents...)
	if err := in.start(deadline); err != nil {
		e.t.Fatalf("starting instance %s: %v", id, err)
	}
	return in
}

// newInstance returns an instance that is not started yet; it is stopped
// at cleanup.
func (e *env) newInstance(id string, agents ...*consultest.Node) *instance {
	in := &instance{e: e, id: id, addr: "127.0.0.1:0", agents: cfg(agents...)}
	e.t.Cleanup(func() { _ = in.stop() })
	return in
}

// start serves and registers, giving the keeper's Start up to timeout.
func (in *instance) start(timeout time.Duration) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	ln, err := net.Listen("tcp", in.addr)
	if err != nil {
		return err
	}
	in.addr = ln.Addr().String()
	_, portStr, _ := net.SplitHostPort(in.addr)
	port, _ := strconv.Atoi(portStr)
	mux := http.NewServeMux()
	body := []byte("Hello from " + in.id + "!")
	mux.HandleFunc("/sayHello", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) })
	in.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	in.served = make(chan error, 1)
	go func(srv *http.Server, ch chan error) { ch <- srv.Serve(ln) }(in.srv, in.served)

	in.k, err = keeper.New(in.agents,
		beacon.Registration{ID: in.id, Service: service, Address: "127.0.0.1", Port: port},
		keeper.WithBackend(in.e.reqs.keeperBackend()),
		keeper.WithLogger(in.e.logger("keeper")))
	if err == nil {
		sctx, cancel := context.WithTimeout(context.Background(), timeout)
		err = in.k.Start(sctx)
		cancel()
	}
	if err != nil {
		_ = in.srv.Close()
		<-in.served
		return err
	}
	in.running = true
	return nil
}

// stop drains and deregisters, then shuts the HTTP server down.
func (in *instance) stop() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.running {
		return nil
	}
	in.running = false
	ctx, cancel := context.WithTimeout(context.Background(), keeper.DefaultDrainGrace+10*time.Second)
	defer cancel()
	kerr := in.k.Stop(ctx)
	serr := in.srv.Shutdown(ctx)
	<-in.served
	return errors.Join(kerr, serr)
}

func (in *instance) status() keeper.Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.k.Status()
}

// ---- callers ----

// caller is a client of SayHello: a discovery cache on its agents and the
// RoundTripper over it, with a base transport that counts attempts.
type caller struct {
	name  string
	cache *discovery.Cache
	tr    *httpclient.Transport
	base  *attempts
	http  *http.Client
	w     *discovery.Watcher // the caller's own view of SayHello, for waiting on changes
}

func (e *env) newCaller(name string, retries int, agents ...*consultest.Node) *caller {
	e.t.Helper()
	return e.newCallerWith(name, retries, nil, agents...)
}

// newCallerWith is newCaller with more options for its cache (a failover
// policy, say).
func (e *env) newCallerWith(name string, retries int, opts []discovery.Option, agents ...*consultest.Node) *caller {
	e.t.Helper()
	opts = append([]discovery.Option{discovery.WithBackend(e.reqs.discoveryBackend()), discovery.WithLogger(e.logger(name))}, opts...)
	cache, err := discovery.New(cfg(agents...), opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 64
	c := &caller{name: name, cache: cache, base: &attempts{rt: base}}
	c.tr = httpclient.New(cache, httpclient.WithBase(c.base), httpclient.WithRetries(retries), httpclient.WithLogger(e.logger(name)))
	c.http = &http.Client{Transport: c.tr, Timeout: callTimeout}
	if c.w, err = cache.Watch(beacon.Query{Service: service}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		c.w.Close()
		c.tr.Close()
		cache.Close()
	})
	return c
}

// ids returns the IDs in the caller's current snapshot, sorted, with
// duplicates (the same ID on two nodes) kept.
func (c *caller) ids() []string {
	s := c.w.Snapshot()
	if s == nil {
		return nil
	}
	var ids []string
	for _, in := range s.Instances {
		ids = append(ids, in.ID)
	}
	sort.Strings(ids)
	return ids
}

// waitSees waits until the caller's snapshot satisfies cond, on the
// watcher's change notifications, and returns when it did.
func (c *caller) waitSees(t *testing.T, what string, timeout time.Duration, cond func(ids []string) bool) time.Time {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		if cond(c.ids()) {
			return time.Now()
		}
		select {
		case <-c.w.Changed():
		case <-timer.C:
			t.Fatalf("%s: %s not within %v; it sees %q (snapshot error %v)", c.name, what, timeout, c.ids(), c.snapErr())
		}
	}
}

func (c *caller) snapErr() error {
	if s := c.w.Snapshot(); s != nil {
		return s.Err
	}
	return nil
}

// has reports whether ids holds each of want.
func has(want ...string) func([]string) bool {
	return func(ids []string) bool {
		for _, w := range want {
			if !slices.Contains(ids, w) {
				return false
			}
		}
		return true
	}
}

// exactly reports whether ids is want, each once.
func exactly(want ...string) func([]string) bool {
	w := slices.Clone(want)
	sort.Strings(w)
	return func(ids []string) bool { return slices.Equal(ids, w) }
}

// attempts is the base transport of a caller: it counts every attempt the
// RoundTripper makes and the ones that failed, retried or not.
type attempts struct {
	rt            *http.Transport
	n, failed     atomic.Int64
	mu            sync.Mutex
	firstFailures []string
}

func (a *attempts) RoundTrip(r *http.Request) (*http.Response, error) {
	a.n.Add(1)
	resp, err := a.rt.RoundTrip(r)
	if err != nil {
		a.failed.Add(1)
		a.mu.Lock()
		if len(a.firstFailures) < 5 {
			a.firstFailures = append(a.firstFailures, fmt.Sprintf("%s: %v", r.URL.Host, err))
		}
		a.mu.Unlock()
	}
	return resp, err
}

func (a *attempts) CloseIdleConnections() { a.rt.CloseIdleConnections() }

// ---- load ----

// load sends GET http://SayHello/sayHello at a steady rate, each call in
// its own goroutine so that a slow call cannot slow the rate. It stops by
// itself after limit or at stop; a call that finds maxInFlight calls still
// running is not sent and counts as blocked.
type load struct {
	c      *caller
	every  time.Duration
	start  time.Time
	stopCh chan struct{}
	done   chan struct{}
	once   sync.Once

	mu       sync.Mutex
	sent     int
	failed   int
	blocked  int
	maxLat   time.Duration
	errs     []string
	okPerSec []int // successful calls by the second since start
	byID     map[string]int
	failedAt []time.Duration
	served   []servedCall // every successful call, in the order answered
}

// servedCall is a successful call: when it was sent, when its answer
// arrived and which instance gave it.
type servedCall struct {
	sent, at time.Time
	id       string
}

const maxInFlight = 64

func (e *env) startLoad(c *caller, perSecond int, limit time.Duration) *load {
	l := &load{c: c, every: time.Second / time.Duration(perSecond), start: time.Now(), stopCh: make(chan struct{}), done: make(chan struct{}), byID: map[string]int{}}
	maxCalls := perSecond * int(limit/time.Second)
	go l.run(maxCalls, limit)
	e.t.Cleanup(l.stop)
	return l
}

func (l *load) run(maxCalls int, limit time.Duration) {
	defer close(l.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxInFlight)
	tick := time.NewTicker(l.every)
	defer tick.Stop()
	end := time.NewTimer(limit)
	defer end.Stop()
	for range maxCalls {
		select {
		case <-l.stopCh:
			return
		case <-end.C:
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			l.mu.Lock()
			l.blocked++
			l.mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			l.call()
		}()
	}
}

func (l *load) call() {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	t0 := time.Now()
	err := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+service+"/sayHello", nil)
		if err != nil {
			return err
		}
		resp, err := l.c.http.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(b, []byte("Hello from ")) {
			return fmt.Errorf("status %d, body %q", resp.StatusCode, b)
		}
		id := strings.TrimSuffix(strings.TrimPrefix(string(b), "Hello from "), "!")
		l.mu.Lock()
		l.byID[id]++
		l.served = append(l.served, servedCall{t0, time.Now(), id})
		l.mu.Unlock()
		return nil
	}()
	lat := time.Since(t0)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent++
	l.maxLat = max(l.maxLat, lat)
	if err != nil {
		l.failed++
		l.failedAt = append(l.failedAt, t0.Sub(l.start))
		if len(l.errs) < 5 {
			l.errs = append(l.errs, fmt.Sprintf("after %v: %v", t0.Sub(l.start).Round(time.Millisecond), err))
		}
		return
	}
	sec := int(time.Since(l.start) / time.Second)
	for len(l.okPerSec) <= sec {
		l.okPerSec = append(l.okPerSec, 0)
	}
	l.okPerSec[sec]++
}

// stop ends the load and waits for calls in flight.
func (l *load) stop() {
	l.once.Do(func() { close(l.stopCh) })
	<-l.done
}

type loadStats struct {
	sent, failed, blocked int
	maxLat                time.Duration
	errs                  []string
	byID                  map[string]int
}

func (l *load) stats() loadStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadStats{sent: l.sent, failed: l.failed, blocked: l.blocked, maxLat: l.maxLat, errs: slices.Clone(l.errs), byID: l.byID}
}

// firstServed returns when the first call answered after from by an
// instance whose ID matches arrived, and false if none has.
func (l *load) firstServed(from time.Time, match func(id string) bool) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.served {
		if !c.at.Before(from) && match(c.id) {
			return c.at, true
		}
	}
	return time.Time{}, false
}

// servedBetween counts the calls answered in [from, to) by instances whose
// ID matches.
func (l *load) servedBetween(from, to time.Time, match func(id string) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.served {
		if !c.at.Before(from) && c.at.Before(to) && match(c.id) {
			n++
		}
	}
	return n
}

// sentFrom counts the calls sent at or after from (whenever they were
// answered) that instances whose ID matches answered. A call sent after
// its caller's snapshot changed picks from the new one, however late its
// goroutine runs: unlike the time an answer arrived, this cannot count a
// call that picked before the change.
func (l *load) sentFrom(from time.Time, match func(id string) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.served {
		if !c.sent.Before(from) && match(c.id) {
			n++
		}
	}
	return n
}

// sentBetween counts the calls sent in [from, to), answered or failed
// (not those blocked, which were never sent).
func (l *load) sentBetween(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.served {
		if !c.sent.Before(from) && c.sent.Before(to) {
			n++
		}
	}
	lo, hi := from.Sub(l.start), to.Sub(l.start)
	for _, at := range l.failedAt {
		if at >= lo && at < hi {
			n++
		}
	}
	return n
}

// minOKPerSecond is the fewest successful calls in any whole second
// between from and to (offsets from the start of the load).
func (l *load) minOKPerSecond(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	lo, hi := int(from.Sub(l.start)/time.Second)+1, int(to.Sub(l.start)/time.Second)-1
	least := -1
	for s := lo; s <= hi; s++ {
		n := 0
		if s < len(l.okPerSec) {
			n = l.okPerSec[s]
		}
		if least < 0 || n < least {
			least = n
		}
	}
	return least
}

// ---- Consul's view ----

// catalogPassing returns the passing instances of SayHello as node's
// agent reports them, read through a client that is not counted.
func catalogPassing(node *consultest.Node) ([]beacon.Instance, error) {
	c, err := consulhttp.New(node.Config())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	insts, _, err := c.Instances(ctx, beacon.Query{Service: service})
	return insts, err
}

func instanceIDs(insts []beacon.Instance) []string {
	var ids []string
	for _, in := range insts {
		ids = append(ids, in.ID)
	}
	sort.Strings(ids)
	return ids
}

// waitCatalog polls the catalog through node until cond holds for the
// passing instances, and returns when it did. Polling: the catalog is
// another process, with nothing to wait on but a blocking query of its own.
func waitCatalog(t *testing.T, node *consultest.Node, what string, timeout time.Duration, cond func([]beacon.Instance) bool) time.Time {
	t.Helper()
	testutil.Eventually(t, timeout, "catalog through "+node.Name+": "+what, func() error {
		insts, err := catalogPassing(node)
		if err != nil {
			return err
		}
		var got []string
		for _, in := range insts {
			got = append(got, in.Node+"/"+in.ID)
		}
		return testutil.Want(cond(insts), "passing %q", got)
	})
	return time.Now()
}

// hold lets the scenario run for d: an outage's length, not a wait for
// something to happen.
func hold(d time.Duration) { <-time.After(d) }

// ---- logs ----

// logSink collects every Beacon component's log and tells waiters when a
// message is first logged.
type logSink struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	waits []logWait
}

type logWait struct {
	msg string
	ch  chan time.Time
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// when returns a channel that receives the time msg is next logged.
func (s *logSink) when(msg string) <-chan time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan time.Time, 1)
	s.waits = append(s.waits, logWait{msg, ch})
	return ch
}

func (s *logSink) seen(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.waits[:0]
	for _, w := range s.waits {
		if w.msg == msg {
			w.ch <- time.Now()
			continue
		}
		kept = append(kept, w)
	}
	s.waits = kept
}

func (s *logSink) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := strings.Split(strings.TrimRight(s.buf.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type sinkHandler struct {
	slog.Handler
	s *logSink
}

func (h sinkHandler) Handle(ctx context.Context, r slog.Record) error {
	h.s.seen(r.Message)
	return h.Handler.Handle(ctx, r)
}

func (h sinkHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return sinkHandler{h.Handler.WithAttrs(as), h.s}
}

func (h sinkHandler) WithGroup(g string) slog.Handler {
	return sinkHandler{h.Handler.WithGroup(g), h.s}
}

// ---- requests to Consul ----

// counter counts the requests Beacon's components send to Consul, by
// keepers and by callers (discovery), through counting backends.
type counter struct {
	keepers, callers atomic.Int64
}

func (c *counter) total() (keepers, callers int64) { return c.keepers.Load(), c.callers.Load() }

func (c *counter) keeperBackend() consul.Backend {
	return func(cfg consul.Config) (beacon.Registry, error) { return c.wrap(cfg, &c.keepers) }
}

func (c *counter) discoveryBackend() consul.Backend {
	return func(cfg consul.Config) (beacon.Registry, error) { return c.wrap(cfg, &c.callers) }
}

func (c *counter) wrap(cfg consul.Config, n *atomic.Int64) (beacon.Registry, error) {
	r, err := consulhttp.New(cfg)
	if err != nil {
		return nil, err
	}
	return &counted{c: r, n: n}, nil
}

// counted is a consulhttp client that counts its requests. It keeps the
// change feed (beacon.ChangeFeed) that discovery uses beyond its long-poll
// budget.
type counted struct {
	c *consulhttp.Client
	n *atomic.Int64
}

var (
	_ beacon.Registry   = (*counted)(nil)
	_ beacon.ChangeFeed = (*counted)(nil)
)

func (r *counted) Register(ctx context.Context, reg beacon.Registration) error {
	r.n.Add(1)
	return r.c.Register(ctx, reg)
}

func (r *counted) Deregister(ctx context.Context, id string) error {
	r.n.Add(1)
	return r.c.Deregister(ctx, id)
}

func (r *counted) UpdateTTL(ctx context.Context, id string, h beacon.Health, out string) error {
	r.n.Add(1)
	return r.c.UpdateTTL(ctx, id, h, out)
}

func (r *counted) Instances(ctx context.Context, q beacon.Query) ([]beacon.Instance, beacon.QueryMeta, error) {
	r.n.Add(1)
	return r.c.Instances(ctx, q)
}

func (r *counted) AgentService(ctx context.Context, id string) (beacon.Instance, error) {
	r.n.Add(1)
	return r.c.AgentService(ctx, id)
}

func (r *counted) Checks(ctx context.Context, q beacon.ChecksQuery) ([]beacon.CheckState, beacon.QueryMeta, error) {
	r.n.Add(1)
	return r.c.Checks(ctx, q)
}

func (r *counted) Close() error { return r.c.Close() }

// window measures requests to Consul from now until end is called.
type window struct {
	c      *counter
	k0, c0 int64
	start  time.Time
}

func (e *env) window() *window {
	k, c := e.reqs.total()
	return &window{c: e.reqs, k0: k, c0: c, start: time.Now()}
}

func (w *window) String() string {
	k, c := w.c.total()
	return fmt.Sprintf("%d in %v (keepers %d, callers %d)", k-w.k0+c-w.c0, time.Since(w.start).Round(time.Second), k-w.k0, c-w.c0)
}

func ms(d time.Duration) string {
	if d < 5*time.Millisecond {
		return "<10ms"
	}
	return d.Round(10 * time.Millisecond).String()
}
