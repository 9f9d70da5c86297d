package balancer

import (
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
)

// Ejection leaves out of picks, for a while, the instances whose
// connections keep failing: outlier ejection, as a filter over a Set. The
// caller reports each attempt with Failed or Succeeded and picks from
// Filter's result.
//
// An instance is ejected after Failed was called for it failures times in
// a row, and filtered out until the ejection ends; Succeeded resets its
// count. The last instance of a Set not ejected is never ejected: trying a
// failing instance beats refusing every request. The record is kept per
// instance (by Key), so it survives refreshes of the Set; instances that
// leave the Set are forgotten.
//
// A nil *Ejection ejects nothing: Filter returns its Set, and the other
// methods do nothing. An Ejection is safe for concurrent use. It is meant
// for one service: give each service its own.
type Ejection struct {
	failures int
	d        time.Duration
	log      *slog.Logger

	cur atomic.Pointer[ejectView]

	mu sync.Mutex // serialises rebuilding cur; guards health
	// health is keyed by instance, so that it survives the Set's refreshes.
	health map[beacon.InstanceKey]*ejectHealth
}

// ejectHealth is one instance's record of connection failures.
type ejectHealth struct {
	failures atomic.Int32 // in a row
	until    atomic.Int64 // UnixNano when its ejection ends; 0 when not ejected
}

const noExpiry = math.MaxInt64

// ejectView is a Set less its ejected instances. It is immutable once
// published.
type ejectView struct {
	src *Set // the Set this view filters
	set *Set // src less its ejected instances; src itself when none is
	// health holds the record of every endpoint of src and of set.
	health map[*Endpoint]*ejectHealth
	// expires is when the first ejection in it ends (UnixNano), or noExpiry.
	expires int64
}

// NewEjection returns an Ejection that skips an instance for d after
// failures failed attempts in a row, logging ejections and their end to
// log (which may be nil). With failures or d of zero or less it returns
// nil, which ejects nothing.
func NewEjection(failures int, d time.Duration, log *slog.Logger) *Ejection {
	if failures <= 0 || d <= 0 {
		return nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Ejection{failures: failures, d: d, log: log, health: map[beacon.InstanceKey]*ejectHealth{}}
}

// Filter returns src less the instances being ejected: src itself when none
// is. It allocates only when src is not the Set it filtered last or an
// ejection ended; otherwise it is an atomic load (and a clock read while an
// ejection runs). The returned Set shares src's per-instance state (requests
// in flight).
func (e *Ejection) Filter(src *Set) *Set {
	if e == nil {
		return src
	}
	return e.view(src).set
}

func (e *Ejection) view(src *Set) *ejectView {
	if v := e.cur.Load(); v != nil && v.src == src && (v.expires == noExpiry || time.Now().UnixNano() < v.expires) {
		return v
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now().UnixNano()
	if v := e.cur.Load(); v != nil && v.src == src && now < v.expires {
		return v // rebuilt by another caller meanwhile
	}
	return e.rebuildLocked(src, now)
}

// rebuildLocked publishes a view of src and returns it. The caller holds
// e.mu.
func (e *Ejection) rebuildLocked(src *Set, now int64) *ejectView {
	eps := src.Endpoints()
	v := &ejectView{src: src, set: src, expires: noExpiry, health: make(map[*Endpoint]*ejectHealth, len(eps))}
	keep := make(map[beacon.InstanceKey]*ejectHealth, len(eps))
	ejected := 0
	for _, ep := range eps {
		k := ep.Instance.Key()
		h := e.health[k]
		if h == nil {
			h = new(ejectHealth)
		}
		keep[k] = h
		v.health[ep] = h
		switch u := h.until.Load(); {
		case u > now:
			ejected++
			v.expires = min(v.expires, u)
		case u != 0:
			h.until.Store(0)
			e.log.Info("balancer: ejection over; trying the instance again", "id", ep.Instance.ID, "addr", ep.Addr)
		}
	}
	e.health = keep
	// With every instance ejected (only possible when the others left the
	// Set meanwhile), trying them beats refusing every request.
	if ejected > 0 && ejected < len(eps) {
		v.set = src.Without(func(ep *Endpoint) bool { return v.health[ep].until.Load() > now })
		for _, ep := range v.set.Endpoints() {
			v.health[ep] = keep[ep.Instance.Key()]
		}
	}
	e.cur.Store(v)
	return v
}

// Succeeded records that an attempt on ep, picked from a Set Filter
// returned, got a response: its failures are forgotten. It writes nothing
// shared when there were none.
func (e *Ejection) Succeeded(ep *Endpoint) {
	if h := e.record(ep); h != nil && h.failures.Load() != 0 {
		h.failures.Store(0)
	}
}

// Failed records that an attempt on ep, picked from a Set Filter returned,
// failed on the connection, and ejects ep once that has happened failures
// times in a row, unless no other instance would be left.
func (e *Ejection) Failed(ep *Endpoint) {
	h := e.record(ep)
	if h == nil || int(h.failures.Add(1)) < e.failures {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k := ep.Instance.Key()
	now := time.Now().UnixNano()
	if e.health[k] != h || h.until.Load() > now {
		return // left the Set, or ejected by a concurrent failure
	}
	h.failures.Store(0)
	src := e.cur.Load().src
	others := 0
	for _, o := range src.Endpoints() {
		if ok := o.Instance.Key(); ok != k {
			if oh := e.health[ok]; oh == nil || oh.until.Load() <= now {
				others++
			}
		}
	}
	if others == 0 {
		e.log.Warn("balancer: instance keeps failing, but it is the last one not ejected", "id", ep.Instance.ID, "addr", ep.Addr)
		return
	}
	h.until.Store(now + int64(e.d))
	e.log.Warn("balancer: ejecting instance after connection failures", "id", ep.Instance.ID, "addr", ep.Addr, "failures", e.failures, "for", e.d)
	e.rebuildLocked(src, now)
}

// record returns ep's record in the current view, or nil.
func (e *Ejection) record(ep *Endpoint) *ejectHealth {
	if e == nil || ep == nil {
		return nil
	}
	v := e.cur.Load()
	if v == nil {
		return nil
	}
	if h := v.health[ep]; h != nil {
		return h
	}
	// Picked from an earlier view: find the instance's record by key.
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.health[ep.Instance.Key()]
}

// Ejected returns copies of the instances of the Set last filtered that are
// being skipped, or nil. An instance whose ejection has not ended but which
// is tried anyway, being the last, is not skipped.
func (e *Ejection) Ejected() []beacon.Instance {
	if e == nil {
		return nil
	}
	v := e.cur.Load()
	if v == nil || v.set == v.src {
		return nil
	}
	now := time.Now().UnixNano()
	var out []beacon.Instance
	for _, ep := range v.src.Endpoints() {
		if v.health[ep].until.Load() > now {
			out = append(out, ep.Instance.Clone())
		}
	}
	return out
}
