package httpclient_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/httpclient"
	"github.com/beaconsd/beacon/registrytest"
)

// Call a Consul service by name: the URL's host is the service, and each
// request goes to one of its passing instances, retried on another when the
// connection fails. It needs a Consul agent (CONSUL_HTTP_ADDR, default
// 127.0.0.1:8500), so it is compiled, not run.
func Example() {
	cfg, err := consul.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	cache, err := discovery.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close() // after the Transport: deferred calls run last first

	tr := httpclient.New(cache)
	defer tr.Close()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	resp, err := client.Get("http://hello/greeting") // legacy_svc and api.v2 work too
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close() // ends the request's count on its instance
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s answered: %s", resp.Request.URL.Host, body)
}

// The same Transport on registrytest's in-memory registry, which stands in
// for an agent in tests, so this one runs: a real HTTP server registered as
// "hello" is called by name.
func Example_withoutAgent() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", r.URL.Path)
	}))
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)

	reg := registrytest.NewMemory()
	ctx := context.Background()
	err := reg.Register(ctx, beacon.Registration{ID: "hello-1", Service: "hello", Address: host, Port: p,
		Checks: []beacon.Check{{TTL: time.Minute, InitialStatus: beacon.HealthPassing}}})
	if err != nil {
		log.Fatal(err)
	}
	cache, err := discovery.New(consul.Config{},
		discovery.WithBackend(func(consul.Config) (beacon.Registry, error) { return reg, nil }))
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	tr := httpclient.New(cache)
	defer tr.Close()

	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	resp, err := client.Get("http://hello/greeting")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	// Output: hello from /greeting
}
