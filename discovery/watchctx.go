package discovery

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// watchLife is a watch's lifetime as a context.Context: it ends when the
// watch stops (stop) or the cache closes, whichever comes first. It lives
// inside the watch, in three words, so a watch costs no
// context.WithCancel of its own (a cancelCtx, an entry in the cache
// context's children map and a cancel closure: about 300 bytes, a
// quarter of what a watch the change feed drives costs). Its Done channel
// is made at the first call, and only then is it tied to the cache's
// context: most feed-driven watches never need one. It carries no values
// and no deadline, as the cache's context carries none.
//
// Contexts derived from it (context.WithTimeout and the like) end with it
// without a goroutine each: it has the AfterFunc method the context
// package looks for on a parent.
type watchLife struct {
	parent *lifetime // the cache's
	links  atomic.Pointer[watchLinks]
	ended  atomic.Uint32 // lifeLive, lifeStopped or lifeParent
}

const (
	lifeLive    = iota
	lifeStopped // the watch stopped: context.Canceled
	lifeParent  // the cache closed: its context's error
)

// watchLinks is what a watchLife needs once something waits on it.
type watchLinks struct {
	mu     sync.Mutex
	done   chan struct{}
	closed bool          // done is closed
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
	why := l.ended.Load()
	if why == lifeLive {
		if l.parent.ctx.Err() == nil {
			return nil
		}
		// The cache closed: end now, not when AfterFunc gets to it.
		l.end(lifeParent)
		why = l.ended.Load()
	}
	// Done closes before Err reports the end, as a cancelCtx's does.
	if k := l.links.Load(); k != nil {
		k.shut()
	}
	if why == lifeStopped {
		return context.Canceled
	}
	return l.parent.ctx.Err()
}

// Done returns a channel closed when the watch stops or the cache closes.
func (l *watchLife) Done() <-chan struct{} { return l.link().done }

// link returns l's links, made and tied to the parent at the first call.
func (l *watchLife) link() *watchLinks {
	if k := l.links.Load(); k != nil {
		return k
	}
	k := &watchLinks{done: make(chan struct{})}
	if !l.links.CompareAndSwap(nil, k) {
		return l.links.Load()
	}
	k.mu.Lock()
	if l.ended.Load() == lifeLive {
		// An end from now on finds k (end loads links after setting
		// ended), and shuts it once this lock is released. If the parent
		// has already ended, f runs on a goroutine of its own.
		k.unlink = context.AfterFunc(l.parent.ctx, func() { l.end(lifeParent) })
		k.mu.Unlock()
		return k
	}
	k.mu.Unlock()
	k.shut() // ended before k was there to be shut
	return k
}

// AfterFunc arranges for f to run once l ends, and returns a function that
// cancels that, reporting whether it did; the context package calls it to
// end the contexts derived from l. f runs on a goroutine of its own when
// l has already ended: the context package calls AfterFunc holding the
// derived context's lock, which f takes.
func (l *watchLife) AfterFunc(f func()) func() bool {
	k := l.link()
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	e := &afterEntry{f: f}
	k.afters = append(k.afters, e)
	k.mu.Unlock()
	return func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		i := slices.Index(k.afters, e)
		if i < 0 {
			return false
		}
		k.afters = slices.Delete(k.afters, i, i+1)
		return true
	}
}

// stop ends l because the watch stopped. It is safe to call more than once.
func (l *watchLife) stop() { l.end(lifeStopped) }

// end ends l for why (lifeStopped or lifeParent), once.
func (l *watchLife) end(why uint32) {
	if !l.ended.CompareAndSwap(lifeLive, why) {
		return
	}
	if k := l.links.Load(); k != nil {
		k.shut()
	}
}

// shut closes done, once, then unties l from the parent and runs the
// derived contexts' AfterFuncs, without k.mu held.
func (k *watchLinks) shut() {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return
	}
	k.closed = true
	close(k.done)
	unlink, afters := k.unlink, k.afters
	k.unlink, k.afters = nil, nil
	k.mu.Unlock()
	if unlink != nil {
		unlink()
	}
	for _, a := range afters {
		a.f()
	}
}
