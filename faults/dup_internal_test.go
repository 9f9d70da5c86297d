package faults

import (
	"slices"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

// The window arithmetic of dupWatch, on made-up reads: the figures in the
// reports are only as good as this.
func TestDupWindow(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	one := map[string][]string{"a": {"n2"}}
	two := map[string][]string{"a": {"n1", "n2"}}
	read := func(index uint64, ms int, passing map[string][]string) catalogRead {
		return catalogRead{at: at(ms), index: index, checks: map[string]beacon.Health{}, passing: passing}
	}
	tests := []struct {
		name        string
		reads       []catalogRead
		from        int // ms
		window, all time.Duration
		open        bool
		states      int
	}{
		{"none", []catalogRead{read(1, 0, one), read(1, 20, one)}, 10, 0, 0, false, 0},
		{"after the answer", []catalogRead{read(1, 0, one), read(2, 40, two), read(2, 60, two), read(3, 75, one)}, 10, 65 * time.Millisecond, 65 * time.Millisecond, false, 1},
		{"before the answer", []catalogRead{read(1, 0, one), read(2, 5, two), read(3, 30, one)}, 10, 20 * time.Millisecond, 25 * time.Millisecond, false, 1},
		{"over before the answer", []catalogRead{read(2, 5, two), read(3, 8, one)}, 10, 0, 3 * time.Millisecond, false, 1},
		{"still open", []catalogRead{read(1, 0, one), read(2, 40, two)}, 10, 30 * time.Millisecond, 30 * time.Millisecond, true, 1},
		// A blocking answer and a plain read out of arrival order: ordered
		// by index, the state at index 2 counts from its first arrival.
		{"out of order", []catalogRead{read(1, 0, one), read(3, 50, one), read(2, 45, two), read(2, 20, two)}, 10, 40 * time.Millisecond, 40 * time.Millisecond, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &dupWatch{t0: t0, stopCh: make(chan struct{}), done: make(chan struct{}), reads: tt.reads}
			close(d.done)
			r := d.stop(at(tt.from))
			if r.window != tt.window || r.all != tt.all || r.open != tt.open || r.dupReads != tt.states {
				t.Errorf("stop = window %v, all %v, open %v, states %d; want %v, %v, %v, %d", r.window, r.all, r.open, r.dupReads, tt.window, tt.all, tt.open, tt.states)
			}
		})
	}
}

func TestCallerDups(t *testing.T) {
	in := func(node, id string, port int) beacon.Instance {
		return beacon.Instance{Node: node, ID: id, Address: "127.0.0.1", Port: port}
	}
	tests := []struct {
		name  string
		insts []beacon.Instance
		want  int
	}{
		{"distinct", []beacon.Instance{in("n1", "a", 1), in("n2", "b", 2)}, 0},
		{"one ID on two nodes", []beacon.Instance{in("n1", "a", 1), in("n2", "a", 1)}, 1},
		{"one address and port", []beacon.Instance{in("n1", "a", 1), in("n2", "b", 1)}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := callerDups(tt.insts); len(got) != tt.want {
				t.Errorf("callerDups(%v) = %q, want %d", tt.insts, got, tt.want)
			}
		})
	}
}

func TestMinMedMax(t *testing.T) {
	ds := []time.Duration{30 * time.Millisecond, 0, 10 * time.Millisecond}
	if got, want := minMedMax(ds), "n=3 (2 with a duplicate) min 0ms median 10ms max 30ms"; got != want {
		t.Errorf("minMedMax(%v) = %q, want %q", ds, got, want)
	}
	if !slices.Equal(ds, []time.Duration{30 * time.Millisecond, 0, 10 * time.Millisecond}) {
		t.Errorf("minMedMax sorted its argument: %v", ds)
	}
}
