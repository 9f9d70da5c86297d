package balancer_test

import (
	"fmt"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
)

func Example() {
	insts := []beacon.Instance{
		{ID: "web-1", Node: "n1", Address: "10.0.0.1", Port: 8080, Health: beacon.HealthPassing},
		{ID: "web-2", Node: "n2", Address: "10.0.0.2", Port: 8080, Health: beacon.HealthPassing},
	}
	set := balancer.NewSet(insts, nil)
	b := balancer.NewRoundRobin()
	for range 3 {
		e, err := b.Pick(set)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(e.Addr)
		e.Done()
	}

	// Consul reports a change: rebuild the set from the previous one.
	set = balancer.NewSet(insts[1:], set)
	fmt.Println(set.Len())
	// Output:
	// 10.0.0.1:8080
	// 10.0.0.2:8080
	// 10.0.0.1:8080
	// 1
}

func ExampleNewWeighted() {
	insts := []beacon.Instance{
		{ID: "a", Node: "n1", Health: beacon.HealthPassing, Weights: beacon.Weights{Passing: 5, Warning: 1}},
		{ID: "b", Node: "n1", Health: beacon.HealthPassing, Weights: beacon.Weights{Passing: 1, Warning: 1}},
		{ID: "c", Node: "n1", Health: beacon.HealthWarning, Weights: beacon.Weights{Passing: 10, Warning: 1}},
	}
	set := balancer.NewSet(insts, nil)
	b := balancer.NewWeighted()
	for range 7 {
		e, _ := b.Pick(set)
		fmt.Print(e.Instance.ID, " ")
		e.Done()
	}
	fmt.Println()
	// Output: a a b a c a a
}

func ExampleNewP2C() {
	insts := []beacon.Instance{
		{ID: "slow", Node: "n1"},
		{ID: "fast", Node: "n1"},
	}
	set := balancer.NewSet(insts, nil)
	b := balancer.NewP2C()
	stuck, _ := b.Pick(set) // never Done: still in flight
	for range 3 {
		e, _ := b.Pick(set)
		fmt.Println(e.Instance.ID != stuck.Instance.ID)
		e.Done()
	}
	// Output:
	// true
	// true
	// true
}
