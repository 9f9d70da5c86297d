package discovery

import (
	"slices"
	"sync"
)

// subscribers are the channels a watch wakes at each change (a service
// watch's Watchers, the coordinate watch's RTTWatchers). Each channel has
// a buffer of one: a wake-up is never blocked on, at most one is pending,
// and a reader always loads the newest value. Safe for concurrent use.
type subscribers struct {
	mu  sync.Mutex
	chs []chan struct{} // a slice, not a map: most watches have one or two
	// sent counts notify calls, so that a Watcher making its channel only
	// at its first Changed knows whether it missed a wake-up.
	sent uint64
}

// add subscribes ch, owned by the caller.
func (s *subscribers) add(ch chan struct{}) {
	s.mu.Lock()
	s.chs = append(s.chs, ch)
	s.mu.Unlock()
}

// remove unsubscribes ch, if it was subscribed.
func (s *subscribers) remove(ch chan struct{}) {
	s.mu.Lock()
	if i := slices.Index(s.chs, ch); i >= 0 {
		s.chs = slices.Delete(s.chs, i, i+1)
	}
	s.mu.Unlock()
}

// notify wakes every subscriber without blocking.
func (s *subscribers) notify() {
	s.mu.Lock()
	s.sent++
	chans := slices.Clone(s.chs)
	s.mu.Unlock()
	for _, ch := range chans {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
