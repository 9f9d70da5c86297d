package beacon_test

import (
	"fmt"
	"time"

	"github.com/beaconsd/beacon"
)

// Datacenters ranked from dc1 by the coordinates of their servers (in
// seconds, one dimension for brevity; Consul's have eight).
func ExampleSortDatacentersByRTT() {
	server := func(x float64) beacon.NodeCoordinate {
		return beacon.NodeCoordinate{Node: "s", Coord: beacon.Coordinate{Vec: []float64{x}, Height: 0.0001}}
	}
	coords := []beacon.DatacenterCoordinates{
		{Datacenter: "dc1", AreaID: "wan", Coordinates: []beacon.NodeCoordinate{server(0)}},
		{Datacenter: "eu", AreaID: "wan", Coordinates: []beacon.NodeCoordinate{server(0.080), server(0.082), server(0.120)}},
		{Datacenter: "us", AreaID: "wan", Coordinates: []beacon.NodeCoordinate{server(-0.030)}},
	}
	for _, d := range beacon.SortDatacentersByRTT("dc1", []string{"dc1", "eu", "us", "ap"}, coords) {
		// Estimates are truncated to the nanosecond, as serf does.
		fmt.Println(d.Name, d.Local, d.Known, d.RTT.Round(time.Microsecond))
	}
	// Output:
	// dc1 true true 0s
	// us false true 30.2ms
	// eu false true 82.2ms
	// ap false false 0s
}
