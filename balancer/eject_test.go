package balancer_test

import (
	"slices"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
)

func three() []beacon.Instance {
	return []beacon.Instance{
		{ID: "a", Node: "n", Address: "10.0.0.1", Port: 1, Health: beacon.HealthPassing},
		{ID: "b", Node: "n", Address: "10.0.0.2", Port: 1, Health: beacon.HealthPassing},
		{ID: "c", Node: "n", Address: "10.0.0.3", Port: 1, Health: beacon.HealthPassing},
	}
}

func idsOf(s *balancer.Set) []string {
	var out []string
	for _, e := range s.Endpoints() {
		out = append(out, e.Instance.ID)
	}
	return out
}

// endpoint returns the endpoint of s with id.
func endpoint(t *testing.T, s *balancer.Set, id string) *balancer.Endpoint {
	t.Helper()
	for _, e := range s.Endpoints() {
		if e.Instance.ID == id {
			return e
		}
	}
	t.Fatalf("no %q in %v", id, idsOf(s))
	return nil
}

func TestEjection(t *testing.T) {
	src := balancer.NewSet(three(), nil)
	e := balancer.NewEjection(2, time.Hour, nil)
	if got := e.Filter(src); got != src {
		t.Fatalf("Filter before any failure = %v, want src itself", idsOf(got))
	}
	e.Failed(endpoint(t, src, "a"))
	e.Succeeded(endpoint(t, src, "a")) // a response resets the count
	e.Failed(endpoint(t, src, "a"))
	if got := e.Filter(src); got != src {
		t.Fatalf("Filter after failures not in a row = %v, want src itself", idsOf(got))
	}
	e.Failed(endpoint(t, e.Filter(src), "a"))
	got := e.Filter(src)
	if want := []string{"b", "c"}; !slices.Equal(idsOf(got), want) {
		t.Fatalf("Filter after 2 failures of a = %v, want %v", idsOf(got), want)
	}
	if e.Filter(src) != got {
		t.Error("Filter rebuilt an unchanged view")
	}
	if ej := e.Ejected(); len(ej) != 1 || ej[0].ID != "a" {
		t.Errorf("Ejected() = %v, want [a]", ej)
	}

	// The ejection survives a refresh of the Set; c leaves.
	src2 := balancer.NewSet(three()[:2], src)
	if want := []string{"b"}; !slices.Equal(idsOf(e.Filter(src2)), want) {
		t.Fatalf("Filter of a refreshed Set = %v, want %v", idsOf(e.Filter(src2)), want)
	}
	// b is the last one not ejected: it is never ejected.
	for range 4 {
		e.Failed(endpoint(t, e.Filter(src2), "b"))
	}
	if want := []string{"b"}; !slices.Equal(idsOf(e.Filter(src2)), want) {
		t.Errorf("Filter after the last instance kept failing = %v, want %v", idsOf(e.Filter(src2)), want)
	}
}

func TestEjectionEnds(t *testing.T) {
	src := balancer.NewSet(three(), nil)
	e := balancer.NewEjection(1, time.Nanosecond, nil) // over as soon as it starts
	e.Filter(src)
	e.Failed(endpoint(t, src, "a"))
	if got := e.Filter(src); len(got.Endpoints()) != 3 {
		t.Errorf("Filter after the ejection ended = %v, want all three", idsOf(got))
	}
	if ej := e.Ejected(); len(ej) != 0 {
		t.Errorf("Ejected() after the ejection ended = %v, want none", ej)
	}
}

func TestEjectionOff(t *testing.T) {
	var e *balancer.Ejection = balancer.NewEjection(0, time.Hour, nil)
	if e != nil {
		t.Fatal("NewEjection(0, …) != nil, want nil (off)")
	}
	src := balancer.NewSet(three(), nil)
	e.Failed(endpoint(t, src, "a"))
	e.Succeeded(endpoint(t, src, "a"))
	if e.Filter(src) != src || e.Ejected() != nil {
		t.Error("a nil Ejection filtered something")
	}
}

func TestWithout(t *testing.T) {
	src := balancer.NewSet(three(), nil)
	p, err := balancer.NewP2C().Pick(src)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Done()
	if got := src.Without(func(*balancer.Endpoint) bool { return false }); got != src {
		t.Errorf("Without(nothing) = %v, want src itself", idsOf(got))
	}
	skip := p.Instance.ID
	rest := src.Without(func(e *balancer.Endpoint) bool { return e.Instance.ID != skip })
	if !slices.Equal(idsOf(rest), []string{skip}) || rest.Endpoints()[0].InFlight() != 1 {
		t.Errorf("Without(all but %s) = %v with %d in flight, want [%s] sharing its 1 in flight", skip, idsOf(rest), rest.Endpoints()[0].InFlight(), skip)
	}
	if got := src.Without(func(*balancer.Endpoint) bool { return true }); got.Len() != 0 {
		t.Errorf("Without(everything) = %v, want empty", idsOf(got))
	}
}
