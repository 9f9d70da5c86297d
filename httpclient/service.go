package httpclient

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/discovery"
)

// service is a Transport's state for one service: its watch, the
// connection health of its instances, and the view requests pick from.
type service struct {
	name string
	w    *discovery.Watcher
	o    *options
	bal  balancer.Balancer

	cur atomic.Pointer[view]

	mu sync.Mutex // serialises rebuilding cur; guards health
	// health is keyed by instance, so that it survives the cache's
	// refreshes; instances that leave the service are forgotten.
	health map[beacon.InstanceKey]*health
}

// health is one instance's record of connection failures.
type health struct {
	failures atomic.Int32 // in a row
	until    atomic.Int64 // UnixNano when its ejection ends; 0 when not ejected
}

// succeeded clears the failures; it writes only when there were some, so
// that the hot path does not bounce the cache line between cores.
func (h *health) succeeded() {
	if h != nil && h.failures.Load() != 0 {
		h.failures.Store(0)
	}
}

const noExpiry = math.MaxInt64

// view is what requests pick from: the cache's Set less the ejected
// instances. It is immutable once published.
type view struct {
	src *balancer.Set // the cache's Set this view was built from
	set *balancer.Set // src less its ejected instances; src itself when none is
	// health holds the record of every endpoint of src and of set.
	health map[*balancer.Endpoint]*health
	// expires is when the first ejection in it ends (UnixNano), or noExpiry.
	expires int64
}

// view returns the current view, waiting for Consul's first answer when
// there has been none yet. It allocates only when the cache's Set changed
// or an ejection ended.
func (s *service) view(ctx context.Context) (*view, error) {
	snap := s.w.Snapshot()
	if snap == nil {
		var err error
		if snap, err = s.w.Wait(ctx); err != nil {
			return nil, fmt.Errorf("httpclient: resolving %q: %w", s.name, err)
		}
	}
	if v := s.cur.Load(); v != nil && v.src == snap.Set && (v.expires == noExpiry || time.Now().UnixNano() < v.expires) {
		return v, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UnixNano()
	if v := s.cur.Load(); v != nil && v.src == s.w.Snapshot().Set && now < v.expires {
		return v, nil // rebuilt by another request meanwhile
	}
	return s.rebuildLocked(now), nil
}

// rebuildLocked publishes a view of the latest snapshot and returns it. The
// caller holds s.mu.
func (s *service) rebuildLocked(now int64) *view {
	src := s.w.Snapshot().Set
	eps := src.Endpoints()
	v := &view{src: src, set: src, expires: noExpiry, health: make(map[*balancer.Endpoint]*health, len(eps))}
	keep := make(map[beacon.InstanceKey]*health, len(eps))
	ejected := 0
	for _, e := range eps {
		k := e.Instance.Key()
		h := s.health[k]
		if h == nil {
			h = new(health)
		}
		keep[k] = h
		v.health[e] = h
		switch u := h.until.Load(); {
		case u > now:
			ejected++
			v.expires = min(v.expires, u)
		case u != 0:
			h.until.Store(0)
			s.o.logger.Info("httpclient: ejection over; trying the instance again", "service", s.name, "id", e.Instance.ID, "addr", e.Addr)
		}
	}
	s.health = keep
	// With every instance ejected (only possible when the others left the
	// service meanwhile), trying them beats refusing every request.
	if ejected > 0 && ejected < len(eps) {
		live := make([]beacon.Instance, 0, len(eps)-ejected)
		for _, e := range eps {
			if v.health[e].until.Load() <= now {
				live = append(live, *e.Instance)
			}
		}
		v.set = balancer.NewSet(live, src) // shares the in-flight counts of src
		for _, e := range v.set.Endpoints() {
			v.health[e] = keep[e.Instance.Key()]
		}
	}
	s.cur.Store(v)
	return v
}

// failed records a connection failure of ep, and ejects it after
// o.ejectFailures in a row unless no other instance would be left.
func (s *service) failed(ep *balancer.Endpoint, h *health) {
	if h == nil || s.o.ejectFailures == 0 || int(h.failures.Add(1)) < s.o.ejectFailures {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := ep.Instance.Key()
	now := time.Now().UnixNano()
	if s.health[k] != h || h.until.Load() > now {
		return // left the service, or ejected by a concurrent failure
	}
	h.failures.Store(0)
	others := 0
	for _, e := range s.w.Snapshot().Set.Endpoints() {
		if ek := e.Instance.Key(); ek != k {
			if oh := s.health[ek]; oh == nil || oh.until.Load() <= now {
				others++
			}
		}
	}
	if others == 0 {
		s.o.logger.Warn("httpclient: instance keeps failing, but it is the last one not ejected", "service", s.name, "id", ep.Instance.ID, "addr", ep.Addr)
		return
	}
	h.until.Store(now + int64(s.o.ejectFor))
	s.o.logger.Warn("httpclient: ejecting instance after connection failures", "service", s.name, "id", ep.Instance.ID, "addr", ep.Addr, "failures", s.o.ejectFailures, "for", s.o.ejectFor)
	s.rebuildLocked(now)
}

// pickOther picks an instance of v not in tried, or any instance of v when
// every one has been tried. It allocates a Set of the untried instances.
func (s *service) pickOther(v *view, tried []beacon.InstanceKey) (balancer.Picked, *health, error) {
	eps := v.set.Endpoints()
	rest := make([]beacon.Instance, 0, len(eps))
	for _, e := range eps {
		if !slices.Contains(tried, e.Instance.Key()) {
			rest = append(rest, *e.Instance)
		}
	}
	set := v.set
	if len(rest) > 0 && len(rest) < len(eps) {
		set = balancer.NewSet(rest, v.set) // shares the in-flight counts of v.set
	}
	ep, err := s.bal.Pick(set)
	if err != nil {
		return balancer.Picked{}, nil, err
	}
	k := ep.Instance.Key()
	for _, e := range eps {
		if e.Instance.Key() == k {
			return ep, v.health[e], nil
		}
	}
	return ep, nil, nil
}

// ejected returns copies of the instances being skipped.
func (s *service) ejected() []beacon.Instance {
	v := s.cur.Load()
	if v == nil {
		return nil
	}
	now := time.Now().UnixNano()
	var out []beacon.Instance
	for _, e := range v.src.Endpoints() {
		if v.health[e].until.Load() > now {
			out = append(out, e.Instance.Clone())
		}
	}
	return out
}

// noInstances wraps err, from a balancer, with the service's name and the
// discovery error that may explain the empty set.
func (s *service) noInstances(err error) error {
	if snap := s.w.Snapshot(); snap != nil && snap.Err != nil {
		return fmt.Errorf("httpclient: service %q: %w (last discovery error: %w)", s.name, err, snap.Err)
	}
	return fmt.Errorf("httpclient: service %q: %w", s.name, err)
}
