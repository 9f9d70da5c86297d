package beacon

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

func coord(adj, height float64, vec ...float64) Coordinate {
	return Coordinate{Vec: vec, Error: 1.5, Adjustment: adj, Height: height}
}

// TestDistanceTo holds DistanceTo to the nanoseconds serf v0.10.1's
// Coordinate.DistanceTo gives for the same coordinates (computed with
// serf's own code; the last pair is dc1's and dc2's servers on a test
// federation).
func TestDistanceTo(t *testing.T) {
	dc1 := coord(0.00015056258962769064, 0.00025384789850351836,
		-0.00007959004009084928, 0.000017905326910549604, -0.000021292190526090133, 0.00009512931239070943,
		0.00003910855086048273, 0.00004534344588321657, -0.00006306735407722437, -0.000019619868768490622)
	dc2 := coord(0.00006549504760265643, 0.000024531953854797634,
		0.00004961540944576537, -0.000011161950979207257, 0.000013273278286370262, -0.00005930239234923847,
		-0.000024379768643896997, -0.00002826652217550963, 0.00003931537905535384, 0.000012230774367115403)
	for _, tc := range []struct {
		name string
		a, b Coordinate
		want time.Duration
		ok   bool
	}{
		{"euclidean", coord(0, 0, 0, 0, 0), coord(0, 0, 3, 4, 0), 5 * time.Second, true},
		{"heights and adjustments", coord(0.0005, 0.0001, 0.001, 0.002), coord(0.0002, 0.00002, -0.001, 0.004), 3648427, true},
		// The adjusted distance would be negative: Consul keeps the raw one.
		{"negative adjustment ignored", coord(-0.01, 0.0001, 0.001, 0.002), coord(0.0002, 0.00002, -0.001, 0.004), 2948427, true},
		{"real servers", dc1, dc2, 746486, true},
		{"same point", coord(0, 0, 1, 2), coord(0, 0, 1, 2), 0, true},
		{"no vec", coord(0, 0.5), coord(0, 0.25), 750 * time.Millisecond, true},
		{"dimensions differ", coord(0, 0, 1, 2), coord(0, 0, 1, 2, 3), 0, false},
		{"NaN", coord(0, 0, math.NaN()), coord(0, 0, 1), 0, false},
		{"infinite height", coord(0, math.Inf(1), 1), coord(0, 0, 1), 0, false},
		{"overflowing sum", coord(0, 0, 1e200), coord(0, 0, -1e200), 0, false},
		{"beyond a Duration", coord(0, 0, 1e12), coord(0, 0, 0), 0, false},
		{"negative heights", coord(0, -1, 0), coord(0, -1, 0), 0, false},
	} {
		got, ok := tc.a.DistanceTo(tc.b)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: DistanceTo = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
		if back, bok := tc.b.DistanceTo(tc.a); back != got || bok != ok {
			t.Errorf("%s: DistanceTo is not symmetric: %d, %v one way, %d, %v the other", tc.name, got, ok, back, bok)
		}
	}
}

// at is a coordinate on the first axis, rtt/2 from the origin with no
// height, so two of them are their difference apart.
func at(d time.Duration) Coordinate { return Coordinate{Vec: []float64{d.Seconds()}} }

func nodes(cs ...Coordinate) []NodeCoordinate {
	out := make([]NodeCoordinate, len(cs))
	for i, c := range cs {
		out[i] = NodeCoordinate{Node: fmt.Sprint("s", i), Coord: c}
	}
	return out
}

func TestSortDatacentersByRTT(t *testing.T) {
	ms := time.Millisecond
	wan := func(dc string, cs ...Coordinate) DatacenterCoordinates {
		return DatacenterCoordinates{Datacenter: dc, AreaID: "wan", Coordinates: nodes(cs...)}
	}
	for _, tc := range []struct {
		name   string
		local  string
		names  []string
		coords []DatacenterCoordinates
		want   string
	}{
		{"one datacenter", "dc1", []string{"dc1"}, []DatacenterCoordinates{wan("dc1", at(0))}, "[dc1 (local)]"},
		{"nearest first", "dc1", []string{"dc1", "far", "near"},
			[]DatacenterCoordinates{wan("far", at(90*ms)), wan("dc1", at(0)), wan("near", at(20*ms))},
			"[dc1 (local) near (20ms) far (90ms)]"},
		// Local servers at 0 and 10 ms, remote ones at 30, 31 and 100 ms:
		// pairs 20 21 30 31 90 100, upper median 31 ms.
		{"median over server pairs", "dc1", []string{"dc1", "dc2"},
			[]DatacenterCoordinates{wan("dc1", at(0), at(10*ms)), wan("dc2", at(30*ms), at(31*ms), at(100*ms))},
			"[dc1 (local) dc2 (31ms)]"},
		{"ties by name", "dc1", []string{"dc1", "b", "a"},
			[]DatacenterCoordinates{wan("dc1", at(0)), wan("b", at(5*ms)), wan("a", at(-5*ms))},
			"[dc1 (local) a (5ms) b (5ms)]"},
		// Without coordinates, Consul's own order stays.
		{"no coordinates", "dc1", []string{"dc1", "z", "a"}, nil, "[dc1 (local) z (RTT unknown) a (RTT unknown)]"},
		{"local not first in names", "dc2", []string{"dc1", "dc2"}, nil, "[dc2 (local) dc1 (RTT unknown)]"},
		{"local missing from names", "dc3", []string{"dc1"}, nil, "[dc3 (local) dc1 (RTT unknown)]"},
		{"no local coordinate", "dc1", []string{"dc1", "dc2"}, []DatacenterCoordinates{wan("dc2", at(5*ms))},
			"[dc1 (local) dc2 (RTT unknown)]"},
		{"unknown after known", "dc1", []string{"dc1", "x", "y"}, []DatacenterCoordinates{wan("dc1", at(0)), wan("y", at(7*ms))},
			"[dc1 (local) y (7ms) x (RTT unknown)]"},
		{"only in coordinates", "dc1", []string{"dc1"}, []DatacenterCoordinates{wan("dc1", at(0)), wan("dc2", at(3*ms))},
			"[dc1 (local) dc2 (3ms)]"},
		{"local unknown", "", []string{"dc1", "dc2"}, []DatacenterCoordinates{wan("dc1", at(0)), wan("dc2", at(3*ms))},
			"[dc1 (RTT unknown) dc2 (RTT unknown)]"},
		{"duplicates listed once", "dc1", []string{"dc1", "dc2", "dc2", ""}, nil, "[dc1 (local) dc2 (RTT unknown)]"},
		// A pair Consul cannot compare (other dimensions) is left out.
		{"incompatible pair left out", "dc1", []string{"dc1", "dc2"},
			[]DatacenterCoordinates{wan("dc1", at(0)), wan("dc2", Coordinate{Vec: []float64{1, 2}}, at(4*ms))},
			"[dc1 (local) dc2 (4ms)]"},
		// Several areas: the lowest median; a datacenter compares only with
		// local servers of the same area.
		{"lowest over areas", "dc1", []string{"dc1", "dc2"},
			[]DatacenterCoordinates{wan("dc1", at(0)), wan("dc2", at(40*ms)),
				{Datacenter: "dc1", AreaID: "a2", Coordinates: nodes(at(0))}, {Datacenter: "dc2", AreaID: "a2", Coordinates: nodes(at(25 * ms))},
				{Datacenter: "dc2", AreaID: "a3", Coordinates: nodes(at(1 * ms))}},
			"[dc1 (local) dc2 (25ms)]"},
	} {
		got := SortDatacentersByRTT(tc.local, tc.names, tc.coords)
		if s := fmt.Sprint(got); s != tc.want {
			t.Errorf("%s: SortDatacentersByRTT(%q, %q, …) = %s, want %s", tc.name, tc.local, tc.names, s, tc.want)
		}
	}
}

// TestSortDatacentersByRTTBounded: a hostile answer with many servers
// costs a bounded number of distance computations.
func TestSortDatacentersByRTTBounded(t *testing.T) {
	many := make([]NodeCoordinate, 50_000)
	for i := range many {
		many[i] = NodeCoordinate{Node: "s", Coord: at(time.Duration(i) * time.Microsecond)}
	}
	coords := []DatacenterCoordinates{
		{Datacenter: "dc1", AreaID: "wan", Coordinates: many},
		{Datacenter: "dc2", AreaID: "wan", Coordinates: many},
	}
	for i := range 2000 {
		coords = append(coords, DatacenterCoordinates{Datacenter: fmt.Sprint("x", i), AreaID: "wan", Coordinates: many[:100]})
	}
	start := time.Now()
	got := SortDatacentersByRTT("dc1", nil, coords)
	if len(got) != 2002 || !got[0].Local || !got[1].Known {
		t.Errorf("SortDatacentersByRTT(50,000 servers a side) = %d datacenters, first %v, %v; want 2002, local first, then one known", len(got), got[0], got[1])
	}
	t.Logf("SortDatacentersByRTT of 2,002 datacenters, 250,000 servers: %v", time.Since(start))
}

// lister is a DatacenterLister with set answers.
type lister struct {
	names                        []string
	coords                       []DatacenterCoordinates
	local                        string
	namesErr, coordErr, localErr error
}

func (l lister) Datacenters(context.Context) ([]string, error) { return l.names, l.namesErr }
func (l lister) DatacenterCoordinates(context.Context) ([]DatacenterCoordinates, error) {
	return l.coords, l.coordErr
}
func (l lister) LocalDatacenter(context.Context) (string, error) { return l.local, l.localErr }

func TestNearestDatacenters(t *testing.T) {
	coords := []DatacenterCoordinates{
		{Datacenter: "dc1", AreaID: "wan", Coordinates: nodes(at(0))},
		{Datacenter: "dc2", AreaID: "wan", Coordinates: nodes(at(30 * time.Millisecond))},
		{Datacenter: "dc3", AreaID: "wan", Coordinates: nodes(at(-10 * time.Millisecond))},
	}
	status := func(code int) error {
		return &StatusError{Method: "GET", Path: "/v1/x", StatusCode: code}
	}
	down := fmt.Errorf("GET /v1/x: %w", ErrUnavailable)
	for _, tc := range []struct {
		name    string
		l       lister
		want    string
		wantErr error
	}{
		{"all answer", lister{names: []string{"dc1", "dc3", "dc2"}, coords: coords, local: "dc1"}, "[dc1 (local) dc3 (10ms) dc2 (30ms)]", nil},
		{"coordinates disabled", lister{names: []string{"dc1", "dc3", "dc2"}, coordErr: status(401), local: "dc1"},
			"[dc1 (local) dc3 (RTT unknown) dc2 (RTT unknown)]", nil},
		{"agent:read refused", lister{names: []string{"dc1", "dc3", "dc2"}, coords: coords, localErr: status(403)},
			"[dc1 (local) dc3 (10ms) dc2 (30ms)]", nil},
		{"datacenters fail", lister{namesErr: down}, "[]", ErrUnavailable},
		{"coordinates refused", lister{names: []string{"dc1"}, coordErr: status(403)}, "[]", ErrPermissionDenied},
		{"coordinates fail", lister{names: []string{"dc1"}, coordErr: down}, "[]", ErrUnavailable},
		{"local fails", lister{names: []string{"dc1"}, localErr: down}, "[]", ErrUnavailable},
		{"refused with no names", lister{localErr: status(403)}, "[]", ErrPermissionDenied},
	} {
		got, err := NearestDatacenters(context.Background(), tc.l)
		if fmt.Sprint(got) != tc.want || !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
			t.Errorf("%s: NearestDatacenters = %v, %v; want %s, %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

// FuzzSortDatacentersByRTT: whatever coordinates come in, every
// datacenter is listed once, the local one first, known RTTs are never
// negative, and the known ones come sorted before the unknown ones.
func FuzzSortDatacentersByRTT(f *testing.F) {
	f.Add("dc1", "dc2", 0.0, 0.0, 0.0, 0.001, 0.0, 0.0, 0.0001, uint8(3))
	f.Add("dc1", "dc1", 1.0, -1.0, 1e300, -1e300, math.Inf(1), math.NaN(), -5.0, uint8(0))
	f.Add("", "dc2", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, uint8(255))
	f.Fuzz(func(t *testing.T, local, other string, v1, v2, w1, w2, h1, h2, adj float64, shape uint8) {
		a := Coordinate{Vec: []float64{v1, v2}, Height: h1, Adjustment: adj}
		b := Coordinate{Vec: []float64{w1, w2}, Height: h2, Adjustment: -adj}
		if shape&1 != 0 {
			b.Vec = b.Vec[:1]
		}
		coords := []DatacenterCoordinates{
			{Datacenter: local, AreaID: "wan", Coordinates: nodes(a, b)},
			{Datacenter: other, AreaID: "wan", Coordinates: nodes(b, a, b)},
		}
		if shape&2 != 0 {
			coords = append(coords, DatacenterCoordinates{Datacenter: other, AreaID: "x", Coordinates: nodes(a)})
		}
		names := []string{other, "z", local}
		got := SortDatacentersByRTT(local, names[:int(shape>>2)%4], coords)
		seen := map[string]bool{}
		for i, d := range got {
			if d.Name == "" || seen[d.Name] {
				t.Fatalf("SortDatacentersByRTT = %v: [%d] empty or repeated", got, i)
			}
			seen[d.Name] = true
			if d.RTT < 0 || (!d.Known && d.RTT != 0) || (d.Local != (d.Name == local)) || (d.Local && i != 0) {
				t.Fatalf("SortDatacentersByRTT = %+v: [%d] is wrong", got, i)
			}
		}
		known := slices.DeleteFunc(slices.Clone(got), func(d DatacenterRTT) bool { return !d.Known })
		if !slices.IsSortedFunc(known, func(x, y DatacenterRTT) int {
			if x.Local {
				return -1
			}
			return int(x.RTT - y.RTT)
		}) || len(known) > 0 && !slices.Equal(got[:len(known)], known) {
			t.Fatalf("SortDatacentersByRTT = %+v: not nearest first, unknown last", got)
		}
	})
}

var _ DatacenterLister = lister{}
