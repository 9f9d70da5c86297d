package discovery

import (
	"context"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/internal/lru"
)

// newPinned returns the map of watches Instances, Snapshot and Pick keep
// open: at most max, the least recently used closed past that.
func newPinned(n int) *lru.Map[string, *Watcher] {
	return lru.New(n, func(_ string, w *Watcher) { w.Close() })
}

// Instances returns the current instances of service (passing ones, by the
// cache's policies; in panic, every one not in maintenance), watching it
// from now on. The first call for a service
// waits for Consul's first answer, bounded by ctx; later calls touch no
// network. The slice is shared: do not modify it. When no agent can be
// reached and nothing is known of service, the error is an
// *UnreachableError (matching beacon.ErrUnavailable).
func (c *Cache) Instances(ctx context.Context, service string) ([]beacon.Instance, error) {
	w, err := c.pinnedWatch(service)
	if err != nil {
		return nil, err
	}
	s, err := w.Wait(ctx)
	if err != nil {
		return nil, err
	}
	return s.Instances, nil
}

// Snapshot returns the latest snapshot of service, watching it from now on
// as Instances does; the first call waits for Consul's first answer, and
// fails as Instances does.
func (c *Cache) Snapshot(ctx context.Context, service string) (*Snapshot, error) {
	w, err := c.pinnedWatch(service)
	if err != nil {
		return nil, err
	}
	if s := w.Snapshot(); s != nil && s.Source != SourceNone {
		return s, nil
	}
	return w.Wait(ctx)
}

// Pick picks an instance of service with b, watching it from now on, as
// Instances does. Call the pick's Done exactly once when the request ends.
// Once the service is watched, a pick takes no lock and allocates nothing.
func (c *Cache) Pick(ctx context.Context, service string, b balancer.Balancer) (balancer.Picked, error) {
	w, err := c.pinnedWatch(service)
	if err != nil {
		return balancer.Picked{}, err
	}
	s := w.Snapshot()
	if s == nil {
		if s, err = w.Wait(ctx); err != nil {
			return balancer.Picked{}, err
		}
	}
	return pick(s, b)
}

// pinnedWatch returns the watch Instances and Pick keep open until Close
// or until it is the least recently used of more than WithMaxPinned.
func (c *Cache) pinnedWatch(service string) (*Watcher, error) {
	if w, ok := c.pinned.Get(service); ok {
		return w, nil
	}
	w, err := c.Watch(beacon.Query{Service: service})
	if err != nil {
		return nil, err
	}
	held, added := c.pinned.Add(service, w)
	if !added {
		w.Close() // lost a race
	}
	return held, nil
}
