package beacon

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestNewNodeRTTs(t *testing.T) {
	ms := func(f float64) float64 { return f / 1000 }
	coords := []NodeCoordinate{
		{Node: "me", Coord: coord(0, 0, 0, 0)},
		{Node: "near", Coord: coord(0, 0, ms(3), ms(4))},
		{Node: "far", Coord: coord(0, 0, ms(30), ms(40))},
		{Node: "bad", Coord: coord(0, 0, math.NaN(), 0)},
		{Node: "3d", Coord: coord(0, 0, 1, 2, 3)},
		// Another segment: compared only with me's coordinate there, which
		// is missing.
		{Node: "seg", Segment: "alpha", Coord: coord(0, 0, 0, 0)},
		// Listed twice: the lower time counts.
		{Node: "twice", Coord: coord(0, 0, ms(60), ms(80))},
		{Node: "twice", Coord: coord(0, 0, ms(6), ms(8))},
		{Node: "", Coord: coord(0, 0, 0, 0)},
	}
	rtts := NewNodeRTTs("me", 7, coords)
	for _, tc := range []struct {
		node string
		want time.Duration
		ok   bool
	}{
		{"me", 0, true},
		{"near", 5 * time.Millisecond, true},
		{"far", 50 * time.Millisecond, true},
		{"twice", 10 * time.Millisecond, true},
		{"bad", 0, false},
		{"3d", 0, false},
		{"seg", 0, false},
		{"unknown", 0, false},
	} {
		got, ok := rtts.RTT(tc.node)
		if ok != tc.ok || (ok && (got-tc.want).Abs() > time.Microsecond) {
			t.Errorf("RTT(%q) = %v, %v; want %v, %v", tc.node, got, ok, tc.want, tc.ok)
		}
	}
	if rtts.Len() != 4 || rtts.From != "me" || rtts.Index != 7 {
		t.Errorf("NewNodeRTTs = Len %d, From %q, Index %d; want 4, me, 7", rtts.Len(), rtts.From, rtts.Index)
	}

	// Without the source's coordinate nothing is comparable.
	for _, from := range []string{"", "stranger", "bad"} {
		if r := NewNodeRTTs(from, 1, coords); r.Len() != 0 {
			t.Errorf("NewNodeRTTs(%q).Len() = %d, want 0", from, r.Len())
		}
	}
	var none *NodeRTTs
	if _, ok := none.RTT("me"); ok || none.Len() != 0 {
		t.Errorf("nil table knows something")
	}
}

func TestSortByRTT(t *testing.T) {
	rtts := NewNodeRTTs("me", 1, []NodeCoordinate{
		{Node: "me", Coord: coord(0, 0, 0)},
		{Node: "a", Coord: coord(0, 0, 0.003)},
		{Node: "b", Coord: coord(0, 0, 0.001)},
	})
	insts := []Instance{{ID: "x", Node: "unknown"}, {ID: "a", Node: "a"}, {ID: "y", Node: "gone"}, {ID: "b", Node: "b"}, {ID: "m", Node: "me"}}
	SortByRTT(insts, rtts)
	var ids []string
	for _, in := range insts {
		ids = append(ids, in.ID)
	}
	if want := []string{"m", "b", "a", "x", "y"}; !slices.Equal(ids, want) {
		t.Errorf("SortByRTT = %v, want %v", ids, want)
	}
}
