package balancer

import (
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/panicset"
)

// TestPanicSetIgnoresHealth: the Set discovery builds for a snapshot in
// panic weights every instance by Weights.Passing, whatever its health,
// without changing the instances' Health; Without keeps that.
func TestPanicSetIgnoresHealth(t *testing.T) {
	newPanic := panicset.NewSet.(func([]beacon.Instance, *Set) *Set)
	in := []beacon.Instance{inst("a"), inst("b"), inst("c"), inst("d")}
	in[1].Health = beacon.HealthCritical
	in[2].Health, in[2].Weights = beacon.HealthWarning, beacon.Weights{Passing: 2, Warning: 1}
	in[3].Health, in[3].Maintenance = beacon.HealthCritical, true // discovery never publishes it in panic; the Set does not decide

	if got := NewSet(in, nil).Endpoints()[1].Weight(); got != 0 {
		t.Fatalf("NewSet: critical Weight() = %d, want 0", got)
	}
	s := newPanic(in, NewSet(in, nil))
	wantW := []int{1, 1, 2, 1}
	for i, e := range s.Endpoints() {
		if e.Weight() != wantW[i] {
			t.Errorf("panic Set: %s Weight() = %d, want %d", e.Instance.ID, e.Weight(), wantW[i])
		}
		if e.Instance != &in[i] || e.Instance.Health != []beacon.Health{beacon.HealthPassing, beacon.HealthCritical, beacon.HealthWarning, beacon.HealthCritical}[i] {
			t.Errorf("panic Set: %s Instance = %p health %s, want &insts[%d] with its own health", e.Instance.ID, e.Instance, e.Instance.Health, i)
		}
	}
	counts := map[string]int{}
	w := NewWeighted()
	for range 50 { // 10 cycles of 1+1+2+1
		p, _ := w.Pick(s)
		counts[p.Instance.ID]++
		p.Done()
	}
	if counts["a"] != 10 || counts["b"] != 10 || counts["c"] != 20 || counts["d"] != 10 {
		t.Errorf("Weighted over a panic Set picked %v, want a:10 b:10 c:20 d:10", counts)
	}

	rest := s.Without(func(e *Endpoint) bool { return e.Instance.ID == "a" })
	if rest.Len() != 3 || rest.Endpoints()[0].Weight() != 1 {
		t.Errorf("Without on a panic Set: %d endpoints, critical b Weight() = %d; want 3 and 1", rest.Len(), rest.Endpoints()[0].Weight())
	}
	if w := NewSet(in, s).Endpoints()[1].Weight(); w != 0 {
		t.Errorf("NewSet(prev: a panic Set): critical Weight() = %d, want 0 (panic is not carried over)", w)
	}
}
