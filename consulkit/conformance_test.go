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

// TestHostileAgent runs the backend-agnostic tests against hostile fake
// agents, so consulkit is held to what consulhttp is when an agent
// misbehaves.
func TestHostileAgent(t *testing.T) {
	registrytest.RunHostile(t, func(t *testing.T, cfg consul.Config) beacon.Registry { return newClient(t, cfg) })
}
