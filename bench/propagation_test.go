package bench

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/consul/api/watch"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
)

// recorder notes when a watcher first saw each instance count during one
// phase of changes, in which the count only moves one way: a count seen
// means every change up to it was seen, so counts skipped over (two
// changes in one answer) are seen at the same time.
type recorder struct {
	mu   sync.Mutex
	dir  int // +1: counts go up; -1: down
	last int
	at   map[int]time.Time
	wake chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1), at: map[int]time.Time{}} }

func (r *recorder) observe(n int) {
	t := time.Now()
	r.mu.Lock()
	for r.dir != 0 && n*r.dir > r.last*r.dir {
		r.last += r.dir
		if _, ok := r.at[r.last]; !ok {
			r.at[r.last] = t
		}
	}
	if r.dir == 0 {
		r.last = n
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// phase starts a phase from count from, in direction dir.
func (r *recorder) phase(from, dir int) {
	r.mu.Lock()
	r.dir, r.last, r.at = dir, from, map[int]time.Time{}
	r.mu.Unlock()
}

// reached reports when count n was first seen in this phase.
func (r *recorder) reached(n int) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.at[n]
	return t, ok
}

// waitFor waits up to 60 s for count n in this phase.
func (r *recorder) waitFor(n int) bool {
	deadline := time.After(60 * time.Second)
	for {
		if _, ok := r.reached(n); ok {
			return true
		}
		select {
		case <-r.wake:
		case <-deadline:
			return false
		}
	}
}

// waitCount waits up to 60 s for the watcher to show n instances, outside
// any phase.
func (r *recorder) waitCount(n int) bool {
	deadline := time.After(60 * time.Second)
	for {
		r.mu.Lock()
		last := r.last
		r.mu.Unlock()
		if last == n {
			return true
		}
		select {
		case <-r.wake:
		case <-deadline:
			return false
		}
	}
}

// propChanges is how many instances each case registers and then
// deregisters (two changes each): BEACON_PROP_CHANGES, default 100 (200
// changes) back to back and 50 (100 changes) spaced.
func propChanges(def int) int {
	if n, err := strconv.Atoi(os.Getenv("BEACON_PROP_CHANGES")); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkPropagation times every change of a service for four watchers
// following it at once on one agent: Beacon's cache with its defaults,
// Beacon with the rate limit of before issue 15 (WithHotThreshold(0, 0):
// every query past a burst of 2 waits on one query a second), go-kit's
// consul Instancer and consul's api/watch. A change is registering one
// more instance, or deregistering one, and its clock starts when the write
// is sent (not when it returns, by which time a watcher may already have
// it). Each case registers N instances and deregisters them again (2N
// changes, N from BEACON_PROP_CHANGES) at its pace: spaced, 1.1 s apart
// (longer than the old limiter's refill, so propagation alone); every
// 50 ms, 20 changes a second, a rolling deploy; and back to back, each
// write sent when the one before returns (hundreds a second on a dev
// agent: above the hot threshold, where Beacon degrades to polling by
// design). It reports each watcher's p50, p99 and maximum in ms over the
// same changes.
func BenchmarkPropagation(b *testing.B) {
	srv := consultest.NewServer(b)
	reg := newRegistry(b, backends[0], srv)
	ctx := context.Background()
	const service = "prop"
	const base = 3
	for i := range base {
		if err := reg.Register(ctx, registration(service+"-"+strconv.Itoa(i), service)); err != nil {
			b.Fatal(err)
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	follow := func(wake <-chan struct{}, count func() int, r *recorder) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-wake:
					r.observe(count())
				case <-done:
					return
				}
			}
		}()
	}
	names := []string{"beacon", "before", "gokit", "apiwatch"}
	recs := map[string]*recorder{}
	for _, n := range names {
		recs[n] = newRecorder()
	}
	for _, n := range []string{"beacon", "before"} {
		var opts []discovery.Option
		if n == "before" {
			opts = append(opts, discovery.WithHotThreshold(0, 0))
		}
		cache, err := discovery.New(srv.Config(), opts...)
		if err != nil {
			b.Fatal(err)
		}
		defer cache.Close()
		w, err := cache.Watch(beacon.Query{Service: service})
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		if _, err := w.Wait(ctx); err != nil {
			b.Fatal(err)
		}
		recs[n].observe(len(w.Snapshot().Instances))
		follow(w.Changed(), func() int { return len(w.Snapshot().Instances) }, recs[n])
	}

	inst := kitInstancer(b, srv, service)
	defer inst.Stop()
	events := make(chan sd.Event, 16)
	inst.Register(events)
	defer inst.Deregister(events)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case ev := <-events:
				recs["gokit"].observe(len(ev.Instances))
			case <-done:
				return
			}
		}
	}()

	plan, err := watch.Parse(map[string]any{"type": "service", "service": service, "passingonly": true})
	if err != nil {
		b.Fatal(err)
	}
	plan.Handler = func(_ uint64, raw any) {
		if entries, ok := raw.([]*api.ServiceEntry); ok {
			recs["apiwatch"].observe(len(entries))
		}
	}
	cfg := api.DefaultConfig()
	cfg.Address = srv.HTTPAddr
	client, err := api.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = plan.RunWithClientAndLogger(client, log.New(io.Discard, "", 0)) }()
	defer plan.Stop()

	for _, n := range names {
		if !recs[n].waitCount(base) {
			b.Fatalf("%s did not see the %d instances", n, base)
		}
	}

	cases := []struct {
		name  string
		every time.Duration
		n     int
	}{
		{"spaced", 1100 * time.Millisecond, propChanges(50)},
		{"every-50ms", 50 * time.Millisecond, propChanges(100)},
		{"back-to-back", 0, propChanges(100)},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			lat := map[string][]time.Duration{}
			for b.Loop() {
				// One phase registers bc.n instances, the next deregisters them.
				for _, dir := range []int{+1, -1} {
					from := base
					if dir < 0 {
						from = base + bc.n
					}
					for _, n := range names {
						recs[n].phase(from, dir)
					}
					sent := make([]time.Time, bc.n)
					for k := range bc.n {
						id := service + "-" + strconv.Itoa(100+k)
						sent[k] = time.Now()
						var err error
						if dir > 0 {
							err = reg.Register(ctx, registration(id, service))
						} else {
							err = reg.Deregister(ctx, id)
						}
						if err != nil {
							b.Fatal(err)
						}
						if bc.every > 0 && k < bc.n-1 {
							time.Sleep(time.Until(sent[k].Add(bc.every)))
						}
					}
					for _, n := range names {
						target := from + dir*bc.n
						if !recs[n].waitFor(target) {
							b.Fatalf("%s did not see %d instances within 60 s", n, target)
						}
						for k := range bc.n {
							t, _ := recs[n].reached(from + dir*(k+1))
							lat[n] = append(lat[n], t.Sub(sent[k]))
						}
					}
				}
			}
			p := func(lat []time.Duration, q float64) float64 {
				slices.Sort(lat)
				return float64(lat[int(float64(len(lat)-1)*q)].Microseconds()) / 1000
			}
			for _, n := range names {
				b.ReportMetric(p(lat[n], 0.5), n+"-p50-ms")
				b.ReportMetric(p(lat[n], 0.99), n+"-p99-ms")
				b.ReportMetric(p(lat[n], 1), n+"-max-ms")
			}
			b.ReportMetric(float64(len(lat["beacon"])), "changes")
			b.Logf("%s: %d changes; %s", bc.name, len(lat["beacon"]), fmt.Sprint(names))
		})
	}
}
