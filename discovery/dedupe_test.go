package discovery

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

func inst(id, node, addr string, port int, h beacon.Health) beacon.Instance {
	return beacon.Instance{ID: id, Service: "s", Node: node, Address: addr, Port: port, Health: h}
}

// label names an instance as id@node (health), for failure messages.
func label(insts []beacon.Instance) string {
	var b strings.Builder
	for i, in := range insts {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s@%s(%s)", in.ID, in.Node, in.Health)
	}
	return b.String()
}

func TestDedupe(t *testing.T) {
	const (
		pass = beacon.HealthPassing
		warn = beacon.HealthWarning
		crit = beacon.HealthCritical
	)
	tests := []struct {
		name string
		in   []beacon.Instance
		want []beacon.Instance
	}{
		{"empty", nil, nil},
		{"one", []beacon.Instance{inst("x", "a", "127.0.0.1", 1, pass)}, []beacon.Instance{inst("x", "a", "127.0.0.1", 1, pass)}},
		{
			"no copies: same ID on other nodes at other addresses is another instance",
			[]beacon.Instance{inst("web", "a", "10.0.0.1", 80, pass), inst("web", "b", "10.0.0.2", 80, pass), inst("web2", "a", "10.0.0.1", 81, pass)},
			[]beacon.Instance{inst("web", "a", "10.0.0.1", 80, pass), inst("web", "b", "10.0.0.2", 80, pass), inst("web2", "a", "10.0.0.1", 81, pass)},
		},
		{
			"moved instance, both passing: lowest node wins",
			[]beacon.Instance{inst("x", "b", "127.0.0.1", 1, pass), inst("x", "a", "127.0.0.1", 1, pass)},
			[]beacon.Instance{inst("x", "a", "127.0.0.1", 1, pass)},
		},
		{
			"moved instance, stale copy critical: the passing one wins whatever the node",
			[]beacon.Instance{inst("x", "a", "127.0.0.1", 1, crit), inst("x", "b", "127.0.0.1", 1, pass)},
			[]beacon.Instance{inst("x", "b", "127.0.0.1", 1, pass)},
		},
		{
			"warning beats critical",
			[]beacon.Instance{inst("x", "a", "127.0.0.1", 1, crit), inst("x", "b", "127.0.0.1", 1, warn)},
			[]beacon.Instance{inst("x", "b", "127.0.0.1", 1, warn)},
		},
		{
			"an unknown state counts as critical",
			[]beacon.Instance{inst("x", "a", "127.0.0.1", 1, "maintenance"), inst("x", "b", "127.0.0.1", 1, crit)},
			[]beacon.Instance{inst("x", "a", "127.0.0.1", 1, "maintenance")},
		},
		{
			"two IDs at one address and port, one node: lowest ID wins",
			[]beacon.Instance{inst("x2", "a", "127.0.0.1", 1, pass), inst("x1", "a", "127.0.0.1", 1, pass)},
			[]beacon.Instance{inst("x1", "a", "127.0.0.1", 1, pass)},
		},
		{
			"order of the winners is kept",
			[]beacon.Instance{inst("p", "a", "127.0.0.1", 1, pass), inst("x", "a", "127.0.0.1", 2, crit), inst("q", "a", "127.0.0.1", 3, pass), inst("x", "b", "127.0.0.1", 2, pass)},
			[]beacon.Instance{inst("p", "a", "127.0.0.1", 1, pass), inst("q", "a", "127.0.0.1", 3, pass), inst("x", "b", "127.0.0.1", 2, pass)},
		},
		{
			"three copies",
			[]beacon.Instance{inst("x", "c", "127.0.0.1", 1, warn), inst("x", "a", "127.0.0.1", 1, crit), inst("x", "b", "127.0.0.1", 1, warn)},
			[]beacon.Instance{inst("x", "b", "127.0.0.1", 1, warn)},
		},
		{
			"no address: never merged",
			[]beacon.Instance{inst("x", "a", "", 1, pass), inst("x", "b", "", 1, pass)},
			[]beacon.Instance{inst("x", "a", "", 1, pass), inst("x", "b", "", 1, pass)},
		},
		{
			"same address, other port: not a copy",
			[]beacon.Instance{inst("x", "a", "127.0.0.1", 1, pass), inst("x", "b", "127.0.0.1", 2, pass)},
			[]beacon.Instance{inst("x", "a", "127.0.0.1", 1, pass), inst("x", "b", "127.0.0.1", 2, pass)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			got := dedupe(in)
			if !slices.EqualFunc(got, tt.want, func(a, b beacon.Instance) bool { return a.Key() == b.Key() && a.Health == b.Health }) {
				t.Errorf("dedupe(%s) = %s, want %s", label(tt.in), label(got), label(tt.want))
			}
			if !slices.EqualFunc(in, tt.in, func(a, b beacon.Instance) bool { return a.Key() == b.Key() }) {
				t.Errorf("dedupe(%s) modified its input: %s", label(tt.in), label(in))
			}
		})
	}
}

// fleet returns n instances at distinct endpoints, as Consul orders them
// (by node), with copies of the instances at the indexes in dups appended
// on another node, critical, the way an agent restores an old copy.
func fleet(n int, dups ...int) []beacon.Instance {
	out := make([]beacon.Instance, 0, n+len(dups))
	for i := range n {
		out = append(out, beacon.Instance{
			ID: fmt.Sprintf("svc-%d", i), Service: "svc", Node: fmt.Sprintf("node-%03d", i/20),
			Address: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), Port: 8080 + i%3, Health: beacon.HealthPassing,
		})
	}
	for _, d := range dups {
		c := out[d]
		c.Node, c.Health = "zz-old-node", beacon.HealthCritical
		out = append(out, c)
	}
	return out
}

// TestDedupeLarge runs the hashing path (more than smallDedupe instances)
// against the pair-by-pair one, which the table above checks.
func TestDedupeLarge(t *testing.T) {
	for _, n := range []int{smallDedupe + 1, 100, 2000} {
		clean := fleet(n)
		if got := dedupe(clean); &got[0] != &clean[0] || len(got) != n {
			t.Errorf("dedupe(%d distinct) returned a new slice of %d; want its input", n, len(got))
		}
		dups := []int{0, n / 2, n - 1}
		in := fleet(n, dups...)
		// A live copy at the end that beats the first entry's.
		in[0].Health = beacon.HealthCritical
		in[len(in)-3].Health = beacon.HealthPassing
		got := dedupe(in)
		if len(got) != n {
			t.Fatalf("dedupe(%d with %d copies) kept %d; want %d", n, len(dups), len(got), n)
		}
		seen := map[string]beacon.Instance{}
		for _, g := range got {
			k := fmt.Sprintf("%s:%d", g.Address, g.Port)
			if o, dup := seen[k]; dup {
				t.Fatalf("dedupe(%d): %s offered twice (%s, %s)", n, k, label([]beacon.Instance{o}), label([]beacon.Instance{g}))
			}
			seen[k] = g
		}
		if w := got[len(got)-1]; w.ID != "svc-0" || w.Node != "zz-old-node" || w.Health != beacon.HealthPassing {
			t.Errorf("dedupe(%d): the copy of svc-0 kept is %s; want the passing one on zz-old-node, last", n, label([]beacon.Instance{w}))
		}
		for _, d := range dups[1:] {
			if g := seen[fmt.Sprintf("%s:%d", in[d].Address, in[d].Port)]; g.Node == "zz-old-node" {
				t.Errorf("dedupe(%d): the critical copy of %s won over the passing one", n, g.ID)
			}
		}
	}
}

// TestDedupeNoAllocs: an answer without copies costs no allocation (the
// scratch slice is pooled), so publishing stays as cheap as before. The
// race detector makes sync.Pool drop a quarter of what it is given, so
// there the test only runs without -race.
func TestDedupeNoAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("sync.Pool drops items at random under -race; run without -race")
	}
	for _, n := range []int{10, 100, 2000} {
		insts := fleet(n)
		dedupe(insts) // warm the pool
		if a := testing.AllocsPerRun(20, func() { dedupe(insts) }); a > 0.5 {
			t.Errorf("dedupe(%d distinct) allocates %.1f times per call; want 0", n, a)
		}
	}
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func BenchmarkDedupe(b *testing.B) {
	for _, n := range []int{10, 100, 2000} {
		insts := fleet(n)
		b.Run(fmt.Sprintf("distinct-%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dedupe(insts)
			}
		})
		withCopies := fleet(n, 0, n/2, n-1)
		b.Run(fmt.Sprintf("3copies-%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dedupe(withCopies)
			}
		})
	}
}

// TestWatchOffersOneCopy: two agents of one cluster both hold ID x of
// service s at one address and port (an instance that moved while the old
// agent kept its copy). The catalog lists both; every watch, passing-only
// or of every state, shows one, and the passing copy wins over a critical
// one.
func TestWatchOffersOneCopy(t *testing.T) {
	cl := consultest.NewCluster(t, 1, 1)
	testutil.StressIfAsked(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	regs := make([]*consulhttp.Client, 2)
	for i, n := range []*consultest.Node{cl.Servers[0], cl.Clients[0]} {
		r, err := consulhttp.New(cl.Config(n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		regs[i] = r
		for _, id := range []string{"x", fmt.Sprintf("other-%d", i)} {
			port := 9100
			if id != "x" {
				port += 1 + i
			}
			err := r.Register(ctx, beacon.Registration{ID: id, Service: "s", Address: "127.0.0.1", Port: port,
				Checks: []beacon.Check{{ID: "ttl:" + id, TTL: time.Hour, InitialStatus: beacon.HealthPassing}}})
			if err != nil {
				t.Fatalf("Register(%q) on agent %d = %v", id, i, err)
			}
		}
	}
	// The raw catalog: x twice, once per node, both passing.
	raw := func() []beacon.Instance {
		insts, _, err := regs[1].Instances(ctx, beacon.Query{Service: "s", IncludeUnhealthy: true})
		if err != nil {
			t.Fatalf("Instances(s) = %v", err)
		}
		return insts
	}
	testutil.Eventually(t, 30*time.Second, "x passing on both nodes in the catalog", func() error {
		insts, n := raw(), 0
		for _, in := range insts {
			if in.ID == "x" && in.Health == beacon.HealthPassing {
				n++
			}
		}
		return testutil.Want(n == 2, "catalog %s", label(insts))
	})

	// A short stale bound: the guard verifies each watch, and again after
	// the change below, within the test.
	const bound = 2 * time.Second
	c, err := New(cl.Config(cl.Clients[0]), WithStaleBound(bound))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// until waits on w's changes until cond holds.
	until := func(w *Watcher, what string, cond func([]beacon.Instance) bool) {
		t.Helper()
		end := time.After(30 * time.Second)
		for {
			if s := w.Snapshot(); s != nil && s.Err == nil && cond(s.Instances) {
				return
			}
			select {
			case <-w.Changed():
			case <-end:
				var got []beacon.Instance
				if s := w.Snapshot(); s != nil {
					got = s.Instances
				}
				t.Fatalf("%s: never happened; last snapshot %s (catalog %s)", what, label(got), label(raw()))
			}
		}
	}
	copiesOfX := func(insts []beacon.Instance) (n int, node string, h beacon.Health) {
		for _, in := range insts {
			if in.ID == "x" {
				n, node, h = n+1, in.Node, in.Health
			}
		}
		return
	}
	lowest := min(cl.Servers[0].Name, cl.Clients[0].Name)
	var ws []*Watcher
	for _, all := range []bool{false, true} {
		w, err := c.Watch(beacon.Query{Service: "s", IncludeUnhealthy: all})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ws = append(ws, w)
		until(w, fmt.Sprintf("IncludeUnhealthy=%v: three instances, x once, on %s", all, lowest), func(insts []beacon.Instance) bool {
			n, node, _ := copiesOfX(insts)
			return len(insts) == 3 && n == 1 && node == lowest
		})
	}

	// The copy on the lowest node goes critical: both watches offer the
	// other one, passing.
	first, other := 0, cl.Clients[0].Name
	if lowest == cl.Clients[0].Name {
		first, other = 1, cl.Servers[0].Name
	}
	if err := regs[first].UpdateTTL(ctx, "ttl:x", beacon.HealthCritical, "stale copy"); err != nil {
		t.Fatalf("UpdateTTL(x, critical) = %v", err)
	}
	for i, w := range ws {
		until(w, fmt.Sprintf("IncludeUnhealthy=%v: x once, passing, on %s", i == 1, other), func(insts []beacon.Instance) bool {
			n, node, h := copiesOfX(insts)
			return len(insts) == 3 && n == 1 && node == other && h == beacon.HealthPassing
		})
	}
	// The catalog's copies are not a stale view: the guard's plain reads
	// hold x twice and must be compared one copy per endpoint. Proving that
	// nothing happens takes a wait: a few of the guard's rounds.
	<-time.After(3 * bound)
	for _, st := range c.Stats() {
		if st.StaleViews != 0 || st.OffStream {
			t.Errorf("watch of %s: %d stale views, off streaming %v: copies in the catalog were taken for a stale view", st.Service, st.StaleViews, st.OffStream)
		}
	}
}

// TestDedupePathsAgree: the pair-by-pair path and the hash-table path
// keep the same entries, on random answers full of copies (few addresses
// and ports, random health and nodes, some without an address).
func TestDedupePathsAgree(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	states := []beacon.Health{beacon.HealthPassing, beacon.HealthWarning, beacon.HealthCritical}
	for round := range 2000 {
		n := 1 + rnd.IntN(smallDedupe)
		in := make([]beacon.Instance, n)
		for i := range in {
			addr := fmt.Sprintf("10.0.0.%d", rnd.IntN(3))
			if rnd.IntN(10) == 0 {
				addr = ""
			}
			in[i] = beacon.Instance{ID: fmt.Sprintf("x%d", rnd.IntN(4)), Node: fmt.Sprintf("n%d", rnd.IntN(4)),
				Address: addr, Port: rnd.IntN(3), Health: states[rnd.IntN(3)]}
		}
		small := dedupeSmall(slices.Clone(in))
		table := new(scratch).dedupe(slices.Clone(in))
		same := func(a, b beacon.Instance) bool {
			return a.Key() == b.Key() && a.Address == b.Address && a.Port == b.Port && a.Health == b.Health
		}
		if !slices.EqualFunc(small, table, same) {
			t.Fatalf("round %d: dedupe(%s): pair by pair %s, hash table %s", round, label(in), label(small), label(table))
		}
	}
}
