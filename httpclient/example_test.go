package httpclient_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/httpclient"
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
