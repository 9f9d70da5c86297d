package status

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/keeper"
)

// Sampling defaults and bounds (WithSampling).
const (
	DefaultSampleEvery = 10 * time.Second
	DefaultSamples     = 60
	// MaxSamples bounds the samples kept per service.
	MaxSamples = 360
	// MaxServices bounds the services with a history: beyond it, new
	// services are not sampled until others are no longer watched. At
	// 10,000 services of 60 samples it holds about 3 MB.
	MaxServices = 10_000
)

// ring is one service's passing counts.
type ring struct {
	v    []int32
	next int
	n    int
}

func (r *ring) add(x int) {
	r.v[r.next] = int32(min(x, 1<<31-1))
	r.next = (r.next + 1) % len(r.v)
	r.n = min(r.n+1, len(r.v))
}

// values returns the samples, oldest first.
func (r *ring) values() []int {
	out := make([]int, r.n)
	for i := range r.n {
		out[i] = int(r.v[(r.next-r.n+i+len(r.v))%len(r.v)])
	}
	return out
}

// rowKey identifies a watch between samples. Watches that differ only in
// what WatchStats does not show (their tags) share a key; such keys are
// skipped when deriving events, as their rows cannot be told apart.
type rowKey struct {
	service, dc, prepared string
	failover              bool
}

// history is the sampler's state: one ring per service, and the last
// sample's rows and keeper state, to derive events from.
type history struct {
	mu      sync.Mutex
	samples int
	rings   map[string]*ring
	prev    map[rowKey]discovery.WatchStats
	prevK   *keeper.Status
	// live: the cache reports failovers, stale views repaired and
	// instance changes as they happen; inferring them too would record
	// each twice.
	live bool
}

func newHistory(samples int) *history {
	return &history{samples: samples, rings: map[string]*ring{}}
}

// sample records one reading of stats (and of the keeper when ks is not
// nil), recording what changed since the last into ev.
func (h *history) sample(now time.Time, stats []discovery.WatchStats, ks *keeper.Status, ev *Events) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// Per service, the first row in discovery's order.
	seen := make(map[string]bool, len(h.rings))
	for _, st := range stats {
		if seen[st.Service] {
			continue
		}
		seen[st.Service] = true
		r := h.rings[st.Service]
		if r == nil {
			if len(h.rings) >= MaxServices {
				continue
			}
			r = &ring{v: make([]int32, h.samples)}
			h.rings[st.Service] = r
		}
		r.add(st.Instances)
	}
	for s := range h.rings {
		if !seen[s] {
			delete(h.rings, s) // no longer watched
		}
	}
	cur := make(map[rowKey]discovery.WatchStats, len(stats))
	dup := map[rowKey]bool{}
	for _, st := range stats {
		k := rowKey{st.Service, st.Datacenter, st.PreparedQuery, st.Failover}
		if st.Failover {
			k.dc = "" // what it serves, not which watch it is: a move keeps the key
		}
		if _, ok := cur[k]; ok {
			dup[k] = true
		}
		cur[k] = st
	}
	if h.prev != nil {
		for k, st := range cur {
			if p, ok := h.prev[k]; ok && !dup[k] {
				derive(now, p, st, h.live, ev)
			}
		}
	}
	for k := range dup {
		delete(cur, k)
	}
	h.prev = cur
	if ks != nil {
		if p := h.prevK; p != nil {
			deriveKeeper(now, *p, *ks, ev)
		}
		h.prevK = ks
	}
}

// derive records what changed in one watch between two samples; live:
// the cache reports failovers, stale views and instance changes itself.
func derive(now time.Time, p, st discovery.WatchStats, live bool, ev *Events) {
	svc := st.Service
	if !live {
		deriveCacheEvents(now, p, st, ev)
	}
	if st.Panic != p.Panic {
		k, d := PanicLeft, "left panic"
		if st.Panic {
			k, d = PanicEntered, fmt.Sprintf("fewer than %.0f%% of the instances pass: publishing every one", st.PanicThreshold*100)
		}
		ev.Record(Event{Time: now, Kind: k, Service: svc, Detail: d})
	}
	if h := hidden(st); h && !hidden(p) {
		ev.Record(Event{Time: now, Kind: ACLHidden, Service: svc, Detail: "Consul answered an empty list that ACLs caused; serving the last good answer"})
	}
}

// deriveCacheEvents infers, for a cache that does not report them, the
// failovers, stale views repaired and instance count changes between two
// samples.
func deriveCacheEvents(now time.Time, p, st discovery.WatchStats, ev *Events) {
	svc := st.Service
	if st.Failovers > p.Failovers || (st.Failover && st.Datacenter != p.Datacenter) {
		t := st.FailoverSince
		if t.IsZero() {
			t = now
		}
		to := st.Datacenter
		if to == "" {
			to = "the local datacenter"
		}
		ev.Record(Event{Time: t, Kind: FailedOver, Service: svc, Detail: fmt.Sprintf("now serving %s: %s", to, st.FailoverReason)})
	}
	if n := st.StaleViews - p.StaleViews; n > 0 {
		ev.Record(Event{Time: now, Kind: StaleViewRepaired, Service: svc, Detail: fmt.Sprintf("%d stale view(s) repaired in %s", n, dcName(st.Datacenter))})
	}
	// A failover row's count is its served datacenter's, whose own row
	// records the change: once is enough.
	if st.Instances != p.Instances && !st.Failover {
		ev.Record(Event{Time: now, Kind: InstancesChanged, Service: svc, Detail: fmt.Sprintf("%d → %d instances in %s", p.Instances, st.Instances, dcName(st.Datacenter))})
	}
}

// deriveKeeper records what changed in the keeper between two samples.
func deriveKeeper(now time.Time, p, s keeper.Status, ev *Events) {
	if s.Agent != p.Agent && s.Agent != "" {
		ev.Record(Event{Time: now, Kind: KeeperMoved, Agent: address(s.Agent), Detail: fmt.Sprintf("registration moved from %s", orNone(address(p.Agent)))})
	}
	if s.Maintenance != p.Maintenance {
		d := "maintenance ended"
		if s.Maintenance {
			d = "instance in maintenance"
		}
		ev.Record(Event{Time: now, Kind: Maintenance, Agent: address(s.Agent), Detail: d})
	}
}

func hidden(st discovery.WatchStats) bool { return errors.Is(st.Err, discovery.ErrHiddenByACLs) }

func dcName(dc string) string {
	if dc == "" {
		return "the local datacenter"
	}
	return dc
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// histories returns every service's samples, by service.
func (h *history) histories() []History {
	h.mu.Lock()
	out := make([]History, 0, len(h.rings))
	for s, r := range h.rings {
		out = append(out, History{Service: cut(s), Passing: r.values()})
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b History) int {
		switch {
		case a.Service < b.Service:
			return -1
		case a.Service > b.Service:
			return 1
		}
		return 0
	})
	return out
}
