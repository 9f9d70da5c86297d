package discovery

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
)

// ZoneCallers follows how the callers of a service are spread over zones by
// watching the callers' own service: the passing instances of it, counted
// by zone (beacon.Instance.Zone), as Envoy learns the spread from its local
// cluster. It is a balancer.CallerSource for balancer.WithCallers. Create
// it with Cache.WatchCallers; Close it when done. Safe for concurrent use.
type ZoneCallers struct {
	w   *Watcher
	key string

	cur atomic.Pointer[zoneCount]
	mu  sync.Mutex // serialises counting a new snapshot
}

// zoneCount is the spread counted from one snapshot.
type zoneCount struct {
	snap    *Snapshot
	callers *balancer.Callers
}

var _ balancer.CallerSource = (*ZoneCallers)(nil)

// WatchCallers starts following the spread over zones of q.Service's
// instances (passing ones, unless q says otherwise), reading each one's
// zone under key ("" for beacon.DefaultZoneKey), through the cache's shared
// watch of q. It returns at once; Callers is nil until Consul answers.
func (c *Cache) WatchCallers(q beacon.Query, key string) (*ZoneCallers, error) {
	w, err := c.Watch(q)
	if err != nil {
		return nil, fmt.Errorf("discovery: watch callers: %w", err)
	}
	return &ZoneCallers{w: w, key: key}, nil
}

// Callers returns the spread counted from the watch's latest snapshot, or
// nil before Consul's first answer. The spread is counted
// once per snapshot; the same *balancer.Callers is returned until the
// counts change, so a balancer.ZoneAware keeps its plan across answers that
// move nothing between zones. In the steady state it is two atomic loads
// and allocates nothing.
func (z *ZoneCallers) Callers() *balancer.Callers {
	snap := z.w.Snapshot()
	if snap == nil || snap.Source == SourceNone {
		return nil
	}
	if cur := z.cur.Load(); cur != nil && cur.snap == snap {
		return cur.callers
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	cur := z.cur.Load()
	if cur != nil && cur.snap == snap {
		return cur.callers
	}
	c := balancer.CallersOf(snap.Instances, z.key)
	if cur != nil && cur.callers.Equal(c) {
		c = cur.callers
	}
	z.cur.Store(&zoneCount{snap: snap, callers: c})
	return c
}

// Close stops the watch (shared with other watchers of the same query, it
// ends when the last one closes). Safe to call more than once.
func (z *ZoneCallers) Close() { z.w.Close() }
