package bench

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
)

// BenchmarkWatchFailover measures what failing over costs: 200 services of
// 2 instances in each of two WAN-federated datacenters, watched from dc1
// with the policy [dc2] and a blocking wait of 10 s. Every dc1 instance is
// then made critical at once, so every watch fails over, and the process
// stays failed over for 20 s. It runs its scenario once, whatever b.N,
// and reports: the time from the first health update until every watch
// serves dc2 (all-failed-over-s; the 400 updates are sent one by one) and
// from the last update (after-last-update-s), the peak of connections to dc1's agent
// over the whole run (conns: the cache's cap is 76, plus the updater's one), requests per service
// per wait period while idle, before the failover (req/svc/wait) and while
// failed over (fo-req/svc/wait), and heap bytes per failed-over service
// (B/remote-watch: the heap after the failover less the heap before).
func BenchmarkWatchFailover(b *testing.B) {
	const services, perService = 200, 2
	const wait = 10 * time.Second
	const idle = 20 * time.Second
	f := consultest.NewFederation(b, consultest.FederationSpec{Datacenters: []consultest.DatacenterSpec{
		{Name: "dc1", Servers: 1, Options: []consultest.Option{consultest.WithConfigJSON(`{"log_level": "info"}`)}},
		{Name: "dc2", Servers: 1, Options: []consultest.Option{consultest.WithConfigJSON(`{"log_level": "info"}`)}},
	}})
	dc1 := f.DC("dc1").Nodes()[0]
	ctx := context.Background()
	regs := map[string]*consulhttp.Client{}
	defer func() {
		for _, r := range regs {
			r.Close()
		}
	}()
	for _, dc := range []string{"dc1", "dc2"} {
		r, err := consulhttp.New(f.DC(dc).Config())
		if err != nil {
			b.Fatal(err)
		}
		regs[dc] = r
		var wg sync.WaitGroup
		var regErr atomic.Value
		jobs := make(chan int)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range jobs {
					svc := "fo" + strconv.Itoa(j/perService)
					if err := r.Register(ctx, registration(dc+svc+"-"+strconv.Itoa(j%perService), svc)); err != nil {
						regErr.Store(err)
					}
				}
			}()
		}
		for j := range services * perService {
			jobs <- j
		}
		close(jobs)
		wg.Wait()
		if err, _ := regErr.Load().(error); err != nil {
			b.Fatal(err)
		}
	}
	// The registering clients' connections are not the cache's.
	regs["dc1"].Close()
	regs["dc2"].Close()

	var peak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if n, err := establishedTo(dc1.HTTPAddr); err == nil && int64(n) > peak.Load() {
				peak.Store(int64(n))
			}
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()

	counter := &requestCounter{}
	cache, err := discovery.New(f.DC("dc1").Config(dc1), discovery.WithWaitTime(wait), discovery.WithMetrics(counter),
		discovery.WithFailover(discovery.Failover{Datacenters: []string{"dc2"}}))
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	ws := make([]*discovery.Watcher, services)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for i := range ws {
		if ws[i], err = cache.Watch(beacon.Query{Service: "fo" + strconv.Itoa(i)}); err != nil {
			b.Fatal(err)
		}
	}
	for i, w := range ws {
		if s, err := w.Wait(wctx); err != nil || len(s.Instances) != perService {
			b.Fatalf("watch %d: %v", i, err)
		}
	}
	calm := counter.n.Load()
	time.Sleep(idle)
	calmReqs := counter.n.Load() - calm
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc

	// The health updates go through one connection of their own (counted
	// in conns while they run).
	cfg := f.DC("dc1").Config(dc1)
	cfg.MaxConns = 1
	updater, err := consulhttp.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for j := range services * perService {
		id := "dc1fo" + strconv.Itoa(j/perService) + "-" + strconv.Itoa(j%perService)
		if err := updater.UpdateTTL(ctx, "service:"+id, beacon.HealthCritical, ""); err != nil {
			b.Fatal(err)
		}
	}
	lastUpdate := time.Now()
	for i, w := range ws {
		for s := w.Snapshot(); !s.FailedOver || len(s.Instances) != perService; s = w.Snapshot() {
			select {
			case <-w.Changed():
			case <-wctx.Done():
				b.Fatalf("watch %d never failed over: %+v", i, s)
			}
		}
	}
	allOver, afterLast := time.Since(start), time.Since(lastUpdate)
	updater.Close()

	reqs := counter.n.Load()
	time.Sleep(idle)
	idleReqs := counter.n.Load() - reqs
	runtime.GC()
	runtime.ReadMemStats(&ms)
	after := ms.HeapAlloc
	close(stopSampling)
	<-sampled
	for _, w := range ws {
		w.Close()
	}
	b.ReportMetric(allOver.Seconds(), "all-failed-over-s")
	b.ReportMetric(afterLast.Seconds(), "after-last-update-s")
	b.ReportMetric(float64(peak.Load()), "conns")
	b.ReportMetric(float64(calmReqs)/services/(float64(idle)/float64(wait)), "req/svc/wait")
	b.ReportMetric(float64(idleReqs)/services/(float64(idle)/float64(wait)), "fo-req/svc/wait")
	b.ReportMetric(float64(int64(after)-int64(before))/services, "B/remote-watch")
}
