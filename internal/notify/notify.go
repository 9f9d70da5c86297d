// Package notify is the listener set behind discovery.Cache.Notify and
// keeper.Keeper.Notify: functions added and removed at any time, called in
// the order added by whoever emits.
package notify

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Set holds listeners of events of type E. Emitting takes no lock and,
// with nobody listening, costs one atomic load: the list is copied on
// write. The zero value is an empty set, ready to use; a nil *Set emits to
// nobody.
type Set[E any] struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*func(E)]
}

// Add makes f a listener until stop is called. stop is safe to call more
// than once and concurrently; an event being emitted while it runs may
// still reach f once. A nil f listens to nothing.
func (s *Set[E]) Add(f func(E)) (stop func()) {
	if f == nil {
		return func() {}
	}
	p := &f
	s.mu.Lock()
	var next []*func(E)
	if cur := s.list.Load(); cur != nil {
		next = slices.Clone(*cur)
	}
	next = append(next, p)
	s.list.Store(&next)
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			next := slices.DeleteFunc(slices.Clone(*s.list.Load()), func(q *func(E)) bool { return q == p })
			if len(next) == 0 {
				s.list.Store(nil)
				return
			}
			s.list.Store(&next)
		})
	}
}

// Any reports whether anybody listens, so an emitter builds an event only
// then.
func (s *Set[E]) Any() bool { return s != nil && s.list.Load() != nil }

// Emit calls every listener with e, in the order they were added, on the
// caller's goroutine.
func (s *Set[E]) Emit(e E) {
	if s == nil {
		return
	}
	ls := s.list.Load()
	if ls == nil {
		return
	}
	for _, f := range *ls {
		(*f)(e)
	}
}
