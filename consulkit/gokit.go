package consulkit

import (
	"context"
	"slices"
	"sync"

	"github.com/go-kit/kit/sd"
	kitconsul "github.com/go-kit/kit/sd/consul"
	"github.com/go-kit/log"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/blocking"
)

// Instancer is a go-kit sd.Instancer over any beacon.Lookup: an existing
// go-kit Endpointer and lb balancer can sit on Beacon unchanged. Unlike
// go-kit's consul Instancer, Stop cancels the in-flight blocking query and
// waits for the loop to end, the index follows Consul's rules (reset after
// errors and when it goes backwards), queries are rate-limited, and the
// last good instances are kept on errors (the Event carries the error).
//
// Instances are "address:port" strings, as go-kit's are.
type Instancer struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	state sd.Event
	subs  map[chan<- sd.Event]struct{}
}

var _ sd.Instancer = (*Instancer)(nil)

// NewInstancer starts watching q on reg with Beacon's one blocking-query
// loop (q.WaitTime per query; zero is Consul's 5 minutes); Stop ends it. Errors are
// logged to logger (log.NewNopLogger() to discard).
func NewInstancer(reg beacon.Lookup, q beacon.Query, logger log.Logger) *Instancer {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Instancer{cancel: cancel, done: make(chan struct{}), subs: map[chan<- sd.Event]struct{}{}}
	go func() {
		defer close(s.done)
		blocking.Run(ctx, blocking.Instances(reg, q), blocking.Options{}, func(insts []beacon.Instance, _ beacon.QueryMeta, err error) error {
			if err != nil {
				_ = logger.Log("service", q.Service, "err", err)
				s.update(ctx, sd.Event{Err: err}, true)
				return nil
			}
			addrs := make([]string, 0, len(insts))
			for _, in := range insts {
				addrs = append(addrs, in.HostPort())
			}
			slices.Sort(addrs)
			s.update(ctx, sd.Event{Instances: addrs}, false)
			return nil
		})
	}()
	return s
}

// update records a new state and tells subscribers when it changed. On an
// error the last instances stay, as go-kit's own cache keeps them.
func (s *Instancer) update(ctx context.Context, ev sd.Event, isErr bool) {
	s.mu.Lock()
	if isErr {
		ev.Instances = s.state.Instances
	} else if s.state.Err == nil && slices.Equal(ev.Instances, s.state.Instances) && s.state.Instances != nil {
		s.mu.Unlock()
		return // unchanged results are not re-published
	}
	s.state = ev
	// Sent under the lock, unlike Beacon's own notifications: go-kit's
	// Endpointer closes its channel as soon as Deregister returns, so no
	// send may be in flight then. A subscriber that stops reading without
	// deregistering cannot hold Stop up: the send gives way to ctx.
	for ch := range s.subs {
		select {
		case ch <- copyEvent(ev):
		case <-ctx.Done():
		}
	}
	s.mu.Unlock()
}

func copyEvent(ev sd.Event) sd.Event {
	ev.Instances = slices.Clone(ev.Instances)
	return ev
}

// Register subscribes ch to state changes; it first receives the current state.
func (s *Instancer) Register(ch chan<- sd.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[ch] = struct{}{}
	ch <- copyEvent(s.state)
}

// Deregister unsubscribes ch.
func (s *Instancer) Deregister(ch chan<- sd.Event) {
	s.mu.Lock()
	delete(s.subs, ch)
	s.mu.Unlock()
}

// Stop cancels the watch, including its in-flight query, and waits for it
// to end. It is safe to call more than once.
func (s *Instancer) Stop() {
	s.cancel()
	<-s.done
}

// Registrar returns go-kit's own sd.Registrar for r on this client, after
// validating r. Like every go-kit Registrar it logs errors instead of
// returning them; Register on a beacon.Registry (or the keeper) reports them.
// A registration with a cleartext H2PING check is refused (a
// *beacon.ValidationError): go-kit's Registrar would send it as a TLS one.
func (c *Client) Registrar(r beacon.Registration, logger log.Logger) (sd.Registrar, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if cleartextH2PING(r) {
		return nil, &beacon.ValidationError{Field: "Checks", Reason: "go-kit's Registrar cannot send an H2PING check without TLS (consul/api leaves a false H2PingUseTLS out); use Register"}
	}
	return kitconsul.NewRegistrar(c.kit, toAPIRegistration(r), logger), nil
}
