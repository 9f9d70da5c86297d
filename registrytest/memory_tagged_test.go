package registrytest_test

import (
	"maps"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/registrytest"
)

// TestMemoryTaggedAddresses: Memory reports tagged addresses as the
// backends do, less those restating the instance's own address, and keeps
// no alias of the caller's map.
func TestMemoryTaggedAddresses(t *testing.T) {
	m := registrytest.NewMemory()
	r := ttlReg("web-1", "web")
	r.Address = "10.0.0.5"
	r.TaggedAddresses = map[string]beacon.ServiceAddress{
		beacon.TaggedWAN:     {Address: "198.51.100.7", Port: 443},
		beacon.TaggedLANIPv4: {Address: "10.0.0.5", Port: 9000},
	}
	mustRegister(t, m, r)
	r.TaggedAddresses[beacon.TaggedWAN] = beacon.ServiceAddress{Address: "changed"}
	want := map[string]beacon.ServiceAddress{beacon.TaggedWAN: {Address: "198.51.100.7", Port: 443}}

	insts, _, err := m.Instances(t.Context(), beacon.Query{Service: "web"})
	if err != nil || len(insts) != 1 || !maps.Equal(insts[0].TaggedAddresses, want) || insts[0].NodeTaggedAddresses != nil {
		t.Errorf("Instances(web) = %+v, %v; want one instance with TaggedAddresses %v", insts, err, want)
	}
	got, err := m.AgentService(t.Context(), "web-1")
	if err != nil || !maps.Equal(got.TaggedAddresses, want) {
		t.Errorf("AgentService(web-1) = %+v, %v; want TaggedAddresses %v", got, err, want)
	}
}
