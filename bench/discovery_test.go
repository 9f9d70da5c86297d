package bench

import (
	"context"
	"io"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	kitconsul "github.com/go-kit/kit/sd/consul"
	"github.com/go-kit/kit/sd/lb"
	"github.com/go-kit/log"
	"github.com/hashicorp/consul/api"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
)

// pickFixture is an agent with three passing instances of "pick".
func pickFixture(b *testing.B) *consultest.Server {
	srv := consultest.NewServer(b)
	reg := newRegistry(b, backends[0], srv)
	for i := range 3 {
		if err := reg.Register(context.Background(), registration("pick-"+strconv.Itoa(i), "pick")); err != nil {
			b.Fatal(err)
		}
	}
	return srv
}

// kitInstancer is go-kit's own consul Instancer of the passing instances of
// service, on consul/api's default client.
func kitInstancer(b *testing.B, srv *consultest.Server, service string) *kitconsul.Instancer {
	cfg := api.DefaultConfig()
	cfg.Address = srv.HTTPAddr
	client, err := api.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return kitconsul.NewInstancer(kitconsul.NewClient(client), log.NewNopLogger(), service, nil, true)
}

func kitBalancer(b *testing.B, srv *consultest.Server, service string) (lb.Balancer, func()) {
	inst := kitInstancer(b, srv, service)
	factory := func(instance string) (endpoint.Endpoint, io.Closer, error) {
		return func(context.Context, any) (any, error) { return instance, nil }, nil, nil
	}
	ep := sd.NewEndpointer(inst, factory, log.NewNopLogger())
	deadline := time.Now().Add(30 * time.Second)
	for {
		eps, _ := ep.Endpoints()
		if len(eps) == 3 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("go-kit endpointer has %d endpoints, want 3", len(eps))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// go-kit's Instancer.Stop does not cancel its in-flight long poll; the
	// benchmark process ends it.
	return lb.NewRoundRobin(ep), func() { ep.Close(); inst.Stop() }
}

func watchPick(b *testing.B, cache *discovery.Cache) *discovery.Watcher {
	w, err := cache.Watch(beacon.Query{Service: "pick"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Close)
	if _, err := w.Wait(context.Background()); err != nil {
		b.Fatal(err)
	}
	return w
}

// BenchmarkPick is one pick of an instance to call, three passing instances.
func BenchmarkPick(b *testing.B) {
	srv := pickFixture(b)
	b.Run("beacon", func(b *testing.B) {
		cache, err := discovery.New(srv.Config())
		if err != nil {
			b.Fatal(err)
		}
		defer cache.Close()
		// Like go-kit's Balancer, a caller holds its Watcher for the service.
		w := watchPick(b, cache)
		rr := balancer.NewRoundRobin()
		b.ReportAllocs()
		for b.Loop() {
			ep, err := w.Pick(rr)
			if err != nil {
				b.Fatal(err)
			}
			ep.Done()
		}
	})
	b.Run("beacon-by-name", func(b *testing.B) {
		cache, err := discovery.New(srv.Config())
		if err != nil {
			b.Fatal(err)
		}
		defer cache.Close()
		ctx := context.Background()
		rr := balancer.NewRoundRobin()
		if _, err := cache.Instances(ctx, "pick"); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			ep, err := cache.Pick(ctx, "pick", rr)
			if err != nil {
				b.Fatal(err)
			}
			ep.Done()
		}
	})
	b.Run("gokit", func(b *testing.B) {
		bal, stop := kitBalancer(b, srv, "pick")
		defer stop()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bal.Endpoint(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("seed", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			insts := seedDiscover(srv.HTTPAddr, "pick")
			if len(insts) != 3 {
				b.Fatalf("seedDiscover() = %d, want 3", len(insts))
			}
			_ = insts[i%len(insts)]
			i++
		}
	})
}

// BenchmarkPickParallel is BenchmarkPick from every core at once;
// beacon-p2c picks with P2C instead of round robin, which counts requests
// in flight on the endpoints (an atomic add in Pick and another in Done).
func BenchmarkPickParallel(b *testing.B) {
	srv := pickFixture(b)
	for _, bc := range []struct {
		name string
		bal  balancer.Balancer
	}{
		{"beacon", balancer.NewRoundRobin()},
		{"beacon-p2c", balancer.NewP2C()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cache, err := discovery.New(srv.Config())
			if err != nil {
				b.Fatal(err)
			}
			defer cache.Close()
			w := watchPick(b, cache)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ep, err := w.Pick(bc.bal)
					if err != nil {
						b.Error(err)
						return
					}
					ep.Done()
				}
			})
		})
	}
	b.Run("gokit", func(b *testing.B) {
		bal, stop := kitBalancer(b, srv, "pick")
		defer stop()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := bal.Endpoint(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkPropagation: deregister one of three instances and time until
// the watcher sees two, then register it back and time until it sees three.
// Changes are spaced 1.2 s apart, longer than the watch's token-bucket
// refill (one query a second), so this measures propagation, not the rate
// limiter. Both watchers follow the same service and every change is
// timed for both; each sub-benchmark reports its watcher's p50, p99 and
// maximum over both directions, and the other's p99 over the same changes
// (other-p99-ms), so the comparison is never between two time windows.
func BenchmarkPropagation(b *testing.B) {
	srv := consultest.NewServer(b)
	reg := newRegistry(b, backends[0], srv)
	ctx := context.Background()
	const service = "prop"
	for i := range 3 {
		if err := reg.Register(ctx, registration(service+"-"+strconv.Itoa(i), service)); err != nil {
			b.Fatal(err)
		}
	}
	type watcher struct {
		count   func() int
		changed <-chan struct{}
	}

	cache, err := discovery.New(srv.Config())
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	w, err := cache.Watch(beacon.Query{Service: service})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	beaconW := watcher{count: func() int { return len(w.Snapshot().Instances) }, changed: w.Changed()}

	inst := kitInstancer(b, srv, service)
	defer inst.Stop()
	events := make(chan sd.Event, 16)
	inst.Register(events)
	defer inst.Deregister(events)
	var kitN atomic.Int64
	kitChanged := make(chan struct{}, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case ev := <-events:
				kitN.Store(int64(len(ev.Instances)))
				select {
				case kitChanged <- struct{}{}:
				default:
				}
			case <-done:
				return
			}
		}
	}()
	kitW := watcher{count: func() int { return int(kitN.Load()) }, changed: kitChanged}

	// wait reports whether w sees want instances within 30 s; it may run
	// on any goroutine.
	wait := func(w watcher, want int) bool {
		deadline := time.After(30 * time.Second)
		for w.count() != want {
			select {
			case <-w.changed:
			case <-deadline:
				return false
			}
		}
		return true
	}
	if _, err := w.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	if !wait(beaconW, 3) || !wait(kitW, 3) {
		b.Fatal("the watchers did not see the three instances")
	}

	// Each change is timed for both watchers at once, so their figures
	// come from the same changes under the same load; each sub-benchmark
	// reports its own watcher's and, as other-p99-ms, the other's.
	both := func(b *testing.B, want int) (beaconLat, kitLat time.Duration) {
		start := time.Now()
		ch := make(chan time.Duration, 1)
		go func() {
			if !wait(kitW, want) {
				ch <- -1
				return
			}
			ch <- time.Since(start)
		}()
		ok := wait(beaconW, want)
		beaconLat, kitLat = time.Since(start), <-ch
		if !ok || kitLat < 0 {
			b.Fatalf("a watcher did not see %d instances within 30 s", want)
		}
		return beaconLat, kitLat
	}
	measure := func(b *testing.B, beaconFirst bool) {
		var self, other []time.Duration
		victim := registration(service+"-0", service)
		record := func(bt, kt time.Duration) {
			if beaconFirst {
				self, other = append(self, bt), append(other, kt)
			} else {
				self, other = append(self, kt), append(other, bt)
			}
		}
		for b.Loop() {
			time.Sleep(1200 * time.Millisecond)
			if err := reg.Deregister(ctx, victim.ID); err != nil {
				b.Fatal(err)
			}
			record(both(b, 2))
			time.Sleep(1200 * time.Millisecond)
			if err := reg.Register(ctx, victim); err != nil {
				b.Fatal(err)
			}
			record(both(b, 3))
		}
		p := func(lat []time.Duration, q float64) float64 {
			slices.Sort(lat)
			return float64(lat[int(float64(len(lat)-1)*q)].Microseconds()) / 1000
		}
		b.ReportMetric(p(self, 0.5), "p50-ms")
		b.ReportMetric(p(self, 0.99), "p99-ms")
		b.ReportMetric(p(self, 1), "max-ms")
		b.ReportMetric(p(other, 0.99), "other-p99-ms")
	}
	b.Run("beacon", func(b *testing.B) { measure(b, true) })
	b.Run("gokit", func(b *testing.B) { measure(b, false) })
}
