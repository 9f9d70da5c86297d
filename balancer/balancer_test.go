package balancer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/beaconsd/beacon"
)

var balancers = []struct {
	name   string
	new    func() Balancer
	counts bool // whether picks count in flight (see Endpoint.InFlight)
}{
	{"roundrobin", NewRoundRobin, false},
	{"random", NewRandom, false},
	{"weighted", func() Balancer { return NewWeighted() }, false},
	{"p2c", func() Balancer { return NewP2C() }, true},
}

// inst returns a passing instance with ID id on node n1.
func inst(id string) beacon.Instance {
	return beacon.Instance{ID: id, Service: "web", Node: "n1", Address: "10.0.0.1", Port: 8080, Health: beacon.HealthPassing}
}

func insts(ids ...string) []beacon.Instance {
	out := make([]beacon.Instance, len(ids))
	for i, id := range ids {
		out[i] = inst(id)
	}
	return out
}

// weightedInsts returns passing instances a, b, c, ... with the given passing weights.
func weightedInsts(ws ...int) []beacon.Instance {
	out := make([]beacon.Instance, len(ws))
	for i, w := range ws {
		out[i] = inst(string(rune('a' + i)))
		out[i].Weights = beacon.Weights{Passing: w, Warning: 1}
	}
	return out
}

// pickIDs picks n times with b from s, calling Done each time, and returns
// the picked IDs in order.
func pickIDs(t *testing.T, b Balancer, s *Set, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		e, err := b.Pick(s)
		if err != nil {
			t.Fatalf("Pick() error = %v", err)
		}
		ids[i] = e.Instance.ID
		e.Done()
	}
	return ids
}

func count(ids []string) map[string]int {
	m := map[string]int{}
	for _, id := range ids {
		m[id]++
	}
	return m
}

func TestPickEmpty(t *testing.T) {
	sets := []struct {
		name string
		set  *Set
	}{
		{"nil", nil},
		{"zero", &Set{}},
		{"NewSet(nil)", NewSet(nil, nil)},
		{"NewSet(empty, prev)", NewSet([]beacon.Instance{}, NewSet(insts("a"), nil))},
	}
	for _, b := range balancers {
		for _, s := range sets {
			t.Run(b.name+"/"+s.name, func(t *testing.T) {
				e, err := b.new().Pick(s.set)
				if !errors.Is(err, beacon.ErrNoInstances) || e.Endpoint != nil {
					t.Errorf("Pick(%s) = %v, %v, want nil, %v", s.name, e, err, beacon.ErrNoInstances)
				}
				e.Done() // the zero Picked: does nothing
			})
		}
	}
}

func TestPickSingle(t *testing.T) {
	s := NewSet(insts("only"), nil)
	for _, b := range balancers {
		t.Run(b.name, func(t *testing.T) {
			bal := b.new()
			for range 10 {
				e, err := bal.Pick(s)
				if err != nil || e.Instance.ID != "only" {
					t.Fatalf("Pick(%q) = %v, %v, want only, nil", "only", e, err)
				}
				want := int64(0)
				if b.counts {
					want = 1
				}
				if got := e.InFlight(); got != want {
					t.Fatalf("InFlight() after Pick = %d, want %d", got, want)
				}
				e.Done()
				if got := e.InFlight(); got != 0 {
					t.Fatalf("InFlight() after Done = %d, want 0", got)
				}
			}
		})
	}
}

// TestPickCountsInFlight checks that P2C's picks count in flight until
// Done, and that the other balancers' picks leave the counts alone (and their
// Done too).
func TestPickCountsInFlight(t *testing.T) {
	for _, b := range balancers {
		t.Run(b.name, func(t *testing.T) {
			s := NewSet(insts("a", "b", "c"), nil)
			bal := b.new()
			var picked []Picked
			for range 30 {
				e, err := bal.Pick(s)
				if err != nil {
					t.Fatal(err)
				}
				picked = append(picked, e)
			}
			var total int64
			for _, e := range s.Endpoints() {
				total += e.InFlight()
			}
			want := int64(0)
			if b.counts {
				want = 30
			}
			if total != want {
				t.Errorf("sum of InFlight() after 30 picks = %d, want %d", total, want)
			}
			for _, e := range picked {
				e.Done()
			}
			for _, e := range s.Endpoints() {
				if got := e.InFlight(); got != 0 {
					t.Errorf("InFlight(%q) after Done = %d, want 0", e.Instance.ID, got)
				}
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		ids  []string
		want string
	}{
		{[]string{"a"}, "a a a a a a"},
		{[]string{"a", "b"}, "a b a b a b"},
		{[]string{"a", "b", "c"}, "a b c a b c"},
	}
	for _, tt := range tests {
		got := strings.Join(pickIDs(t, NewRoundRobin(), NewSet(insts(tt.ids...), nil), 6), " ")
		if got != tt.want {
			t.Errorf("RoundRobin(%q) = %q, want %q", tt.ids, got, tt.want)
		}
	}
}

func TestRoundRobinExactShares(t *testing.T) {
	const n = 1000
	got := count(pickIDs(t, NewRoundRobin(), NewSet(insts("a", "b", "c"), nil), 3*n))
	for _, id := range []string{"a", "b", "c"} {
		if got[id] != n {
			t.Errorf("RoundRobin picks of %q = %d, want %d", id, got[id], n)
		}
	}
}

func TestRoundRobinConcurrent(t *testing.T) {
	const (
		goroutines = 8
		perG       = 3000
	)
	s := NewSet(insts("a", "b", "c"), nil)
	b := NewRoundRobin()
	counts := make([]map[string]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			m := map[string]int{}
			for range perG {
				e, err := b.Pick(s)
				if err != nil {
					t.Error(err)
					return
				}
				m[e.Instance.ID]++
				e.Done()
			}
			counts[g] = m
		})
	}
	wg.Wait()
	total := map[string]int{}
	for _, m := range counts {
		for id, n := range m {
			total[id] += n
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		if want := goroutines * perG / 3; total[id] != want {
			t.Errorf("concurrent RoundRobin picks of %q = %d, want %d", id, total[id], want)
		}
	}
	for _, e := range s.Endpoints() {
		if got := e.InFlight(); got != 0 {
			t.Errorf("InFlight(%q) after all Done = %d, want 0", e.Instance.ID, got)
		}
	}
}

// TestRandomUniform allows ±10% around a third over 30k picks: that is 12
// standard deviations, so a failure means a bias, not bad luck.
func TestRandomUniform(t *testing.T) {
	const n = 30000
	got := count(pickIDs(t, NewRandom(), NewSet(insts("a", "b", "c"), nil), n))
	for _, id := range []string{"a", "b", "c"} {
		if lo, hi := n/3*9/10, n/3*11/10; got[id] < lo || got[id] > hi {
			t.Errorf("Random picks of %q = %d, want within [%d, %d]", id, got[id], lo, hi)
		}
	}
}

func TestWeightedSequence(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		want    string
	}{
		{"nginx classic", []int{5, 1, 1}, "a a b a c a a"},
		{"scaled by gcd", []int{50, 10, 10}, "a a b a c a a"},
		{"two to one", []int{2, 1}, "a b a"},
		{"equal", []int{3, 3, 3}, "a b c"},
		{"zero is never picked", []int{2, 0, 1}, "a c a"},
		{"all zero take turns", []int{0, 0, 0}, "a b c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSet(weightedInsts(tt.weights...), nil)
			n := len(strings.Fields(tt.want))
			// Two cycles: the second must repeat the first.
			got := strings.Join(pickIDs(t, NewWeighted(), s, 2*n), " ")
			if want := tt.want + " " + tt.want; got != want {
				t.Errorf("Weighted(%v) = %q, want %q", tt.weights, got, want)
			}
		})
	}
}

func TestWeightedExactShares(t *testing.T) {
	got := count(pickIDs(t, NewWeighted(), NewSet(weightedInsts(5, 1, 1), nil), 7000))
	want := map[string]int{"a": 5000, "b": 1000, "c": 1000}
	for id, n := range want {
		if got[id] != n {
			t.Errorf("Weighted(5, 1, 1) picks of %q = %d, want %d", id, got[id], n)
		}
	}
}

func TestWeightedNoWeightOneTwiceInARow(t *testing.T) {
	ids := pickIDs(t, NewWeighted(), NewSet(weightedInsts(5, 1, 1), nil), 700)
	for i := 1; i < len(ids); i++ {
		if ids[i] != "a" && ids[i] == ids[i-1] {
			t.Fatalf("Weighted(5, 1, 1) picked %q twice in a row at %d", ids[i], i)
		}
	}
}

func TestWeight(t *testing.T) {
	tests := []struct {
		name    string
		weights beacon.Weights
		health  beacon.Health
		want    int
	}{
		{"passing", beacon.Weights{Passing: 10, Warning: 2}, beacon.HealthPassing, 10},
		{"warning", beacon.Weights{Passing: 10, Warning: 2}, beacon.HealthWarning, 2},
		{"critical", beacon.Weights{Passing: 10, Warning: 2}, beacon.HealthCritical, 0},
		{"unknown state", beacon.Weights{Passing: 10, Warning: 2}, "maintenance", 0},
		{"unset health counts as passing", beacon.Weights{Passing: 10, Warning: 2}, "", 10},
		{"zero weights are Consul's default, passing", beacon.Weights{}, beacon.HealthPassing, 1},
		{"zero weights are Consul's default, warning", beacon.Weights{}, beacon.HealthWarning, 1},
		{"warning weight 0", beacon.Weights{Passing: 3}, beacon.HealthWarning, 0},
		{"negative", beacon.Weights{Passing: -4, Warning: 1}, beacon.HealthPassing, 0},
		{"capped at the largest SRV weight", beacon.Weights{Passing: 1 << 20, Warning: 1}, beacon.HealthPassing, 65535},
	}
	for _, tt := range tests {
		in := inst("a")
		in.Weights, in.Health = tt.weights, tt.health
		if got := NewSet([]beacon.Instance{in}, nil).Endpoints()[0].Weight(); got != tt.want {
			t.Errorf("%s: Weight(%+v, %q) = %d, want %d", tt.name, tt.weights, tt.health, got, tt.want)
		}
	}
}

func TestWeightedUsesWarningWeights(t *testing.T) {
	in := weightedInsts(1, 1, 1)
	in[0].Weights = beacon.Weights{Passing: 1, Warning: 5}
	in[0].Health = beacon.HealthWarning
	in[1].Weights = beacon.Weights{Passing: 1, Warning: 0}
	in[1].Health = beacon.HealthWarning
	got := strings.Join(pickIDs(t, NewWeighted(), NewSet(in, nil), 6), " ")
	if want := "a a a c a a"; got != want {
		t.Errorf("Weighted(a warning 5, b warning 0, c passing 1) = %q, want %q", got, want)
	}
}

// refSmooth is nginx's smooth weighted round robin written plainly, to check
// both of Weighted's paths against.
func refSmooth(ws []int, n int) []string {
	cur := make([]int, len(ws))
	total := 0
	for _, w := range ws {
		total += w
	}
	out := make([]string, n)
	for k := range out {
		best := -1
		for i, w := range ws {
			if w == 0 {
				continue
			}
			cur[i] += w
			if best < 0 || cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		out[k] = string(rune('a' + best))
	}
	return out
}

func TestWeightedMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name    string
		weights []int
		mutex   bool // the cycle is too long to precompute
	}{
		{"precomputed", []int{5, 1, 1}, false},
		{"mutex", []int{5001, 1000, 1000}, true},
		{"mutex many", []int{4090, 3, 2, 1, 7}, true},
	}
	for k := range 20 {
		ws := make([]int, 1+r.IntN(8))
		for i := range ws {
			ws[i] = r.IntN(40)
		}
		ws[0]++ // at least one positive weight
		tests = append(tests, struct {
			name    string
			weights []int
			mutex   bool
		}{fmt.Sprintf("random %d", k), ws, false})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSet(weightedInsts(tt.weights...), nil)
			if s.wReady.Load() {
				t.Fatal("NewSet built Weighted's state before any Weighted pick")
			}
			s.buildWeighted(nil)
			if got := s.sched == nil; got != tt.mutex {
				t.Fatalf("NewSet(weights %v) uses the mutex: %v, want %v", tt.weights, got, tt.mutex)
			}
			const n = 3000
			got := strings.Join(pickIDs(t, NewWeighted(), s, n), " ")
			if want := strings.Join(refSmooth(tt.weights, n), " "); got != want {
				t.Errorf("Weighted(%v) differs from nginx's algorithm:\n got %.80s…\nwant %.80s…", tt.weights, got, want)
			}
		})
	}
}

func TestWeightedConcurrent(t *testing.T) {
	for _, ws := range [][]int{{5, 1, 1}, {5001, 1000, 1000}} {
		t.Run(fmt.Sprint(ws), func(t *testing.T) {
			s := NewSet(weightedInsts(ws...), nil)
			b := NewWeighted()
			const goroutines, cycles = 8, 8 // cycles*total splits evenly
			total := 0
			for _, w := range ws {
				total += w
			}
			perG := cycles * total / goroutines
			counts := make([]map[string]int, goroutines)
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					m := map[string]int{}
					for range perG {
						e, err := b.Pick(s)
						if err != nil {
							t.Error(err)
							return
						}
						m[e.Instance.ID]++
						e.Done()
					}
					counts[g] = m
				})
			}
			wg.Wait()
			got := map[string]int{}
			for _, m := range counts {
				for id, n := range m {
					got[id] += n
				}
			}
			for i, w := range ws {
				id := string(rune('a' + i))
				if got[id] != cycles*w {
					t.Errorf("concurrent Weighted(%v) picks of %q = %d, want %d", ws, id, got[id], cycles*w)
				}
			}
		})
	}
}

func TestWeightedStateSurvivesRefresh(t *testing.T) {
	for _, ws := range [][]int{{5, 1, 1}, {5001, 1000, 1000}} {
		t.Run(fmt.Sprint(ws), func(t *testing.T) {
			want := strings.Join(refSmooth(ws, 20), " ")
			b := NewWeighted()
			s := NewSet(weightedInsts(ws...), nil)
			got := pickIDs(t, b, s, 3)
			// Same weights, new Meta: the sequence carries on.
			in := weightedInsts(ws...)
			in[1].Meta = map[string]string{"version": "2"}
			s = NewSet(in, s)
			got = append(got, pickIDs(t, b, s, 17)...)
			if got := strings.Join(got, " "); got != want {
				t.Errorf("Weighted(%v) across a refresh = %q, want %q", ws, got, want)
			}
		})
	}
}

func TestWeightedRestartsOnWeightChange(t *testing.T) {
	b := NewWeighted()
	s := NewSet(weightedInsts(5, 1, 1), nil)
	pickIDs(t, b, s, 3)
	s = NewSet(weightedInsts(1, 1, 5), s)
	if got, want := strings.Join(pickIDs(t, b, s, 7), " "), "c c a c b c c"; got != want {
		t.Errorf("Weighted(1, 1, 5) after a weight change = %q, want %q", got, want)
	}
}

func TestP2CAvoidsLoaded(t *testing.T) {
	s := NewSet(insts("a", "b", "c"), nil)
	a := s.Endpoints()[0]
	var stuck []Picked
	for range 100 { // 100 requests stuck on a
		stuck = append(stuck, a.count())
	}
	b := NewP2C()
	got := count(pickIDs(t, b, s, 1000))
	if got["a"] != 0 {
		t.Errorf("P2C picks of %q with 100 in flight against idle peers = %d, want 0", "a", got["a"])
	}
	// Both idle endpoints are drawn against each other, so both get work.
	for _, id := range []string{"b", "c"} {
		if got[id] < 100 {
			t.Errorf("P2C picks of idle %q = %d, want at least 100", id, got[id])
		}
	}
	for _, p := range stuck {
		p.Done()
	}
	if got := a.InFlight(); got != 0 {
		t.Errorf("InFlight(%q) after 100 Done = %d, want 0", "a", got)
	}
}

func TestP2CTwoEndpoints(t *testing.T) {
	s := NewSet(insts("a", "b"), nil)
	s.Endpoints()[1].count()
	// With two endpoints both are always compared: the idle one wins.
	if got := count(pickIDs(t, NewP2C(), s, 100)); got["a"] != 100 {
		t.Errorf("P2C picks of idle %q against a loaded peer = %d, want 100", "a", got["a"])
	}
}

func TestP2CSpreadsLoad(t *testing.T) {
	// Without Done, P2C keeps the in-flight counts level.
	s := NewSet(insts("a", "b", "c", "d"), nil)
	b := NewP2C()
	for range 4000 {
		if _, err := b.Pick(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range s.Endpoints() {
		if got := e.InFlight(); got < 900 || got > 1100 {
			t.Errorf("P2C InFlight(%q) after 4000 picks = %d, want about 1000", e.Instance.ID, got)
		}
	}
}

func TestNewSetCarriesLoad(t *testing.T) {
	prev := NewSet(insts("a", "b", "c"), nil)
	var olds []Picked
	for range 3 {
		olds = append(olds, prev.Endpoints()[0].count()) // as P2C picks a
	}
	old := olds[0].Endpoint

	in := insts("c", "a", "d") // b leaves, d joins, order changes
	in[1].Meta = map[string]string{"version": "2"}
	in[1].Port = 9090
	next := NewSet(in, prev)

	byID := map[string]*Endpoint{}
	for _, e := range next.Endpoints() {
		byID[e.Instance.ID] = e
	}
	a := byID["a"]
	if got := a.InFlight(); got != 3 {
		t.Errorf("InFlight(%q) after NewSet = %d, want 3", "a", got)
	}
	if got := a.Instance.Meta["version"]; got != "2" {
		t.Errorf("Instance.Meta[%q] after NewSet = %q, want %q", "version", got, "2")
	}
	if got, want := a.Addr, "10.0.0.1:9090"; got != want {
		t.Errorf("Addr after NewSet = %q, want %q", got, want)
	}
	if got := byID["d"].InFlight(); got != 0 {
		t.Errorf("InFlight(%q) of a new instance = %d, want 0", "d", got)
	}
	// The old Set is untouched.
	if old.Instance.Meta != nil || old.Addr != "10.0.0.1:8080" {
		t.Errorf("old Endpoint changed by NewSet: Meta %v, Addr %q", old.Instance.Meta, old.Addr)
	}
	// Done on the old Endpoint counts on the new one.
	for _, p := range olds {
		p.Done()
	}
	if got := a.InFlight(); got != 0 {
		t.Errorf("InFlight(%q) after Done on the old Endpoint = %d, want 0", "a", got)
	}

	// An instance that left and comes back starts afresh.
	prev.Endpoints()[1].count() // b
	back := NewSet(insts("b"), next)
	if got := back.Endpoints()[0].InFlight(); got != 0 {
		t.Errorf("InFlight(%q) after leaving and returning = %d, want 0", "b", got)
	}
}

func TestNewSetKeyIsNodeAndID(t *testing.T) {
	a1, a2 := inst("a"), inst("a")
	a2.Node = "n2"
	prev := NewSet([]beacon.Instance{a1, a2}, nil)
	prev.Endpoints()[1].count()
	next := NewSet([]beacon.Instance{a2, a1}, prev)
	if got := next.Endpoints()[0].InFlight(); got != 1 {
		t.Errorf("InFlight(n2/a) after NewSet = %d, want 1", got)
	}
	if got := next.Endpoints()[1].InFlight(); got != 0 {
		t.Errorf("InFlight(n1/a) after NewSet = %d, want 0", got)
	}
}

func TestNewSetSharesInstances(t *testing.T) {
	in := insts("a", "b")
	s := NewSet(in, nil)
	for i, e := range s.Endpoints() {
		if e.Instance != &in[i] {
			t.Errorf("Endpoints()[%d].Instance = %p, want %p (a pointer into the input, not a copy)", i, e.Instance, &in[i])
		}
	}
}

func TestAddr(t *testing.T) {
	tests := []struct {
		address string
		port    int
		want    string
	}{
		{"10.0.0.1", 8080, "10.0.0.1:8080"},
		{"::1", 443, "[::1]:443"},
		{"web.service.consul", 80, "web.service.consul:80"},
	}
	for _, tt := range tests {
		in := inst("a")
		in.Address, in.Port = tt.address, tt.port
		if got := NewSet([]beacon.Instance{in}, nil).Endpoints()[0].Addr; got != tt.want {
			t.Errorf("Addr(%q, %d) = %q, want %q", tt.address, tt.port, got, tt.want)
		}
	}
}

func TestLenAndEndpoints(t *testing.T) {
	var nilSet *Set
	if nilSet.Len() != 0 || nilSet.Endpoints() != nil {
		t.Errorf("nil Set: Len() = %d, Endpoints() = %v, want 0, nil", nilSet.Len(), nilSet.Endpoints())
	}
	s := NewSet(insts("a", "b"), nil)
	if s.Len() != 2 {
		t.Errorf("Len() = %d, want 2", s.Len())
	}
	var ids []string
	for _, e := range s.Endpoints() {
		ids = append(ids, e.Instance.ID)
	}
	if got := strings.Join(ids, ","); got != "a,b" {
		t.Errorf("Endpoints() = %q, want %q", got, "a,b")
	}
}

// TestRefreshWhilePicking runs NewSet(…, prev) against concurrent picks on
// prev and on the new Sets, for -race to check.
func TestRefreshWhilePicking(t *testing.T) {
	for _, ws := range [][]int{{5, 1, 1}, {5001, 1000, 1000}} {
		t.Run(fmt.Sprint(ws), func(t *testing.T) {
			var cur sync.Mutex
			set := NewSet(weightedInsts(ws...), nil)
			load := func() *Set { cur.Lock(); defer cur.Unlock(); return set }
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for _, b := range balancers {
				wg.Go(func() {
					bal := b.new()
					for {
						select {
						case <-stop:
							return
						default:
						}
						e, err := bal.Pick(load())
						if err != nil {
							t.Error(err)
							return
						}
						_ = e.Instance.Meta["version"] + e.Addr
						e.Done()
					}
				})
			}
			for i := range 200 {
				in := weightedInsts(ws...)
				in[0].Meta = map[string]string{"version": fmt.Sprint(i)}
				next := NewSet(in, load())
				cur.Lock()
				set = next
				cur.Unlock()
			}
			close(stop)
			wg.Wait()
			for _, e := range load().Endpoints() {
				if got := e.InFlight(); got != 0 {
					t.Errorf("InFlight(%q) after all Done = %d, want 0", e.Instance.ID, got)
				}
			}
		})
	}
}

func TestPickAllocs(t *testing.T) {
	sets := map[string]*Set{
		"3":          NewSet(insts("a", "b", "c"), nil),
		"5,1,1":      NewSet(weightedInsts(5, 1, 1), nil),
		"mutex path": NewSet(weightedInsts(5001, 1000, 1000), nil),
	}
	for _, b := range balancers {
		for name, s := range sets {
			bal := b.new()
			pick := func() { _, _ = bal.Pick(s) }
			pickDone := func() {
				e, _ := bal.Pick(s)
				e.Done()
			}
			if got := testing.AllocsPerRun(1000, pick); got != 0 {
				t.Errorf("AllocsPerRun(%s Pick on %s) = %v, want 0", b.name, name, got)
			}
			if got := testing.AllocsPerRun(1000, pickDone); got != 0 {
				t.Errorf("AllocsPerRun(%s Pick+Done on %s) = %v, want 0", b.name, name, got)
			}
		}
	}
}

// TestTwoOfUniform checks that P2C draws every ordered pair of distinct
// endpoints about equally often (±10% over 60k draws, about 10 standard
// deviations).
func TestTwoOfUniform(t *testing.T) {
	const n, draws = 4, 60000
	var got [n][n]int
	for range draws {
		i, j := twoOf(n)
		if i == j || i < 0 || j < 0 || i >= n || j >= n {
			t.Fatalf("twoOf(%d) = %d, %d, want distinct indices in [0, %d)", n, i, j, n)
		}
		got[i][j]++
	}
	want := draws / (n * (n - 1))
	for i := range n {
		for j := range n {
			if i != j && (got[i][j] < want*9/10 || got[i][j] > want*11/10) {
				t.Errorf("twoOf(%d) drew (%d, %d) %d times, want about %d", n, i, j, got[i][j], want)
			}
		}
	}
}
