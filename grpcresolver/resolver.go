package grpcresolver

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/discovery"
)

// consulResolver follows one discovery watch and pushes its address set to
// one gRPC ClientConn.
type consulResolver struct {
	cc     resolver.ClientConn
	w      *discovery.Watcher
	q      beacon.Query
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	once   sync.Once

	// Owned by run.
	pushed bool    // a set has been pushed
	last   []entry // the set last pushed, sorted
}

var _ resolver.Resolver = (*consulResolver)(nil)

// entry is one address as pushed, with the instance behind it.
type entry struct {
	addr string
	key  beacon.InstanceKey
}

// run applies the current snapshot, then every change, until ctx ends.
func (r *consulResolver) run(ctx context.Context) {
	defer close(r.done)
	for {
		if s := r.w.Snapshot(); s != nil {
			r.apply(s)
		}
		select {
		case <-ctx.Done():
			return
		case <-r.w.Changed():
		}
	}
}

// apply pushes s's address set to gRPC unless it is the one pushed last.
func (r *consulResolver) apply(s *discovery.Snapshot) {
	if s.Source == discovery.SourceNone {
		// Consul has never answered this watch: s holds only an error.
		if s.Err != nil && !r.pushed {
			r.cc.ReportError(fmt.Errorf("grpcresolver: resolving %q: %w", r.q.Service, s.Err))
		}
		return
	}
	// With s.Err set, s still holds the watch's last good instances: they
	// are pushed if this resolver has not pushed them yet (it may have
	// missed the answer that brought them), and otherwise kept, stale but
	// serving. The error itself is never reported once Consul has answered.
	set := entries(s.Instances)
	if r.pushed && slices.Equal(set, r.last) {
		if s.Err != nil {
			r.log.Debug("grpcresolver: watch failing; keeping the last addresses", "index", s.Index, "err", s.Err)
		} else {
			r.log.Debug("grpcresolver: address set unchanged; not pushed", "index", s.Index, "addresses", len(set))
		}
		return
	}
	if err := r.cc.UpdateState(state(set)); err != nil {
		// The balancer refused the set and will ask for re-resolution; the
		// watch already delivers every change, so there is nothing to
		// retry. round_robin refuses every empty set: expected when a
		// service scales to zero, so that is only worth an Info.
		level := slog.LevelWarn
		if len(set) == 0 {
			level = slog.LevelInfo
		}
		r.log.Log(context.Background(), level, "grpcresolver: gRPC refused the address set", "index", s.Index, "addresses", len(set), "err", err)
		return
	}
	// Remembered only once accepted, so a refused set is offered again.
	r.last, r.pushed = set, true
	r.log.Debug("grpcresolver: address set pushed", "index", s.Index, "addresses", len(set))
}

// entries returns one entry per distinct host:port among insts, sorted by
// address; of several instances at one address the least key is kept.
// Instances without an address or port cannot be dialled and are skipped.
func entries(insts []beacon.Instance) []entry {
	set := make([]entry, 0, len(insts))
	for _, in := range insts {
		if in.Address == "" || in.Port <= 0 {
			continue
		}
		set = append(set, entry{addr: in.HostPort(), key: in.Key()})
	}
	slices.SortFunc(set, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.addr, b.addr), cmp.Compare(a.key.Node, b.key.Node), cmp.Compare(a.key.ID, b.key.ID))
	})
	return slices.CompactFunc(set, func(a, b entry) bool { return a.addr == b.addr })
}

// keyAttr is the Endpoint attribute key under which the instance key is kept.
type keyAttr struct{}

// state builds the gRPC state for set: the addresses, and one endpoint per
// address carrying its instance's key.
func state(set []entry) resolver.State {
	s := resolver.State{
		Addresses: make([]resolver.Address, len(set)),
		Endpoints: make([]resolver.Endpoint, len(set)),
	}
	for i, e := range set {
		a := resolver.Address{Addr: e.addr}
		s.Addresses[i] = a
		s.Endpoints[i] = resolver.Endpoint{
			Addresses:  []resolver.Address{a},
			Attributes: attributes.New(keyAttr{}, e.key),
		}
	}
	return s
}

// InstanceKeyOf returns the Consul instance behind an endpoint this
// package's resolvers pushed, for balancers that want to know it.
func InstanceKeyOf(ep resolver.Endpoint) (beacon.InstanceKey, bool) {
	k, ok := ep.Attributes.Value(keyAttr{}).(beacon.InstanceKey)
	return k, ok
}

// ResolveNow does nothing: the watch already follows every change.
func (r *consulResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops the resolver, waits until it can no longer call the
// ClientConn, and releases the watch. It is safe to call more than once.
func (r *consulResolver) Close() {
	r.once.Do(func() {
		r.cancel()
		<-r.done
		r.w.Close()
	})
}
