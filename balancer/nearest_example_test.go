package balancer_test

import (
	"fmt"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
)

// ExampleNewNearest picks among the instances nearest to the caller's node
// "me", by RTTs estimated from network coordinates (in a program, a
// discovery.RTTWatcher is the RTTSource).
func ExampleNewNearest() {
	coords := []beacon.NodeCoordinate{
		{Node: "me", Coord: beacon.Coordinate{Vec: []float64{0, 0}}},
		{Node: "rack-a", Coord: beacon.Coordinate{Vec: []float64{0.0003, 0}}}, // 0.3 ms
		{Node: "zone-b", Coord: beacon.Coordinate{Vec: []float64{0.002, 0}}},  // 2 ms
	}
	rtts := beacon.NewNodeRTTs("me", 1, coords)
	set := balancer.NewSet([]beacon.Instance{
		{ID: "web-1", Node: "zone-b", Address: "10.0.1.1", Port: 8080},
		{ID: "web-2", Node: "rack-a", Address: "10.0.0.2", Port: 8080},
		{ID: "web-3", Node: "me", Address: "10.0.0.1", Port: 8080},
	}, nil)
	b := balancer.NewNearest(balancer.NewRoundRobin(), balancer.RTTFunc(func() *beacon.NodeRTTs { return rtts }))
	for range 4 {
		p, err := b.Pick(set)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(p.Instance.ID, p.Instance.Node)
		p.Done()
	}
	// Output:
	// web-2 rack-a
	// web-3 me
	// web-2 rack-a
	// web-3 me
}
