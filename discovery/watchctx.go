package discovery

import (
	"context"
	"slices"
	"sync"
	"time"
)

// watchLife is a watch's lifetime as a context.Context: it ends when the
// watch stops (stop) or the cache closes, whichever comes first. It lives
// inside the watch, so a watch costs no context.WithCancel of its own (a
// cancelCtx, an entry in the cache context's children map and a cancel
// closure: about 300 bytes, most of a watch the change feed drives). Its
// Done channel is made at the first call, and only then is it tied to the
// cache's context: most feed-driven watches never need one. It carries no
// values and no deadline, as the cache's context carries none.
//
// Contexts derived from it (context.WithTimeout and the like) end with it
// without a goroutine each: it implements the AfterFunc method the context
// package looks for.
type watchLife struct {
	parent *lifetime // the cache's
	mu     sync.Mutex
	ended  uint8       // lifeLive, lifeStopped or lifeParent
	links  *watchLinks // made at the first Done or AfterFunc
}

const (
	lifeLive    = iota
	lifeStopped // the watch stopped: context.Canceled
	lifeParent  // the cache closed: its context's error
)

// watchLinks is what a watchLife needs once something waits on it.
type watchLinks struct {
	done   chan struct{}
	unlink func() bool   // undoes context.AfterFunc on the parent
	afters []*afterEntry // derived contexts to end with it
}

type afterEntry struct{ f func() }

var _ context.Context = (*watchLife)(nil)

// Deadline reports none: the cache's context has none.
func (l *watchLife) Deadline() (time.Time, bool) { return time.Time{}, false }

// Value returns nil: the cache's context carries no values.
func (l *watchLife) Value(any) any { return nil }

// Err is context.Canceled once the watch stopped, or the cache's
// context's error once it ended; nil before.
func (l *watchLife) Err() error {
	l.mu.Lock()
	ended := l.ended
	l.mu.Unlock()
	switch ended {
	case lifeStopped:
		return context.Canceled
	case lifeParent:
		return l.parent.ctx.Err()
	}
	if l.parent.ctx.Err() != nil {
		// The cache closed; Done closes now, not when AfterFunc gets to it,
		// so that Err and Done always agree.
		l.end(lifeParent)
		return l.Err()
	}
	return nil
}

// Done returns a channel closed when the watch stops or the cache closes.
func (l *watchLife) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.linkLocked().done
}

// linkLocked makes l.links, tied to the parent, if it is not yet. Caller
// holds l.mu.
func (l *watchLife) linkLocked() *watchLinks {
	if l.links != nil {
		return l.links
	}
	l.links = &watchLinks{done: make(chan struct{})}
	if l.ended != lifeLive {
		close(l.links.done)
		return l.links
	}
	// On a goroutine of its own if the parent has already ended, so never
	// while l.mu is held.
	l.links.unlink = context.AfterFunc(l.parent.ctx, func() { l.end(lifeParent) })
	return l.links
}

// AfterFunc arranges for f to run once l ends, and returns a function that
// cancels that, reporting whether it did; the context package calls it to
// end the contexts derived from l. f runs on a goroutine of its own when
// l has already ended: the context package calls AfterFunc holding the
// derived context's lock, which f takes.
func (l *watchLife) AfterFunc(f func()) func() bool {
	l.mu.Lock()
	links := l.linkLocked()
	if l.ended != lifeLive {
		l.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	e := &afterEntry{f: f}
	links.afters = append(links.afters, e)
	l.mu.Unlock()
	return func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		i := slices.Index(l.links.afters, e)
		if i < 0 {
			return false
		}
		l.links.afters = slices.Delete(l.links.afters, i, i+1)
		return true
	}
}

// stop ends l because the watch stopped. It is safe to call more than once.
func (l *watchLife) stop() { l.end(lifeStopped) }

// end ends l for why (lifeStopped or lifeParent), once: it closes Done,
// unties l from the parent and runs the derived contexts' AfterFuncs, in
// that order and without l.mu held.
func (l *watchLife) end(why uint8) {
	l.mu.Lock()
	if l.ended != lifeLive {
		l.mu.Unlock()
		return
	}
	l.ended = why
	var unlink func() bool
	var afters []*afterEntry
	if links := l.links; links != nil {
		close(links.done)
		unlink, afters = links.unlink, links.afters
		links.afters = nil
	}
	l.mu.Unlock()
	if unlink != nil {
		unlink()
	}
	for _, a := range afters {
		a.f()
	}
}
