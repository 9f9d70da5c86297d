// Package lru is a bounded map that evicts its least recently used entry,
// approximately: the clock (second-chance) algorithm. It is the one map
// behind the discovery cache's pinned watches and httpclient's per-service
// state, which both take names from callers and must not grow without
// bound.
//
// Reads take no lock and allocate nothing, so a hot path (a pick, a
// request) pays one atomic load and, at most, one atomic store; writes copy
// the map, which is cheap because entries are added once per name, not
// once per read.
package lru

import (
	"sync"
	"sync/atomic"
)

// Map maps keys to values and holds at most its capacity. It is safe for
// concurrent use; the zero Map is not usable, create one with New.
type Map[K comparable, V any] struct {
	max   int
	evict func(K, V)

	// m is replaced, never modified, by writers holding mu: readers load
	// it without a lock.
	m  atomic.Pointer[map[K]*entry[V]]
	mu sync.Mutex
}

type entry[V any] struct {
	v V
	// used is set on every read and cleared by eviction scans: the clock
	// approximation of recency, which costs a read one atomic load instead
	// of a clock read and a shared write.
	used atomic.Bool
}

// New returns an empty Map holding at most size entries (at least 1).
// evict, which may be nil, is called with every entry Add pushes out or
// Clear removes, after the Map's lock is released, so it may block or call
// back into the Map.
func New[K comparable, V any](size int, evict func(K, V)) *Map[K, V] {
	m := &Map[K, V]{max: max(size, 1), evict: evict}
	m.m.Store(&map[K]*entry[V]{})
	return m
}

// Get returns the value of k and marks it used. It takes no lock and does
// not allocate.
func (m *Map[K, V]) Get(k K) (V, bool) {
	e := (*m.m.Load())[k]
	if e == nil {
		var zero V
		return zero, false
	}
	if !e.used.Load() { // a store only when needed: no shared write per read
		e.used.Store(true)
	}
	return e.v, true
}

// Add stores v under k unless k is already present, and returns the value
// now stored and whether it is v. When k was present, the caller still owns
// v (and should release it). Adding to a full Map evicts the entry the clock
// finds first unused since its last pass.
func (m *Map[K, V]) Add(k K, v V) (V, bool) {
	type victim struct {
		k K
		v V
	}
	var out []victim
	m.mu.Lock()
	cur := *m.m.Load()
	if e := cur[k]; e != nil {
		m.mu.Unlock()
		return e.v, false
	}
	next := make(map[K]*entry[V], len(cur)+1)
	for ck, cv := range cur {
		next[ck] = cv
	}
	for len(next) >= m.max {
		// Two passes at most: the first clears every used mark it passes,
		// so the second finds an entry. Go's map order is random, which
		// stands in for the clock's hand.
		found := false
		for pass := 0; !found && pass < 2; pass++ {
			for ck, cv := range next {
				if !cv.used.Swap(false) {
					out = append(out, victim{ck, cv.v})
					delete(next, ck)
					found = true
					break
				}
			}
		}
	}
	e := &entry[V]{v: v}
	e.used.Store(true)
	next[k] = e
	m.m.Store(&next)
	m.mu.Unlock()
	if m.evict != nil {
		for _, x := range out {
			m.evict(x.k, x.v)
		}
	}
	return v, true
}

// Len returns the number of entries.
func (m *Map[K, V]) Len() int { return len(*m.m.Load()) }

// Clear removes every entry, calling evict with each.
func (m *Map[K, V]) Clear() {
	m.mu.Lock()
	cur := *m.m.Load()
	m.m.Store(&map[K]*entry[V]{})
	m.mu.Unlock()
	if m.evict != nil {
		for k, e := range cur {
			m.evict(k, e.v)
		}
	}
}
