package consulhttp_test

import (
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/registrytest"
)

// newRegistry is the registrytest factory: a client with default options,
// closed when the test ends.
func newRegistry(t *testing.T, cfg consul.Config) beacon.Registry {
	c, err := consulhttp.New(cfg)
	if err != nil {
		t.Fatalf("consulhttp.New(%v) = %v, want nil", cfg.Addresses, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConformance runs the backend-agnostic suite against real Consul
// agents. Behaviour every backend shares is tested there; this package's
// other tests cover what is particular to consulhttp.
func TestConformance(t *testing.T) {
	registrytest.Run(t, newRegistry)
}

// TestFaults runs the backend-agnostic fault tests against fake agents.
// fault_test.go keeps what is particular to consulhttp: exact query strings
// and bodies, request deadlines, WithMaxBodyBytes.
func TestFaults(t *testing.T) {
	registrytest.RunFaults(t, newRegistry)
}
