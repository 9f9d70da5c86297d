package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// BenchmarkWatchMany watches 1,000 services of 10 instances each (4 meta
// keys of 16 characters per instance) through one agent with a blocking
// wait of 10 s, then stays idle (60 s; BEACON_IDLE=20s shortens it). It
// runs its scenario once, whatever b.N. It reports the peak of concurrent
// connections to the agent's HTTP port from /proc/net/tcp (conns),
// requests per minute while idle (idle-req/min) and per watched service per
// wait period (req/svc/wait), and heap bytes per watched instance
// (B/instance). BEACON_HEAPPROFILE=file writes the heap profile taken
// when B/instance is measured.
func BenchmarkWatchMany(b *testing.B) {
	const services, perService = 1000, 10
	const wait = 10 * time.Second
	idle := 60 * time.Second
	if v := os.Getenv("BEACON_IDLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		idle = d
	}
	// Info, not debug: at debug the agent logs every service at every
	// anti-entropy sync, which with 10,000 services is most of its work.
	srv := consultest.NewServer(b, consultest.WithConfigJSON(`{"log_level": "info"}`))
	reg := newRegistry(b, backends[0], srv)
	ctx := context.Background()
	meta := map[string]string{}
	for i := range 4 {
		meta[fmt.Sprintf("key%013d", i)] = strings.Repeat(strconv.Itoa(i), 16)
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	var regErr atomic.Value
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				svc := "many" + strconv.Itoa(j/perService)
				r := registration(svc+"-"+strconv.Itoa(j%perService), svc)
				r.Meta = meta
				if err := reg.Register(ctx, r); err != nil {
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
	// The registering client's idle connections are not the cache's.
	reg.(interface{ Close() error }).Close()

	var peak atomic.Int64
	// The sampler allocates; heap measurements hold sampling so that what
	// they count is the cache's.
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

	if idle < 12*time.Second {
		b.Fatalf("BEACON_IDLE %v: at least 12s, the heap is read in the first 10", idle)
	}
	var ms0, ms1 runtime.MemStats
	sampling.Lock()
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	sampling.Unlock()
	counter := &requestCounter{}
	cache, err := discovery.New(srv.Config(), discovery.WithWaitTime(wait), discovery.WithMetrics(counter))
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	var ws []*discovery.Watcher
	for i := range services {
		w, err := cache.Watch(beacon.Query{Service: "many" + strconv.Itoa(i)})
		if err != nil {
			b.Fatal(err)
		}
		ws = append(ws, w)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for i, w := range ws {
		s, err := w.Wait(wctx)
		if err != nil || len(s.Instances) != perService {
			b.Fatalf("watch %d: %d instances, %v", i, len(s.Instances), err)
		}
	}
	// The heap is read five times, 2 s apart, early in the idle window, and
	// the least is kept: the feed's fetches never stop (every service is
	// fetched once per wait period), and an answer being decoded at a GC
	// is not memory the cache keeps.
	before := counter.n.Load()
	idleStart := time.Now()
	var heap uint64
	for i := range 5 {
		time.Sleep(2 * time.Second)
		sampling.Lock()
		runtime.GC()
		runtime.ReadMemStats(&ms1)
		if i == 0 || ms1.HeapAlloc < heap {
			heap = ms1.HeapAlloc
			if path := os.Getenv("BEACON_HEAPPROFILE"); path != "" {
				writeHeapProfile(b, path)
			}
		}
		sampling.Unlock()
	}
	time.Sleep(idle - time.Since(idleStart))
	idleReqs := counter.n.Load() - before
	close(stopSampling)
	<-sampled
	for _, w := range ws {
		w.Close()
	}
	b.ReportMetric(float64(peak.Load()), "conns")
	b.ReportMetric(float64(idleReqs)/idle.Minutes(), "idle-req/min")
	b.ReportMetric(float64(idleReqs)/services/(float64(idle)/float64(wait)), "req/svc/wait")
	b.ReportMetric(float64(int64(heap)-int64(ms0.HeapAlloc))/(services*perService), "B/instance")
}
