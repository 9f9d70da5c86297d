package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/registrytest"
)

// Follow a service: every change Consul reports, and how fresh it is. The
// examples need a Consul agent (CONSUL_HTTP_ADDR, default 127.0.0.1:8500),
// so they are compiled, not run.
func ExampleCache_Watch() {
	cfg, err := consul.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	cache, err := discovery.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	w, err := cache.Watch(beacon.Query{Service: "hello"})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := w.Wait(ctx); err != nil {
		log.Fatal(err) // a *discovery.UnreachableError when no agent answers
	}
	for {
		s := w.Snapshot()
		if s.Err != nil { // Consul cannot be asked: s holds the last good answer
			fmt.Printf("%d instances, %v old (%v)\n", len(s.Instances), s.Age(), s.Err)
		} else {
			fmt.Printf("%d instances\n", len(s.Instances))
		}
		select {
		case <-w.Changed():
		case <-ctx.Done():
			return
		}
	}
}

// Read a service's passing instances: the first call for a service waits
// for Consul's answer, later ones read memory.
func ExampleCache_Instances() {
	cfg, err := consul.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	cache, err := discovery.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	insts, err := cache.Instances(ctx, "hello")
	switch {
	case errors.Is(err, beacon.ErrUnavailable):
		log.Fatal(err) // names the agent and what it answered (503 material)
	case err != nil:
		log.Fatal(err)
	}
	for _, in := range insts {
		fmt.Println(in.ID, in.Address, in.Port)
	}
}

// Pick an instance per request: no lock, no allocation, no network once the
// service is watched.
func ExampleCache_Pick() {
	cfg, err := consul.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	cache, err := discovery.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	b := balancer.NewP2C() // build once, reuse for every pick
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := cache.Pick(ctx, "hello", b)
	if err != nil {
		log.Fatal(err) // beacon.ErrNoInstances, or why there are none
	}
	defer p.Done() // when the request ends
	fmt.Println("calling", p.Addr)
}

// What a lookup says when no agent can be reached: an error naming the
// agent and what it met, which matches beacon.ErrUnavailable (a 503 for an
// HTTP handler). Nothing listens on 127.0.0.1:1, so this one runs.
func ExampleUnreachableError() {
	cache, err := discovery.New(consul.Config{Addresses: []string{"127.0.0.1:1"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = cache.Instances(ctx, "hello")
	var ue *discovery.UnreachableError
	if errors.As(err, &ue) {
		fmt.Println(ue.Service, ue.Agents, errors.Is(err, beacon.ErrUnavailable))
	}
	// Output: hello [127.0.0.1:1] true
}

// The same calls on registrytest's in-memory registry, which stands in for
// an agent in tests, so this one runs: register two instances, read them,
// and pick them in turn.
func Example_withoutAgent() {
	reg := registrytest.NewMemory()
	cache, err := discovery.New(consul.Config{},
		discovery.WithBackend(func(consul.Config) (beacon.Registry, error) { return reg, nil }))
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, id := range []string{"hello-1", "hello-2"} {
		err := reg.Register(ctx, beacon.Registration{ID: id, Service: "hello", Address: "10.0.0.1", Port: 8080 + i,
			Checks: []beacon.Check{{TTL: time.Minute, InitialStatus: beacon.HealthPassing}}})
		if err != nil {
			log.Fatal(err)
		}
	}

	insts, err := cache.Instances(ctx, "hello")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(insts), "instances")
	b := balancer.NewRoundRobin()
	for range 3 {
		p, err := cache.Pick(ctx, "hello", b)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(p.Instance.ID, p.Addr)
		p.Done()
	}
	// Output:
	// 2 instances
	// hello-1 10.0.0.1:8080
	// hello-2 10.0.0.1:8081
	// hello-1 10.0.0.1:8080
}

// A panic threshold: with one of three instances passing, below half, the
// cache publishes all three and balancers spread calls over them, rather
// than send everything to the one survivor. Instance.Health still tells
// which one passes.
func ExampleWithPanicThreshold() {
	reg := registrytest.NewMemory()
	cache, err := discovery.New(consul.Config{}, discovery.WithPanicThreshold(0.5),
		discovery.WithBackend(func(consul.Config) (beacon.Registry, error) { return reg, nil }))
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, h := range []beacon.Health{beacon.HealthPassing, beacon.HealthCritical, beacon.HealthCritical} {
		err := reg.Register(ctx, beacon.Registration{ID: fmt.Sprintf("hello-%d", i+1), Service: "hello", Address: "10.0.0.1", Port: 8080 + i,
			Checks: []beacon.Check{{TTL: time.Minute, InitialStatus: h}}})
		if err != nil {
			log.Fatal(err)
		}
	}

	s, err := cache.Snapshot(ctx, "hello")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(s.Instances), "instances, panic:", s.Panic)
	b := balancer.NewWeighted()
	for range 3 {
		p, err := cache.Pick(ctx, "hello", b)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(p.Instance.ID, p.Instance.Health)
		p.Done()
	}
	// Output:
	// 3 instances, panic: true
	// hello-1 passing
	// hello-2 critical
	// hello-3 critical
}
