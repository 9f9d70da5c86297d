package bench

import (
	"context"
	"io"
	"strconv"
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
