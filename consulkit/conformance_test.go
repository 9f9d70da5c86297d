package consulkit_test

import (
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/registrytest"
)

func TestConformance(t *testing.T) {
	registrytest.Run(t, func(t *testing.T, cfg consul.Config) beacon.Registry { return newClient(t, cfg) })
}

// TestFaults runs the backend-agnostic fault tests against fake agents, so
// consulkit is held to what consulhttp is when an agent misbehaves.
func TestFaults(t *testing.T) {
	registrytest.RunFaults(t, func(t *testing.T, cfg consul.Config) beacon.Registry { return newClient(t, cfg) })
}
