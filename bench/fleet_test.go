package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	kitconsul "github.com/go-kit/kit/sd/consul"
	"github.com/go-kit/log"
	"github.com/hashicorp/consul/api"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
)

// Fleet shape: every host watches every one of fleetServices services of
// fleetInstances instances.
const (
	fleetServices  = 20
	fleetInstances = 10
	// herdWindow is how long after the agent answers again requests count
	// towards the herd; herdBin is the histogram's bin.
	herdWindow = 10 * time.Second
	herdBin    = 500 * time.Millisecond
)

// fleetEvent is one request a host sent: when (since the recorder's
// epoch), which service's health it asked (-1: another path), and its
// answer's status (0: no answer) and when it came.
type fleetEvent struct {
	host     int32
	service  int32
	path     string // the path, and which query kind (index, cached, stale)
	status   int32
	sent     time.Duration
	answered time.Duration
}

// fleetRecorder is the counting RoundTripper's memory, shared by every
// host of one library's fleet.
type fleetRecorder struct {
	epoch    time.Time
	services map[string]int32 // "/v1/health/service/<name>" → index

	mu sync.Mutex
	// events in order of sending: each is added when its request goes
	// out (a parked long poll counts as sent) and completed, under mu,
	// when its answer comes.
	events []*fleetEvent
	bytes  atomic.Int64 // answer bodies read, all hosts
}

func newFleetRecorder(services []string) *fleetRecorder {
	r := &fleetRecorder{epoch: time.Now(), services: map[string]int32{}}
	for i, s := range services {
		r.services["/v1/health/service/"+s] = int32(i)
	}
	return r
}

func (r *fleetRecorder) now() time.Duration { return time.Since(r.epoch) }

// since returns the events sent at or after t.
func (r *fleetRecorder) since(t time.Duration) []fleetEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := sort.Search(len(r.events), func(i int) bool { return r.events[i].sent >= t })
	out := make([]fleetEvent, 0, len(r.events)-i)
	for _, ev := range r.events[i:] {
		out = append(out, *ev)
	}
	return out
}

// hostTransport counts one host's requests: the hook the benchmark
// installs under both libraries (consulhttp.WithHTTPClient, consul/api's
// HttpClient), on the transport consul.Config builds with the host's
// SourceAddr.
type hostTransport struct {
	base http.RoundTripper
	rec  *fleetRecorder
	host int32
}

func (h *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	svc, ok := h.rec.services[req.URL.Path]
	if !ok {
		svc = -1
	}
	ev := &fleetEvent{host: h.host, service: svc, path: pathKind(req)}
	h.rec.mu.Lock()
	ev.sent = h.rec.now() // under mu: events stay in order of sending
	h.rec.events = append(h.rec.events, ev)
	h.rec.mu.Unlock()
	resp, err := h.base.RoundTrip(req)
	if err == nil {
		h.rec.mu.Lock()
		ev.status = int32(resp.StatusCode)
		ev.answered = h.rec.now()
		h.rec.mu.Unlock()
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &h.rec.bytes}
	}
	return resp, err
}

// pathKind names a request for the logs' breakdown: its path (a
// service's name replaced by "S") and whether it blocks.
func pathKind(req *http.Request) string {
	p := req.URL.Path
	if strings.HasPrefix(p, "/v1/health/service/") {
		p = "/v1/health/service/S"
	}
	q := req.URL.Query()
	if q.Has("index") && q.Get("index") != "0" {
		p += "?index"
	}
	if q.Has("stale") {
		p += "?stale"
	}
	return p
}

// breakdown counts events by path kind and status, for the logs.
func breakdown(evs []fleetEvent) string {
	n := map[string]int{}
	for _, ev := range evs {
		n[fmt.Sprintf("%s %d", ev.path, ev.status)]++
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "\n\t%6d  %s", n[k], k)
	}
	return sb.String()
}

// countingBody adds the bytes read from an answer to n.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// sourceIP is host i's loopback source address: 127.0.0.2, 127.0.0.3, ...,
// then 127.0.1.0 and on (Linux routes all of 127/8 to loopback).
func sourceIP(i int) string {
	n := i + 2
	return fmt.Sprintf("127.0.%d.%d", n/256%256, n%256)
}

// fleetLibrary is one library's fleet: every host watching every service.
type fleetLibrary interface {
	// start builds host i's watches of services through cfg (its
	// SourceAddr set) and returns once each has its first answer. It
	// runs on a goroutine of its own: it returns errors, never fails b.
	start(cfg consul.Config, rt func(http.RoundTripper) http.RoundTripper, services []string, passing func(int) int) error
	close()
}

// beaconFleet is one discovery.Cache per host, with opts.
type beaconFleet struct {
	opts   []discovery.Option
	mu     sync.Mutex
	caches []*discovery.Cache
}

func (f *beaconFleet) start(cfg consul.Config, rt func(http.RoundTripper) http.RoundTripper, services []string, passing func(int) int) error {
	backend := func(c consul.Config) (beacon.Registry, error) {
		hc, _, err := c.NewHTTPClient() // c carries SourceAddr and the cache's MaxConns
		if err != nil {
			return nil, err
		}
		hc.Transport = rt(hc.Transport)
		return consulhttp.New(c, consulhttp.WithHTTPClient(hc))
	}
	cache, err := discovery.New(cfg, append([]discovery.Option{discovery.WithBackend(backend)}, f.opts...)...)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.caches = append(f.caches, cache)
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ws := make([]*discovery.Watcher, len(services))
	for j, svc := range services {
		if ws[j], err = cache.Watch(beacon.Query{Service: svc}); err != nil {
			return err
		}
	}
	for j, w := range ws {
		// Until an answer: under the fleet's start an overloaded agent can
		// miss a first query's deadline, and Wait then returns the error
		// at once; the watch asks again.
		s := w.Snapshot()
		for s == nil || s.Source != discovery.SourceConsul || s.Err != nil {
			select {
			case <-w.Changed():
			case <-ctx.Done():
				return fmt.Errorf("beacon watch of %s from %s: no answer within 5 minutes (last snapshot %+v)", services[j], cfg.SourceAddr, s)
			}
			s = w.Snapshot()
		}
		if len(s.Instances) != passing(j) {
			return fmt.Errorf("beacon watch of %s from %s: %d instances, want %d", services[j], cfg.SourceAddr, len(s.Instances), passing(j))
		}
	}
	return nil
}

func (f *beaconFleet) close() {
	for _, c := range f.caches {
		c.Close() // its watches with it
	}
}

// kitFleet is one consul/api client per host and a go-kit Instancer per
// service on it.
type kitFleet struct {
	mu    sync.Mutex
	insts []*kitconsul.Instancer
	hcs   []*http.Client
}

func (f *kitFleet) start(cfg consul.Config, rt func(http.RoundTripper) http.RoundTripper, services []string, passing func(int) int) error {
	hc, ep, err := cfg.NewHTTPClient()
	if err != nil {
		return err
	}
	hc.Transport = rt(hc.Transport)
	f.mu.Lock()
	f.hcs = append(f.hcs, hc)
	f.mu.Unlock()
	client, err := api.NewClient(&api.Config{Address: ep.Host, Scheme: "http", HttpClient: hc})
	if err != nil {
		return err
	}
	kc := kitconsul.NewClient(client)
	for j, svc := range services {
		// NewInstancer makes its first query before it returns.
		in := kitconsul.NewInstancer(kc, log.NewNopLogger(), svc, nil, true)
		ch := make(chan sd.Event, 1)
		in.Register(ch)
		ev := <-ch
		in.Deregister(ch)
		f.mu.Lock()
		f.insts = append(f.insts, in)
		f.mu.Unlock()
		if ev.Err != nil || len(ev.Instances) != passing(j) {
			return fmt.Errorf("go-kit instancer of %s from %s: %d instances, %v; want %d", svc, cfg.SourceAddr, len(ev.Instances), ev.Err, passing(j))
		}
	}
	return nil
}

func (f *kitFleet) close() {
	// Stop does not cancel the long poll in flight: it ends with its wait,
	// or with the agent at the end of the benchmark.
	for _, in := range f.insts {
		in.Stop()
	}
	for _, hc := range f.hcs {
		hc.CloseIdleConnections()
	}
}

// herdRows are the herd histograms of every run so far, written to
// $BEACON_BENCH_DIR/herd.tsv after each.
var herdRows = struct {
	sync.Mutex
	rows map[string][]int // "library\trestart" → requests per bin
}{rows: map[string][]int{}}

func writeHerd(b *testing.B, library, restart string, bins []int) {
	herdRows.Lock()
	defer herdRows.Unlock()
	herdRows.rows[library+"\t"+restart] = bins
	dir := os.Getenv("BEACON_BENCH_DIR")
	if dir == "" {
		return
	}
	keys := make([]string, 0, len(herdRows.rows))
	for k := range herdRows.rows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	sb.WriteString("library\trestart\tt_ms\trequests\n")
	for _, k := range keys {
		for i, n := range herdRows.rows[k] {
			fmt.Fprintf(&sb, "%s\t%d\t%d\n", k, i*int(herdBin/time.Millisecond), n)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "herd.tsv"), []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFleet runs a fleet of BEACON_FLEET_CACHES hosts (default 200)
// in this process, host i dialling the agent from 127.0.0.(i+2) (and on
// into 127.0.1.x) so that the agent's 200-connections-per-address limit
// applies per host, each watching the same 20 services of 10 instances
// (consultest.Populate) through the one client agent of a cluster of
// BEACON_FLEET_SERVERS servers (default 1). Beacon (a discovery.Cache per
// host, defaults) and go-kit (a consul/api client per host, an Instancer
// per service, defaults) run one after the other on the same cluster.
// Every request of every host goes through a counting RoundTripper.
//
// For each library, three rows:
//
//   - churn: 2 health flips a second for BEACON_FLEET_CHURN (15 s), on
//     random services; req/change/watcher and B/change/watcher are the
//     requests sent and answer bytes read (bodies) by all hosts from the
//     first change until 3 s after the last, divided by the changes and by
//     the hosts (each host watches every service once); first-s is the
//     time until every watch of every host had its first answer.
//   - herd=agent: the client agent is stopped for BEACON_FLEET_DOWN (5 s)
//     and started again; herd=servers: every server is, the client agent
//     staying up. From the moment the agent answers again (the first
//     answer any host gets after the restart, or, for servers, the first
//     200 to a health read through the client agent): req/watch/10s and
//     answered/watch/10s (requests sent in the next 10 s, and those of
//     them answered within it: a long poll parked on the agent is sent but
//     not answered), spread-s (from the 5th to the 95th percentile of
//     their sending times), 429s (answers 429, from the stop to the end of
//     the row), fresh-s (until every watch of every host had a 200 answer
//     for its service after that moment, at most BEACON_FLEET_FRESH, 30 s)
//     and unfresh (watches without one by then).
//
// BEACON_FLEET_STALE_BOUND sets Beacon's discovery.WithStaleBound (0s
// turns the stale-view guard off, as Consul 1.16 and later allow), to see
// what the guard costs a fleet.
//
// With BEACON_BENCH_DIR set, the herd's requests in 500 ms bins go to
// $BEACON_BENCH_DIR/herd.tsv: library, restart, t_ms (start of the bin
// after the agent answers again), requests.
func BenchmarkFleet(b *testing.B) {
	hosts := envInt(b, "BEACON_FLEET_CACHES", 200)
	servers := envInt(b, "BEACON_FLEET_SERVERS", 1)
	// Consul's own gossip timings, not consultest's quick ones (a node
	// failed in 1-2 s): under the fleet's load on a small machine, those
	// had the client agent declare its server dead ("No known Consul
	// servers") while the hosts started.
	cluster := consultest.NewCluster(b, servers, 1, consultest.WithConfigJSON(
		`{"log_level": "warn", "gossip_lan": {"probe_interval": "1s", "probe_timeout": "500ms", "suspicion_mult": 4}}`))
	agent := cluster.Clients[0]
	pop := consultest.Populate(b, agent.Server, consultest.Fleet{
		Services: fleetServices, Instances: fleetInstances, Prefix: "fleet",
		Tags: []string{"bench"}, Meta: map[string]string{"version": "1.2.3", "team": "payments"},
	})
	b.Logf("loaded %d instances in %v; %d hosts, %d servers", fleetServices*fleetInstances, pop.Loaded, hosts, servers)
	for _, lib := range []string{"beacon", "gokit"} {
		b.Run(lib, func(b *testing.B) {
			var f fleetLibrary = &beaconFleet{}
			if v := os.Getenv("BEACON_FLEET_STALE_BOUND"); v != "" {
				f = &beaconFleet{opts: []discovery.Option{discovery.WithStaleBound(envDuration(b, "BEACON_FLEET_STALE_BOUND", 0))}}
			}
			if lib == "gokit" {
				f = &kitFleet{}
			}
			runFleet(b, lib, f, cluster, pop, hosts)
		})
	}
}

func runFleet(b *testing.B, lib string, f fleetLibrary, cluster *consultest.Cluster, pop *consultest.Population, hosts int) {
	agent := cluster.Clients[0]
	services := pop.Services()
	rec := newFleetRecorder(services)
	watches := hosts * len(services)

	// Hosts start 8 at a time, as a fleet does not start in one instant.
	start := time.Now()
	jobs := make(chan int)
	errc := make(chan error, hosts)
	var wg sync.WaitGroup
	defer f.close()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				cfg := agent.Config()
				cfg.SourceAddr = sourceIP(i)
				rt := func(base http.RoundTripper) http.RoundTripper {
					return &hostTransport{base: base, rec: rec, host: int32(i)}
				}
				if err := f.start(cfg, rt, services, pop.Passing); err != nil {
					errc <- err
				}
			}
		}()
	}
	for i := range hosts {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	first := time.Since(start)
	close(errc)
	if err := <-errc; err != nil {
		b.Fatalf("%d hosts failed to start, the first: %v", len(errc)+1, err)
	}
	// The stale-view guard's first reads (10 s bound) are past before
	// anything is counted.
	time.Sleep(12 * time.Second)

	b.Run("churn", func(b *testing.B) {
		churnFor := envDuration(b, "BEACON_FLEET_CHURN", 15*time.Second)
		t0 := rec.now()
		bytes0 := rec.bytes.Load()
		ch, err := pop.Churn(context.Background(), 2, churnFor, consultest.FlipHealth)
		if err != nil {
			b.Fatal(err)
		}
		st, err := ch.Wait()
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		evs := rec.since(t0)
		reqs := len(evs)
		bytes := rec.bytes.Load() - bytes0
		per := float64(st.Changes) * float64(hosts)
		b.ReportMetric(first.Seconds(), "first-s")
		b.ReportMetric(float64(reqs)/per, "req/change/watcher")
		b.ReportMetric(float64(bytes)/per, "B/change/watcher")
		b.Logf("%s: %d changes, %d requests, %d bytes of answers, %d hosts; requests by path and status (0: none yet):%s", lib, st.Changes, reqs, bytes, hosts, breakdown(evs))
	})

	for _, restart := range []string{"agent", "servers"} {
		b.Run("herd="+restart, func(b *testing.B) {
			herd(b, lib, restart, cluster, rec, len(services), watches)
		})
	}
}

// herd restarts the client agent or the servers and reports what the
// fleet sent after.
func herd(b *testing.B, lib, restart string, cluster *consultest.Cluster, rec *fleetRecorder, services, watches int) {
	agent := cluster.Clients[0]
	down := envDuration(b, "BEACON_FLEET_DOWN", 5*time.Second)
	freshBound := envDuration(b, "BEACON_FLEET_FRESH", 30*time.Second)
	stopped := rec.now()
	var back time.Duration
	switch restart {
	case "agent":
		agent.Stop()
		time.Sleep(down)
		agent.RestartNoWait(b, true)
		back = rec.now()
		// The first answer any host had after the restart, if sooner.
		for _, ev := range rec.since(stopped) {
			if ev.status != 0 && ev.answered < back && ev.answered > stopped+down {
				back = ev.answered
			}
		}
	case "servers":
		for _, s := range cluster.Servers {
			s.Stop()
		}
		time.Sleep(down)
		for _, s := range cluster.Servers {
			s.RestartNoWait(b, true)
		}
		back = waitHealthAnswer(b, agent, rec)
	}

	// Until every watch is fresh, or the bound.
	deadline := time.Now().Add(freshBound - (rec.now() - back))
	var fresh time.Duration
	unfresh := watches
	for {
		last := map[[2]int32]time.Duration{}
		for _, ev := range rec.since(stopped) {
			if ev.status == http.StatusOK && ev.service >= 0 && ev.answered >= back {
				k := [2]int32{ev.host, ev.service}
				if t, ok := last[k]; !ok || ev.answered < t {
					last[k] = ev.answered
				}
			}
		}
		unfresh = watches - len(last)
		if unfresh == 0 {
			for _, t := range last {
				fresh = max(fresh, t-back)
			}
			break
		}
		if time.Now().After(deadline) {
			fresh = freshBound
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if d := back + herdWindow - rec.now(); d > 0 {
		time.Sleep(d)
	}

	bins := make([]int, herdWindow/herdBin)
	var sent []time.Duration
	var inWindow []fleetEvent
	answered, tooMany := 0, 0
	for _, ev := range rec.since(stopped) {
		if ev.status == http.StatusTooManyRequests {
			tooMany++
		}
		if ev.sent < back || ev.sent >= back+herdWindow {
			continue
		}
		bins[(ev.sent-back)/herdBin]++
		inWindow = append(inWindow, ev)
		sent = append(sent, ev.sent-back)
		if ev.status != 0 && ev.answered < back+herdWindow {
			answered++
		}
	}
	var spread time.Duration
	if len(sent) > 1 {
		slices.Sort(sent)
		spread = sent[len(sent)*95/100] - sent[len(sent)*5/100]
	}
	writeHerd(b, lib, restart, bins)
	b.ReportMetric(float64(len(sent))/float64(watches), "req/watch/10s")
	b.ReportMetric(float64(answered)/float64(watches), "answered/watch/10s")
	b.ReportMetric(spread.Seconds(), "spread-s")
	b.ReportMetric(float64(tooMany), "429s")
	b.ReportMetric(fresh.Seconds(), "fresh-s")
	b.ReportMetric(float64(unfresh), "unfresh")
	b.Logf("%s herd=%s: bins of %v after the agent answered again: %v; requests in the window by path and status (0: none yet):%s", lib, restart, herdBin, bins, breakdown(inWindow))
	// The next row starts from a quiet fleet.
	time.Sleep(5 * time.Second)
	_ = services
}

// waitHealthAnswer polls a health read through the client agent (not
// through any host) until it is answered 200, and returns when, on rec's
// clock.
func waitHealthAnswer(b *testing.B, agent *consultest.Node, rec *fleetRecorder) time.Duration {
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := hc.Get(agent.URL() + "/v1/health/service/consul")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return rec.now()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatal("the client agent did not answer a health read within 2 minutes of the servers' restart")
	return 0
}
