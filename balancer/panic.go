package balancer

import (
	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/panicset"
)

func init() {
	panicset.NewSet = func(insts []beacon.Instance, prev *Set) *Set { return newSet(insts, prev, true) }
}
