package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consulkit"
	"github.com/beaconsd/beacon/consultest"
)

type backend struct {
	name string
	new  func(consul.Config) (beacon.Registry, error)
}

var backends = []backend{
	{"http", func(c consul.Config) (beacon.Registry, error) { return consulhttp.New(c) }},
	{"kit", func(c consul.Config) (beacon.Registry, error) { return consulkit.New(c) }},
}

func newRegistry(b *testing.B, be backend, srv *consultest.Server) beacon.Registry {
	b.Helper()
	r, err := be.new(srv.Config())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.(interface{ Close() error }).Close() })
	return r
}

// registration gives each instance a port of its own (10000 plus the
// number its ID ends in): discovery offers one entry per address and port,
// so instances sharing one would be counted once.
func registration(id, service string) beacon.Registration {
	n, _ := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
	return beacon.Registration{
		ID: id, Service: service, Address: "127.0.0.1", Port: 10000 + n%50000,
		Tags: []string{"bench"}, Meta: map[string]string{"version": "1"},
		Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthPassing}},
	}
}

// BenchmarkRegister is one register plus one deregister.
func BenchmarkRegister(b *testing.B) {
	srv := consultest.NewServer(b)
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			reg := newRegistry(b, be, srv)
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				id := "reg-" + be.name + "-" + strconv.Itoa(i)
				if err := reg.Register(ctx, registration(id, "register-bench")); err != nil {
					b.Fatal(err)
				}
				if err := reg.Deregister(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// seedInstance and seedDiscover are the seed's DiscoverServices: a new
// http.Client and a GET per lookup, no passing filter, []interface{} out.
type seedInstance struct {
	ID      string
	Service string
	Address string
	Port    int
	Meta    map[string]string
	Tags    []string
}

func seedDiscover(host string, serviceName string) []interface{} {
	req, _ := http.NewRequest("GET", "http://"+host+"/v1/health/service/"+serviceName, nil)
	client := http.Client{}
	resp, err := client.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var serviceList []struct{ Service seedInstance }
	if err := json.NewDecoder(resp.Body).Decode(&serviceList); err != nil {
		return nil
	}
	instances := make([]interface{}, len(serviceList))
	for i := range serviceList {
		instances[i] = serviceList[i].Service
	}
	return instances
}

// BenchmarkLookup is one one-shot lookup of a service with n passing instances.
func BenchmarkLookup(b *testing.B) {
	srv := consultest.NewServer(b)
	setup, err := consulhttp.New(srv.Config())
	if err != nil {
		b.Fatal(err)
	}
	defer setup.Close()
	sizes := []int{1, 10, 100}
	for _, n := range sizes {
		for i := range n {
			if err := setup.Register(context.Background(), registration(fmt.Sprintf("look-%d-%d", n, i), "lookup"+strconv.Itoa(n))); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			reg := newRegistry(b, be, srv)
			for _, n := range sizes {
				b.Run(strconv.Itoa(n), func(b *testing.B) {
					q := beacon.Query{Service: "lookup" + strconv.Itoa(n)}
					b.ReportAllocs()
					for b.Loop() {
						insts, _, err := reg.Instances(context.Background(), q)
						if err != nil || len(insts) != n {
							b.Fatalf("Instances() = %d, %v; want %d", len(insts), err, n)
						}
					}
				})
			}
		})
	}
	b.Run("seed", func(b *testing.B) {
		for _, n := range sizes {
			b.Run(strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if got := seedDiscover(srv.HTTPAddr, "lookup"+strconv.Itoa(n)); len(got) != n {
						b.Fatalf("seedDiscover() = %d, want %d", len(got), n)
					}
				}
			})
		}
	})
}

var wakeRuns atomic.Int64

// BenchmarkWake is the time from a change (a TTL check going from passing to
// warning or back) to the return of a blocking query waiting on it.
func BenchmarkWake(b *testing.B) {
	srv := consultest.NewServer(b)
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			reg := newRegistry(b, be, srv)
			ctx := context.Background()
			// A fresh service per run: a check left at warning by an earlier
			// run (-count > 1) would make the first change no change.
			service := "wake-" + be.name + "-" + strconv.Itoa(int(wakeRuns.Add(1)))
			r := registration(service+"-1", service)
			if err := reg.Register(ctx, r); err != nil {
				b.Fatal(err)
			}
			check := r.CheckIDs()[0]
			_, meta, err := reg.Instances(ctx, beacon.Query{Service: service, IncludeUnhealthy: true})
			if err != nil {
				b.Fatal(err)
			}
			index := meta.LastIndex
			status := []beacon.Health{beacon.HealthWarning, beacon.HealthPassing}
			type result struct {
				meta beacon.QueryMeta
				err  error
			}
			woke := make(chan result, 1)
			var wake time.Duration
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				go func() {
					_, m, err := reg.Instances(ctx, beacon.Query{Service: service, IncludeUnhealthy: true, WaitIndex: index, WaitTime: time.Minute})
					woke <- result{m, err}
				}()
				start := time.Now()
				if err := reg.UpdateTTL(ctx, check, status[i%2], ""); err != nil {
					b.Fatal(err)
				}
				res := <-woke
				wake += time.Since(start)
				if res.err != nil {
					b.Fatal(res.err)
				}
				index = res.meta.LastIndex
			}
			b.ReportMetric(float64(wake.Microseconds())/float64(b.N), "µs-change-to-wake")
		})
	}
}
