package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	kitconsul "github.com/go-kit/kit/sd/consul"
	"github.com/go-kit/log"
	"github.com/hashicorp/consul/api"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
)

// requestCounter is a discovery.Metrics that counts queries sent.
type requestCounter struct{ n atomic.Int64 }

func (r *requestCounter) Request(string)        { r.n.Add(1) }
func (r *requestCounter) WatchError(string)     {}
func (r *requestCounter) IndexReset(string)     {}
func (r *requestCounter) Published(string, int) {}
func (r *requestCounter) ACLHidden(string)      {}

// countingTransport counts go-kit's requests, and its 429 answers.
type countingTransport struct {
	base       http.RoundTripper
	n, tooMany atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	resp, err := c.base.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		c.tooMany.Add(1)
	}
	return resp, err
}

// establishedTo counts ESTABLISHED TCP connections whose remote end is
// addr, from the kernel's table, not from our own dialer.
func establishedTo(addr string) (int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	ip := net.ParseIP(host).To4()
	p, _ := strconv.Atoi(port)
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], p)
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 3 && fields[2] == want && fields[3] == "01" {
			n++
		}
	}
	return n, sc.Err()
}

// writeHeapProfile writes the live heap to path, for finding what the
// cache keeps per instance.
func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// cpuTime is the process's user plus system CPU so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// watchManySize is one row of BenchmarkWatchMany: services of perService
// instances.
type watchManySize struct{ services, perService int }

func (s watchManySize) String() string {
	if s.perService == 1 {
		return "single=" + strconv.Itoa(s.services)
	}
	return "inst=" + strconv.Itoa(s.services*s.perService)
}

// watchManySizes reads BEACON_SCALE: unset, 1,000 watched instances (100
// services of 10) and 1,000 services of one instance; "full", also 10,000
// and 100,000 instances (1,000 and 10,000 services of 10) and 10,000
// services of one; or a comma-separated list of watched instance counts
// (services of 10) and single=n (n services of one), such as
// "1000,10000,single=10000".
func watchManySizes(b *testing.B) []watchManySize {
	v := os.Getenv("BEACON_SCALE")
	switch v {
	case "":
		return []watchManySize{{100, 10}, {1000, 1}}
	case "full":
		return []watchManySize{{100, 10}, {1000, 10}, {10000, 10}, {1000, 1}, {10000, 1}}
	}
	var out []watchManySize
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if rest, ok := strings.CutPrefix(f, "single="); ok {
			n, err := strconv.Atoi(rest)
			if err != nil || n < 1 {
				b.Fatalf("BEACON_SCALE=%q: single=%q is not a count of services", v, rest)
			}
			out = append(out, watchManySize{n, 1})
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 10 {
			b.Fatalf("BEACON_SCALE=%q: want full or instance counts of at least 10", v)
		}
		out = append(out, watchManySize{n / 10, 10})
	}
	return out
}

// kitMaxServices is the most services a go-kit row watches
// (BEACON_KIT_MAX, 1,000 by default): go-kit holds a connection and a
// goroutine per service, so 10,000 services would be 10,000 connections.
func kitMaxServices(b *testing.B) int {
	if v := os.Getenv("BEACON_KIT_MAX"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	return 1000
}

// BenchmarkWatchMany watches every service of a synthetic fleet (written by
// consultest.Populate: 4 meta keys of 16 characters and one tag per
// instance) through one agent with a blocking wait of 10 s, beside go-kit's
// consul Instancer (one per service, sharing one consul/api client with the
// same wait) where the fleet has at most BEACON_KIT_MAX services. Sizes
// come from BEACON_SCALE (see watchManySizes); each runs its scenario once,
// whatever b.N:
//
//   - first-s: seconds from the first Watch until every watch has its first
//     snapshot;
//   - B/inst (B/service for services of one instance): heap from before
//     the watches to the least of five readings 2 s apart after a forced
//     GC, per watched instance (service);
//   - conns: peak ESTABLISHED connections to the agent's HTTP port, from
//     /proc/net/tcp every 20 ms;
//   - req/svc/wait and idle-req/min: requests while idle (BEACON_IDLE,
//     20 s by default, at least 12 s);
//   - cpu-us/change: the process's CPU while 10 health flips a second
//     (BEACON_CHURN, 10 s by default) change the fleet and for 2 s after,
//     less the idle CPU of the same span and less the churn driver's own
//     CPU (measured running the same churn on 100 instances of other
//     services before the watches start), per
//     change. The feed's one query on /v1/health/state/any answers with
//     every check in the datacenter at each change, so this grows with the
//     fleet, not with the change.
//
// The agent's http_max_conns_per_client is raised to 4,096 so that go-kit,
// which holds one connection per service, can run at all; Beacon stays
// far below the default 200 (its conns says so). BEACON_HEAPPROFILE=prefix
// writes prefix-<row>.pprof when B/inst is read.
func BenchmarkWatchMany(b *testing.B) {
	for _, size := range watchManySizes(b) {
		b.Run(size.String(), func(b *testing.B) {
			srv := consultest.NewServer(b, consultest.WithConfigJSON(
				// Info, not debug: debug logs every write.
				`{"log_level": "info", "limits": {"http_max_conns_per_client": 4096}}`))
			meta := map[string]string{}
			for i := range 4 {
				meta[fmt.Sprintf("key%013d", i)] = strings.Repeat(strconv.Itoa(i), 16)
			}
			pop := consultest.Populate(b, srv, consultest.Fleet{
				Services: size.services, Instances: size.perService, Prefix: "many",
				Tags: []string{"bench"}, Meta: meta, Concurrency: 4,
			})
			b.Logf("loaded %d instances in %v", size.services*size.perService, pop.Loaded)
			b.Run("beacon", func(b *testing.B) { watchMany(b, srv, pop, size, false) })
			if size.services <= kitMaxServices(b) {
				b.Run("gokit", func(b *testing.B) { watchMany(b, srv, pop, size, true) })
			}
		})
	}
}

// watchMany is one row: Beacon's cache, or go-kit's Instancers, watching
// every service of pop.
func watchMany(b *testing.B, srv *consultest.Server, pop *consultest.Population, size watchManySize, kit bool) {
	const wait = 10 * time.Second
	idle := envDuration(b, "BEACON_IDLE", 20*time.Second)
	if idle < 12*time.Second {
		b.Fatalf("BEACON_IDLE %v: at least 12s, the heap is read in the first 10", idle)
	}
	churnFor := envDuration(b, "BEACON_CHURN", 10*time.Second)
	const churnRate = 10.0
	ctx := context.Background()
	services := pop.Services()

	var peak atomic.Int64
	// The sampler allocates; heap measurements hold sampling so that what
	// they count is the watchers'.
	var sampling sync.Mutex
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			sampling.Lock()
			if n, err := establishedTo(srv.HTTPAddr); err == nil && int64(n) > peak.Load() {
				peak.Store(int64(n))
			}
			sampling.Unlock()
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()
	defer func() {
		select {
		case <-stopSampling:
		default:
			close(stopSampling)
		}
		<-sampled
	}()

	// Client CPU per change: health flips on random services. The
	// driver's own CPU is measured first, with nothing watching.
	churn := func(pop *consultest.Population) (changes int, cpu time.Duration, span time.Duration) {
		c0, t0 := cpuTime(b), time.Now()
		ch, err := pop.Churn(ctx, churnRate, churnFor, consultest.FlipHealth)
		if err != nil {
			b.Fatal(err)
		}
		st, err := ch.Wait()
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Second) // the last changes reach the watchers
		return st.Changes, cpuTime(b) - c0, time.Since(t0)
	}
	// On services of their own, so the fleet is untouched when the watches
	// start.
	prefix := "driver-beacon"
	if kit {
		prefix = "driver-kit"
	}
	driverPop := consultest.Populate(b, srv, consultest.Fleet{Services: 10, Instances: 10, Prefix: prefix})
	var driverChanges int
	var cpuDriver time.Duration
	// The CPU windows hold the connection sampler: reading /proc/net/tcp
	// costs more CPU than a change, and varies with the machine's sockets.
	// (Held by a deferred unlock, so a failure inside does not hang.)
	paused := func(f func()) {
		sampling.Lock()
		defer sampling.Unlock()
		f()
	}
	paused(func() { driverChanges, cpuDriver, _ = churn(driverPop) })

	var ms0, ms1 runtime.MemStats
	sampling.Lock()
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	sampling.Unlock()

	// requests counts queries sent; closeAll stops every watch.
	var requests func() int64
	var closeAll func()
	start := time.Now()
	if !kit {
		counter := &requestCounter{}
		cache, err := discovery.New(srv.Config(), discovery.WithWaitTime(wait), discovery.WithMetrics(counter))
		if err != nil {
			b.Fatal(err)
		}
		var ws []*discovery.Watcher
		for _, svc := range services {
			w, err := cache.Watch(beacon.Query{Service: svc})
			if err != nil {
				b.Fatal(err)
			}
			ws = append(ws, w)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		for i, w := range ws {
			s, err := w.Wait(wctx)
			if err != nil {
				b.Fatalf("watch %d (%s): %v", i, services[i], err)
			}
			if len(s.Instances) != pop.Passing(i) {
				b.Fatalf("watch %d (%s): %d instances, want %d", i, services[i], len(s.Instances), pop.Passing(i))
			}
		}
		requests = counter.n.Load
		closeAll = func() {
			for _, w := range ws {
				w.Close()
			}
			cache.Close()
		}
	} else {
		cfg := api.DefaultConfig()
		cfg.Address = srv.HTTPAddr
		cfg.WaitTime = wait
		ct := &countingTransport{base: cfg.Transport}
		cfg.HttpClient = &http.Client{Transport: ct}
		client, err := api.NewClient(cfg)
		if err != nil {
			b.Fatal(err)
		}
		kc := kitconsul.NewClient(client)
		// go-kit's NewInstancer makes its first query before it returns;
		// 64 at a time, as an application starting many would.
		insts := make([]*kitconsul.Instancer, len(services))
		jobs := make(chan int)
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					insts[i] = kitconsul.NewInstancer(kc, log.NewNopLogger(), services[i], nil, true)
				}
			}()
		}
		for i := range services {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		for i, in := range insts {
			ch := make(chan sd.Event, 1)
			in.Register(ch)
			ev := <-ch
			in.Deregister(ch)
			if ev.Err != nil || len(ev.Instances) != pop.Passing(i) {
				b.Fatalf("go-kit instancer %d: %d instances, %v", i, len(ev.Instances), ev.Err)
			}
		}
		requests = ct.n.Load
		closeAll = func() {
			// Stop does not cancel the in-flight long poll; the wait ends it.
			for _, in := range insts {
				in.Stop()
			}
			ct.base.(*http.Transport).CloseIdleConnections()
			if n := ct.tooMany.Load(); n > 0 {
				b.Logf("go-kit: %d answers were 429", n)
			}
		}
	}
	firstSnapshots := time.Since(start)
	defer func() {
		if closeAll != nil {
			closeAll()
		}
	}()

	// The heap is read five times, 2 s apart, early in the idle window, and
	// the least is kept: an answer being decoded at a GC is not memory the
	// watchers keep.
	before := requests()
	idleStart := time.Now()
	var heap uint64
	for i := range 5 {
		time.Sleep(2 * time.Second)
		sampling.Lock()
		runtime.GC()
		runtime.ReadMemStats(&ms1)
		if i == 0 || ms1.HeapAlloc < heap {
			heap = ms1.HeapAlloc
			if prefix := os.Getenv("BEACON_HEAPPROFILE"); prefix != "" {
				writeHeapProfile(b, prefix+"-"+strings.ReplaceAll(b.Name(), "/", "-")+".pprof")
			}
		}
		sampling.Unlock()
	}
	time.Sleep(idle - time.Since(idleStart))
	idleReqs := requests() - before

	var idleCPURate float64
	var changes int
	var cpuWatched, span time.Duration
	paused(func() {
		cpuIdle0, idle0 := cpuTime(b), time.Now()
		time.Sleep(5 * time.Second)
		idleCPURate = float64(cpuTime(b)-cpuIdle0) / float64(time.Since(idle0))
		changes, cpuWatched, span = churn(pop)
	})
	perChange := (float64(cpuWatched)-idleCPURate*float64(span))/float64(changes) - float64(cpuDriver)/float64(driverChanges)

	unit := "B/inst"
	n := float64(size.services * size.perService)
	if size.perService == 1 {
		unit = "B/service"
	}
	b.ReportMetric(firstSnapshots.Seconds(), "first-s")
	b.ReportMetric(float64(int64(heap)-int64(ms0.HeapAlloc))/n, unit)
	b.ReportMetric(float64(peak.Load()), "conns")
	b.ReportMetric(float64(idleReqs)/idle.Minutes(), "idle-req/min")
	b.ReportMetric(float64(idleReqs)/float64(size.services)/(float64(idle)/float64(wait)), "req/svc/wait")
	b.ReportMetric(perChange/1e3, "cpu-us/change")
}

// envDuration reads a duration from the environment, def when unset.
func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		b.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}
