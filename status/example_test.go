package status_test

import (
	"log"
	"net/http"

	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/status"
)

// The status page on an admin listener of its own, beside pprof's, never on
// the port the service's callers use.
func ExampleNew() {
	cfg, err := consul.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	cache, err := discovery.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	page := status.New(status.WithCache(cache), status.WithAgents(cfg.Addresses...))
	defer page.Close() // stops the sampler

	admin := http.NewServeMux()
	admin.Handle("/debug/beacon", page) // HTML; JSON with ?format=json
	log.Fatal(http.ListenAndServe("127.0.0.1:9901", admin))
}
