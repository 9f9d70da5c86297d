package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/hashicorp/consul/api"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
)

// largeInstance is the catalog registration of instance i of service on
// an external node (10 instances a node), with tags, meta and a passing
// check; rev goes into its meta, so a new rev is a change to this one
// entry.
func largeInstance(service string, i, rev int) *api.CatalogRegistration {
	id := fmt.Sprintf("%s-%d", service, i)
	node := fmt.Sprintf("large-node-%d", i/10)
	addr := fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256)
	return &api.CatalogRegistration{
		Node: node, Address: addr, SkipNodeUpdate: true,
		NodeMeta: map[string]string{"zone": "zone-" + strconv.Itoa(i%3)},
		Service: &api.AgentService{
			ID: id, Service: service, Address: addr, Port: 8080,
			Tags: []string{"v1", "http"},
			Meta: map[string]string{"version": "1.2.3", "team": "payments", "rev": strconv.Itoa(rev)},
		},
		Check: &api.AgentCheck{Node: node, CheckID: "service:" + id, Name: "external", Status: api.HealthPassing, ServiceID: id},
	}
}

// BenchmarkLargeService watches one service of 2,000 instances
// (BEACON_LARGE_N sets another size) on external nodes of a real agent,
// with Beacon (consulhttp through discovery.Cache) and with go-kit's
// sd/consul Instancer, one after the other on the same agent, and changes
// one instance's meta at a time: each change is sent once the watcher has
// seen the previous one, paced BEACON_LARGE_GAP apart (default 1s: one
// change a second; a shorter gap lets Beacon's rate-limited feed and
// stale-view guard cover several changes with one read),
// BEACON_LARGE_CHANGES times (default 20), whatever b.N. Every change is
// one instance leaving or coming back (go-kit publishes only when its
// address list changes). It reports the process's CPU time (getrusage:
// user plus system) and the bytes allocated per change (cpu-ms/change,
// B/change), less what the same writes cost with no watcher
// (writer-cpu-ms/change, measured first).
func BenchmarkLargeService(b *testing.B) {
	n := envInt(b, "BEACON_LARGE_N", 2000)
	changes := envInt(b, "BEACON_LARGE_CHANGES", 20)
	gap := time.Second
	if s := os.Getenv("BEACON_LARGE_GAP"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("BEACON_LARGE_GAP=%q: %v", s, err)
		}
		gap = d
	}
	srv := consultest.NewServer(b, consultest.WithConfigJSON(`{"log_level": "warn"}`))
	cfg := api.DefaultConfig()
	cfg.Address = srv.HTTPAddr
	client, err := api.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	const service = "large"
	// Bounded concurrency: the servers write each registration through
	// raft; 8 in flight loads 2,000 in a few seconds.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := client.Catalog().Register(largeInstance(service, i, 0), nil); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.Logf("registered %d instances in %v", n, time.Since(start).Round(time.Millisecond))

	// change makes change c: an even one deregisters an instance, the next
	// odd one registers it again, so every change moves the passing count
	// (go-kit publishes only when its address list changes).
	change := func(b *testing.B, c int) int {
		i := (c / 2) % n
		if c%2 == 0 {
			dereg := &api.CatalogDeregistration{Node: fmt.Sprintf("large-node-%d", i/10), ServiceID: fmt.Sprintf("%s-%d", service, i)}
			if _, err := client.Catalog().Deregister(dereg, nil); err != nil {
				b.Fatal(err)
			}
			return n - 1
		}
		if _, err := client.Catalog().Register(largeInstance(service, i, c), nil); err != nil {
			b.Fatal(err)
		}
		return n
	}
	// measure makes the changes, each once count() shows the previous one
	// (at once with count nil), and returns the CPU time and bytes
	// allocated per change.
	measure := func(b *testing.B, count func() int, wake <-chan struct{}) (cpuMs, bytes float64) {
		var ms0, ms1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		cpu0 := cpuTime(b)
		for c := range changes {
			time.Sleep(gap)
			want := change(b, c)
			deadline := time.After(30 * time.Second)
			for count != nil && count() != want {
				select {
				case <-wake:
				case <-deadline:
					b.Fatalf("change %d: %d instances after 30 s, want %d", c, count(), want)
				}
			}
		}
		cpu := cpuTime(b) - cpu0
		runtime.ReadMemStats(&ms1)
		return float64(cpu.Microseconds()) / 1000 / float64(changes), float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(changes)
	}
	// The writes are this process's too: their cost, measured with no
	// watcher, is taken off each watcher's figures (and reported).
	writerCPU, writerBytes := measure(b, nil, nil)
	run := func(b *testing.B, count func() int, wake <-chan struct{}) {
		cpuMs, bytes := measure(b, count, wake)
		b.ReportMetric(cpuMs-writerCPU, "cpu-ms/change")
		b.ReportMetric(max(bytes-writerBytes, 0), "B/change")
		b.ReportMetric(writerCPU, "writer-cpu-ms/change")
		b.ReportMetric(0, "ns/op")
	}

	b.Run("beacon", func(b *testing.B) {
		for b.Loop() {
			cache, err := discovery.New(srv.Config())
			if err != nil {
				b.Fatal(err)
			}
			w, err := cache.Watch(beacon.Query{Service: service})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			snap, err := w.Wait(ctx)
			cancel()
			if err != nil || len(snap.Instances) != n {
				b.Fatalf("first snapshot: %d instances, %v; want %d", len(snap.Instances), err, n)
			}
			run(b, func() int { return len(w.Snapshot().Instances) }, w.Changed())
			w.Close()
			cache.Close()
		}
	})
	b.Run("gokit", func(b *testing.B) {
		for b.Loop() {
			inst := kitInstancer(b, srv, service)
			events := make(chan sd.Event, 1)
			inst.Register(events)
			wake := make(chan struct{}, 1)
			var last atomic.Int64
			done := make(chan struct{})
			go func() {
				for {
					select {
					case ev := <-events:
						last.Store(int64(len(ev.Instances)))
						select {
						case wake <- struct{}{}:
						default:
						}
					case <-done:
						return
					}
				}
			}()
			deadline := time.After(60 * time.Second)
			for last.Load() != int64(n) {
				select {
				case <-wake:
				case <-deadline:
					b.Fatalf("go-kit: %d instances, want %d", last.Load(), n)
				}
			}
			run(b, func() int { return int(last.Load()) }, wake)
			inst.Deregister(events)
			inst.Stop()
			close(done)
		}
	})
}

// envInt is the integer in the environment variable name, or def.
func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}
