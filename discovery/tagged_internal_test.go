package discovery

import (
	"testing"

	"github.com/beaconsd/beacon"
)

// TestSameInstancesSeesTaggedAddresses: a change of tagged addresses alone
// is a change, so a snapshot carrying it is published.
func TestSameInstancesSeesTaggedAddresses(t *testing.T) {
	base := beacon.Instance{ID: "a", Node: "n", Address: "10.0.0.1", Port: 1, Health: beacon.HealthPassing}
	withWAN := base
	withWAN.TaggedAddresses = map[string]beacon.ServiceAddress{"wan": {Address: "198.51.100.7", Port: 443}}
	otherWAN := base
	otherWAN.TaggedAddresses = map[string]beacon.ServiceAddress{"wan": {Address: "198.51.100.8", Port: 443}}
	withNode := base
	withNode.NodeTaggedAddresses = map[string]string{"wan": "203.0.113.1"}
	for _, tt := range []struct {
		name string
		a, b beacon.Instance
		same bool
	}{
		{"none", base, base, true},
		{"same wan", withWAN, withWAN.Clone(), true},
		{"wan added", base, withWAN, false},
		{"wan moved", withWAN, otherWAN, false},
		{"node wan added", base, withNode, false},
	} {
		if got := sameInstances([]beacon.Instance{tt.a}, []beacon.Instance{tt.b}); got != tt.same {
			t.Errorf("%s: sameInstances = %v, want %v", tt.name, got, tt.same)
		}
	}
}
