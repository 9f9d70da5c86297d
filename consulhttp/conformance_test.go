package consulhttp_test

import (
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/registrytest"
)

// newRegistry is the registrytest factory: a client with default options,
// closed when the test ends.
func newRegistry(t *testing.T, cfg consul.Config) beacon.Registry { return newClient(t, cfg) }

// TestConformance runs the backend-agnostic suite against real Consul
// agents. Behaviour every backend shares is tested there; this package's
// other tests cover what is particular to consulhttp.
func TestConformance(t *testing.T) {
	registrytest.Run(t, newRegistry)
}

// TestHostileAgent runs the backend-agnostic tests against hostile fake
// agents. requests_test.go keeps what is particular to consulhttp: exact
// query strings and bodies, request deadlines, WithMaxBodyBytes.
func TestHostileAgent(t *testing.T) {
	registrytest.RunHostile(t, newRegistry)
}
