package httpclient

import (
	"context"
	"fmt"
	"slices"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/discovery"
)

// service is a Transport's state for one service: its watch, the balancer
// that picks, and the ejection filter over the snapshot's Set.
type service struct {
	name  string
	w     *discovery.Watcher
	bal   balancer.Balancer
	eject *balancer.Ejection // nil: ejection is off
}

// set returns what requests pick from: the latest snapshot's Set less the
// ejected instances, waiting for Consul's first answer when there has been
// none yet. It allocates only when the snapshot changed or an ejection
// ended.
func (s *service) set(ctx context.Context) (*balancer.Set, error) {
	snap := s.w.Snapshot()
	if snap == nil || snap.Source == discovery.SourceNone {
		var err error
		if snap, err = s.w.Wait(ctx); err != nil {
			return nil, fmt.Errorf("httpclient: resolving %q: %w", s.name, err)
		}
	}
	return s.eject.Filter(snap.Set()), nil
}

// pickOther picks an instance of set not in tried, or any instance of set
// when every one has been tried. It allocates a Set of the untried
// instances.
func (s *service) pickOther(set *balancer.Set, tried []beacon.InstanceKey) (balancer.Picked, error) {
	rest := set.Without(func(e *balancer.Endpoint) bool { return slices.Contains(tried, e.Instance.Key()) })
	if rest.Len() == 0 {
		rest = set
	}
	return s.bal.Pick(rest)
}

// noInstances wraps err, from a balancer, with the service's name and the
// discovery error that may explain the empty set.
func (s *service) noInstances(err error) error {
	if snap := s.w.Snapshot(); snap != nil && snap.Err != nil {
		return fmt.Errorf("httpclient: service %q: %w (last discovery error: %w)", s.name, err, snap.Err)
	}
	return fmt.Errorf("httpclient: service %q: %w", s.name, err)
}
