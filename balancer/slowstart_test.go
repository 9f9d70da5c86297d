package balancer

import (
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

// fakeClock replaces the clock slow start reads for the rest of the test,
// counting the reads. Tests using it must not run in parallel.
type fakeClock struct {
	now   atomic.Int64
	reads atomic.Int64
}

func useFakeClock(t *testing.T, start time.Time) *fakeClock {
	t.Helper()
	c := new(fakeClock)
	c.now.Store(start.UnixNano())
	saved := nowNano
	nowNano = func() int64 { c.reads.Add(1); return c.now.Load() }
	t.Cleanup(func() { nowNano = saved })
	return c
}

func (c *fakeClock) advance(d time.Duration) { c.now.Add(int64(d)) }

const testWindow = 10 * time.Second

// ramped returns 4 warm instances a-d in a first Set, and the Set that
// replaces it when "new" joins them at the clock's current time.
func ramped(t *testing.T) (warm, withNew *Set) {
	t.Helper()
	warm = NewSet(insts("a", "b", "c", "d"), nil)
	withNew = NewSet(insts("a", "b", "c", "d", "new"), warm)
	return warm, withNew
}

// share picks n times from s with b, calling Done at once, and returns
// how many picks went to id.
func share(t *testing.T, b Balancer, s *Set, id string, n int) int {
	t.Helper()
	got := 0
	for range n {
		p, err := b.Pick(s)
		if err != nil {
			t.Fatalf("Pick() error = %v", err)
		}
		if p.Instance.ID == id {
			got++
		}
		p.Done()
	}
	return got
}

// within checks that got of n picks is within 5 binomial standard
// deviations of the share p (a false failure about once in 1.7 million).
func within(t *testing.T, what string, got, n int, p float64) {
	t.Helper()
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(got)-mean) > 5*sd+1 {
		t.Errorf("%s: %d of %d picks (%.4f), want %.4f ± %.4f", what, got, n, float64(got)/float64(n), p, 5*sd/float64(n))
	} else {
		t.Logf("%s: %d of %d picks (%.4f), want %.4f", what, got, n, float64(got)/float64(n), p)
	}
}

// TestSlowStartShares checks, for Weighted and P2C with picks not held in
// flight, that a new instance's share during its ramp is its weight times
// the ramp factor over the sum of the others', at five points of the
// window, and its full share after it.
func TestSlowStartShares(t *testing.T) {
	const n = 40000
	for _, name := range []string{"weighted", "p2c"} {
		t.Run(name, func(t *testing.T) {
			clock := useFakeClock(t, time.Unix(1_800_000_000, 0))
			_, s := ramped(t)
			b := NewWeighted(WithSlowStart(testWindow))
			if name == "p2c" {
				b = NewP2C(WithSlowStart(testWindow))
			}
			for _, frac := range []float64{0, 0.1, 0.3, 0.5, 0.7, 0.9, 1, 2} {
				at := time.Duration(frac * float64(testWindow))
				clock.now.Store(s.eps[4].load.start + int64(at))
				f := min(max(frac, DefaultSlowStartMinWeight), 1)
				within(t, "new at "+at.String(), share(t, b, s, "new", n), n, f/(4+f))
			}
		})
	}
}

// TestSlowStartWeightedScalesWeight: a ramping instance counts as its
// Consul weight times its factor.
func TestSlowStartWeightedScalesWeight(t *testing.T) {
	clock := useFakeClock(t, time.Unix(1_800_000_000, 0))
	warm := NewSet(weightedInsts(1, 1), nil) // a, b
	s := NewSet(weightedInsts(1, 1, 4), warm)
	clock.advance(testWindow / 2)
	const n = 40000
	// c: 4 × 0.5 = 2 against 1 + 1.
	within(t, "c of weights 1, 1, 4 half way", share(t, NewWeighted(WithSlowStart(testWindow)), s, "c", n), n, 0.5)
}

// TestSlowStartEnds checks that once the window has passed, picks are what
// they are without slow start (Weighted's exact smooth round robin), read
// the clock once per Set, then never, and allocate nothing.
func TestSlowStartEnds(t *testing.T) {
	clock := useFakeClock(t, time.Unix(1_800_000_000, 0))
	_, s := ramped(t)
	b := NewWeighted(WithSlowStart(testWindow))
	_ = share(t, b, s, "new", 100) // ramping: reads the clock
	clock.advance(testWindow)
	reads := clock.reads.Load()
	got := count(pickIDs(t, b, s, 500))
	for _, id := range []string{"a", "b", "c", "d", "new"} {
		if got[id] != 100 {
			t.Errorf("after the window, Weighted picked %q %d times of 500, want exactly 100 (%v)", id, got[id], got)
		}
	}
	if r := clock.reads.Load() - reads; r != 1 {
		t.Errorf("500 picks after the window read the clock %d times, want 1", r)
	}
	p := NewP2C(WithSlowStart(testWindow))
	if a := testing.AllocsPerRun(1000, func() { e, _ := p.Pick(s); e.Done() }); a != 0 {
		t.Errorf("AllocsPerRun(P2C Pick+Done after the window) = %v, want 0", a)
	}
	// A refresh carrying the same instances knows the ramps are over.
	next := NewSet(insts("new", "a", "b", "c", "d"), s)
	reads = clock.reads.Load()
	_ = share(t, b, next, "new", 100)
	if r := clock.reads.Load() - reads; r != 0 {
		t.Errorf("picks from a refresh of a settled Set read the clock %d times, want 0", r)
	}
	// A longer window is still ramping: its balancer reads the clock.
	long := NewP2C(WithSlowStart(3 * testWindow))
	reads = clock.reads.Load()
	_ = share(t, long, next, "new", 10)
	if r := clock.reads.Load() - reads; r != 10 {
		t.Errorf("10 picks with a 30s window 10s into a ramp read the clock %d times, want 10", r)
	}
}

// TestSlowStartNoClockWithoutRamps: nothing ramps in a first Set without
// published start times, and picks from it never read the clock.
func TestSlowStartNoClockWithoutRamps(t *testing.T) {
	clock := useFakeClock(t, time.Unix(1_800_000_000, 0))
	s := NewSet(insts("a", "b", "c"), nil)
	for _, b := range []Balancer{NewWeighted(WithSlowStart(testWindow)), NewP2C(WithSlowStart(testWindow))} {
		_ = share(t, b, s, "a", 100)
		if a := testing.AllocsPerRun(1000, func() { e, _ := b.Pick(s); e.Done() }); a != 0 {
			t.Errorf("AllocsPerRun(Pick+Done with slow start, nothing ramping) = %v, want 0", a)
		}
	}
	if r := clock.reads.Load(); r != 0 {
		t.Errorf("picks from a Set where nothing ramps read the clock %d times, want 0", r)
	}
}

// TestSlowStartCallerRestart: a caller's first Set (it has just started)
// does not ramp instances that say nothing of their start, nor those that
// started long ago; it ramps one that says it started recently, from that
// time, not from now.
func TestSlowStartCallerRestart(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := useFakeClock(t, now)
	in := insts("a", "b", "c", "old", "recent")
	in[3].Meta = map[string]string{beacon.MetaStarted: strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)}
	in[4].Meta = map[string]string{beacon.MetaStarted: strconv.FormatInt(now.Add(-testWindow/2).Unix(), 10)}
	s := NewSet(in, nil)
	for i, e := range s.Endpoints() {
		rs := e.RampStart()
		switch e.Instance.ID {
		case "old":
			if !rs.Equal(now.Add(-time.Hour)) {
				t.Errorf("RampStart(%q) = %v, want its published start %v", e.Instance.ID, rs, now.Add(-time.Hour))
			}
		case "recent":
			if !rs.Equal(now.Add(-testWindow / 2)) {
				t.Errorf("RampStart(%q) = %v, want its published start %v", e.Instance.ID, rs, now.Add(-testWindow/2))
			}
		default:
			if !rs.IsZero() {
				t.Errorf("RampStart(%q) in a first Set = %v, want zero (no ramp)", in[i].ID, rs)
			}
		}
	}
	const n = 40000
	for _, b := range []struct {
		name string
		b    Balancer
	}{{"weighted", NewWeighted(WithSlowStart(testWindow))}, {"p2c", NewP2C(WithSlowStart(testWindow))}} {
		// Four at 1, "recent" at 0.5.
		within(t, b.name+": a", share(t, b.b, s, "a", n), n, 1/4.5)
		within(t, b.name+": old", share(t, b.b, s, "old", n), n, 1/4.5)
		within(t, b.name+": recent", share(t, b.b, s, "recent", n), n, 0.5/4.5)
	}
	if clock.reads.Load() == 0 {
		t.Error("picks while an instance ramps never read the clock")
	}
}

// TestSlowStartRampSurvivesRefresh: refreshes and filters carry a ramp on
// where it was; an instance that leaves and comes back ramps again.
func TestSlowStartRampSurvivesRefresh(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	clock := useFakeClock(t, t0)
	warm, s := ramped(t)
	newEp := func(s *Set) *Endpoint {
		for _, e := range s.Endpoints() {
			if e.Instance.ID == "new" {
				return e
			}
		}
		t.Fatalf("no endpoint %q in the Set", "new")
		return nil
	}
	if got := newEp(s).RampStart(); !got.Equal(t0) {
		t.Fatalf("RampStart(new) = %v, want %v (first sight)", got, t0)
	}
	for _, e := range warm.Endpoints() {
		if !e.RampStart().IsZero() {
			t.Errorf("RampStart(%q) in a first Set = %v, want zero", e.Instance.ID, e.RampStart())
		}
	}
	clock.advance(3 * time.Second)
	refreshed := NewSet(insts("new", "d", "c", "b", "a"), s)
	if got := newEp(refreshed).RampStart(); !got.Equal(t0) {
		t.Errorf("RampStart(new) after a refresh = %v, want %v", got, t0)
	}
	filtered := refreshed.Without(func(e *Endpoint) bool { return e.Instance.ID == "a" })
	if got := newEp(filtered).RampStart(); !got.Equal(t0) {
		t.Errorf("RampStart(new) in Without's Set = %v, want %v", got, t0)
	}
	gone := NewSet(insts("a", "b", "c", "d"), refreshed)
	clock.advance(time.Second)
	back := NewSet(insts("a", "b", "c", "d", "new"), gone)
	if got, want := newEp(back).RampStart(), t0.Add(4*time.Second); !got.Equal(want) {
		t.Errorf("RampStart(new) after it left and came back = %v, want %v", got, want)
	}
}

// TestSlowStartFactor checks the ramp's shape: linear from the minimum,
// Envoy's aggression, and the options' bounds.
func TestSlowStartFactor(t *testing.T) {
	w := int64(testWindow)
	tests := []struct {
		name    string
		opts    []Option
		elapsed float64 // fraction of the window
		want    float64
	}{
		{"linear start", nil, 0, 0.1},
		{"linear below min", nil, 0.05, 0.1},
		{"linear half", nil, 0.5, 0.5},
		{"linear end", nil, 1, 1},
		{"linear after", nil, 5, 1},
		{"before start (clock went back)", nil, -1, 0.1},
		{"min 0", []Option{WithSlowStartMinWeight(0)}, 0.05, 0.05},
		{"min clamped to 1", []Option{WithSlowStartMinWeight(7)}, 0.05, 1},
		{"min NaN is default", []Option{WithSlowStartMinWeight(math.NaN())}, 0, 0.1},
		{"aggression 2", []Option{WithSlowStartAggression(2)}, 0.25, 0.5},
		{"aggression 0.5", []Option{WithSlowStartAggression(0.5)}, 0.5, 0.25},
		{"aggression 0 is linear", []Option{WithSlowStartAggression(0)}, 0.5, 0.5},
		{"aggression -1 is linear", []Option{WithSlowStartAggression(-1)}, 0.5, 0.5},
		{"aggression Inf is linear", []Option{WithSlowStartAggression(math.Inf(1))}, 0.5, 0.5},
	}
	for _, tt := range tests {
		o := newOptions(append([]Option{WithSlowStart(testWindow)}, tt.opts...))
		start := int64(1_800_000_000) * int64(time.Second)
		got := o.ramp.factor(start, start+int64(tt.elapsed*float64(w)))
		if math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: factor(%.2f of the window) = %v, want %v", tt.name, tt.elapsed, got, tt.want)
		}
	}
	if o := newOptions([]Option{WithSlowStart(-time.Second)}); o.ramp.window != 0 {
		t.Errorf("WithSlowStart(-1s) window = %d, want 0 (off)", o.ramp.window)
	}
}

// TestSlowStartOffIgnoresRamps: without WithSlowStart a new instance gets
// its full share at once.
func TestSlowStartOffIgnoresRamps(t *testing.T) {
	clock := useFakeClock(t, time.Unix(1_800_000_000, 0))
	_, s := ramped(t)
	reads := clock.reads.Load() // NewSet stamped the new instance
	got := count(pickIDs(t, NewWeighted(), s, 500))
	if got["new"] != 100 {
		t.Errorf("Weighted without slow start picked the new instance %d times of 500, want 100", got["new"])
	}
	if r := clock.reads.Load() - reads; r != 0 {
		t.Errorf("picks without slow start read the clock %d times, want 0", r)
	}
}

// TestSlowStartFutureStart: a published start in the future (another
// machine's clock ahead) ramps from now; one beyond 2262 too.
func TestSlowStartFutureStart(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	useFakeClock(t, now)
	for _, v := range []string{strconv.FormatInt(now.Add(time.Hour).Unix(), 10), "999999999999"} {
		in := insts("a", "b")
		in[1].Meta = map[string]string{beacon.MetaStarted: v}
		s := NewSet(in, nil)
		if got := s.Endpoints()[1].RampStart(); !got.Equal(now) {
			t.Errorf("RampStart with %s=%s = %v, want now (%v)", beacon.MetaStarted, v, got, now)
		}
	}
}

// TestSlowStartP2CHeld measures P2C's share for a ramping instance when
// picks stay in flight (8 at a time, released oldest first), where the
// less loaded new instance wins more of its comparisons. It reports the
// share and checks only that it ramps: below its full share half way,
// above the factor's share.
func TestSlowStartP2CHeld(t *testing.T) {
	clock := useFakeClock(t, time.Unix(1_800_000_000, 0))
	_, s := ramped(t)
	clock.advance(testWindow / 2)
	b := NewP2C(WithSlowStart(testWindow))
	const n, held = 40000, 8
	var ring [held]Picked
	got := 0
	for i := range n {
		if ring[i%held].Endpoint != nil {
			ring[i%held].Done()
		}
		p, err := b.Pick(s)
		if err != nil {
			t.Fatal(err)
		}
		if p.Instance.ID == "new" {
			got++
		}
		ring[i%held] = p
	}
	for _, p := range ring {
		p.Done()
	}
	sh := float64(got) / n
	t.Logf("P2C, 8 picks in flight, half way through the ramp: new gets %.4f (factor's share %.4f, full share %.4f)", sh, 0.5/4.5, 0.2)
	if sh >= 0.2 || sh < 0.5/4.5*0.9 {
		t.Errorf("P2C with 8 in flight half way: new's share %.4f, want in [%.4f, 0.2)", sh, 0.5/4.5*0.9)
	}
}

// TestSlowStartNotInPanic: an instance that first appears in a panicking
// snapshot's Set (weights ignore health) does not ramp, so panic spreads
// over every instance at once.
func TestSlowStartNotInPanic(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	useFakeClock(t, t0)
	prev := NewSet(insts("a", "b"), nil)
	s := newSet(insts("a", "b", "new"), prev, true)
	for _, e := range s.Endpoints() {
		if !e.RampStart().IsZero() {
			t.Errorf("RampStart(%q) in a panicking Set = %v, want zero", e.Instance.ID, e.RampStart())
		}
	}
	if normal := NewSet(insts("a", "b", "new"), prev); normal.Endpoints()[2].RampStart().IsZero() {
		t.Error("the same instance in an ordinary Set does not ramp: the test proves nothing")
	}
}

// TestSlowStartInsideZones: a zone's sub-Set keeps its endpoints' ramps, so
// zone-aware picking over a slow-starting balancer ramps a new instance of
// the local zone (at t=0 its factor is the 10 % minimum: 0.1/2.1 of zone
// a's picks), and a panicking Set's zones weight every instance as passing.
func TestSlowStartInsideZones(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	useFakeClock(t, t0)
	prev := NewSet(zoned("a:2", "b:2"), nil)
	with := append(zoned("a:2", "b:2"), zoned("a:3")[2]) // a3, new in zone a
	s := NewSet(with, prev)
	const n = 40000
	for _, inner := range []Balancer{NewWeighted(WithSlowStart(10 * time.Second)), NewP2C(WithSlowStart(10 * time.Second))} {
		z := NewZoneAware(inner, "a")
		within(t, fmt.Sprintf("%T: a3 at t=0", inner), share(t, z, s, "a3", n), n, 0.1/2.1)
	}

	panicking := newSet(zoned("a:2", "b:2"), nil, true)
	for _, sub := range NewZoneAware(NewRoundRobin(), "a").plan(panicking).parts.sets {
		if !sub.anyHealth {
			t.Errorf("a zone of a panicking Set is not weighted as passing")
		}
	}
}
