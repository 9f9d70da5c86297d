package httpclient_test

import (
	"log"
	"net/http"
	"time"

	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/httpclient"
)

// Send each request to the nearest instances by network coordinates: those
// on nodes within 2 ms of the nearest one, at least three of them, picked
// with P2C. Needs an agent, so it is compiled, not run.
func ExampleWithNearest() {
	cfg, err := consul.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	cache, err := discovery.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	tr := httpclient.New(cache,
		httpclient.WithBalancer(balancer.NewP2C()),
		httpclient.WithNearest(balancer.WithNearestTolerance(2*time.Millisecond), balancer.WithNearestAtLeast(3)))
	defer tr.Close()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := client.Get("http://hello/greeting")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
}
