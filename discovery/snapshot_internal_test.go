package discovery

import (
	"errors"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
)

// TestSetIsLazyAndCarriesState: a snapshot builds no Set until something
// picks from it, and a Set built later still carries the in-flight counts
// of the last Set built, across snapshots nobody picked from.
func TestSetIsLazyAndCarriesState(t *testing.T) {
	insts := []beacon.Instance{{ID: "a", Node: "n", Address: "10.0.0.1", Port: 1, Health: beacon.HealthPassing}}
	s1 := newSnapshot("svc", SourceConsul, insts, nil, 1, time.Now())
	if s1.p.set.Load() != nil {
		t.Fatal("newSnapshot built a Set before any pick")
	}
	p, err := pick(s1, balancer.NewP2C())
	if err != nil {
		t.Fatalf("pick(s1) = %v", err)
	}
	defer p.Done()
	if s1.Set() != s1.Set() {
		t.Error("Set() built twice")
	}
	if f := s1.failed(errors.New("down")); f.Set() != s1.Set() {
		t.Error("a failed copy of a snapshot rebuilt its Set; want it shared")
	}
	if r := s1.refreshed(2, time.Now()); r.Set() != s1.Set() {
		t.Error("a refreshed copy of a snapshot rebuilt its Set; want it shared")
	}

	more := append(insts[:1:1], beacon.Instance{ID: "b", Node: "n", Address: "10.0.0.2", Port: 1, Health: beacon.HealthPassing})
	s2 := newSnapshot("svc", SourceConsul, more, s1, 3, time.Now()) // never picked from
	s3 := newSnapshot("svc", SourceConsul, more, s2, 4, time.Now())
	if s2.p.set.Load() != nil {
		t.Fatal("a snapshot nobody picked from built its Set")
	}
	if s3.p.prev.Load() != s1.Set() {
		t.Error("s3 would carry state from something other than the last Set built (s1's)")
	}
	for _, e := range s3.Set().Endpoints() {
		want := int64(0)
		if e.Instance.ID == "a" {
			want = 1
		}
		if got := e.InFlight(); got != want {
			t.Errorf("s3's %s InFlight() = %d, want %d (carried from s1 through s2)", e.Instance.ID, got, want)
		}
	}
	if s3.p.prev.Load() != nil {
		t.Error("a built Set still holds the one it carried from")
	}
}

func TestSourceString(t *testing.T) {
	for s, want := range map[Source]string{SourceNone: "none", SourceConsul: "consul", SourceFile: "file", 7: "Source(7)"} {
		if got := s.String(); got != want {
			t.Errorf("Source(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}

// TestSetRampStarts: slow start's first-sight semantics through a watch's
// snapshots. The first Set built ramps nothing (the caller has just
// started); an instance a later Set first holds ramps from that Set's
// build, the first pick after the answer that brought it, even across
// snapshots nobody picked from; a later Set keeps its start.
func TestSetRampStarts(t *testing.T) {
	inst := func(id string) beacon.Instance {
		return beacon.Instance{ID: id, Node: "n", Address: "10.0.0.1", Port: 1, Health: beacon.HealthPassing}
	}
	ramp := func(s *Snapshot, id string) time.Time {
		for _, e := range s.Set().Endpoints() {
			if e.Instance.ID == id {
				return e.RampStart()
			}
		}
		t.Fatalf("no %s in the Set", id)
		return time.Time{}
	}
	// A snapshot never picked from leaves no Set: the first Set built is
	// the caller's first, whatever came before.
	s0 := newSnapshot("svc", SourceConsul, []beacon.Instance{inst("a")}, nil, 1, time.Now())
	s1 := newSnapshot("svc", SourceConsul, []beacon.Instance{inst("a"), inst("b")}, s0, 2, time.Now())
	if !ramp(s1, "a").IsZero() || !ramp(s1, "b").IsZero() {
		t.Errorf("the first Set built ramps a from %v, b from %v; want neither ramping", ramp(s1, "a"), ramp(s1, "b"))
	}
	s2 := newSnapshot("svc", SourceConsul, []beacon.Instance{inst("a"), inst("b"), inst("c")}, s1, 3, time.Now()) // never picked from
	s3 := newSnapshot("svc", SourceConsul, []beacon.Instance{inst("a"), inst("b"), inst("c")}, s2, 4, time.Now())
	before := time.Now()
	c := ramp(s3, "c")
	if c.Before(before) || c.After(time.Now()) {
		t.Errorf("c ramps from %v, want the build of the first Set holding it (after %v)", c, before)
	}
	if !ramp(s3, "a").IsZero() {
		t.Errorf("a ramps from %v after a refresh, want no ramp", ramp(s3, "a"))
	}
	s4 := newSnapshot("svc", SourceConsul, []beacon.Instance{inst("c"), inst("a")}, s3, 5, time.Now())
	if got := ramp(s4, "c"); !got.Equal(c) {
		t.Errorf("c ramps from %v after a refresh, want %v", got, c)
	}
}
