package httpclient

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/internal/lru"
)

// Defaults for the options.
const (
	DefaultRetries          = 2
	DefaultEjectionFailures = 3
	DefaultEjectionDuration = 10 * time.Second
	DefaultMaxServices      = 1024
)

type options struct {
	balancer      balancer.Balancer
	base          http.RoundTripper
	retries       int
	ejectFailures int
	ejectFor      time.Duration
	logger        *slog.Logger
	maxServices   int
	nearest       bool // WithNearest (nearest.go)
	nearOpts      []balancer.NearestOption
	zone          string                // WithZone; "" is off
	zoneOpts      []balancer.ZoneOption // WithZone
	callersOf     string                // WithZoneCallers: the callers' service
}

// Option adjusts a Transport.
type Option func(*options)

// WithBalancer sets how an instance is picked for each attempt. The default
// is a balancer.NewRoundRobin() for each service. The Balancer given here
// serves every service of the Transport, which is safe; but a round robin's
// position is then shared, so requests alternating between two services can
// keep landing on the same instances: prefer NewP2C, NewRandom or
// NewWeighted (whose position lives in each Set), or a Transport per service.
// Slow start, so that a newly started instance is not flooded, is an option
// of the balancer: WithBalancer(balancer.NewP2C(balancer.WithSlowStart(30 *
// time.Second))).
func WithBalancer(b balancer.Balancer) Option { return func(o *options) { o.balancer = b } }

// WithBase sets the transport that sends each attempt to its instance
// (default a clone of http.DefaultTransport, which keeps at most 2 idle
// connections per instance: raise MaxIdleConnsPerHost in your own for busy
// clients). It receives requests whose URL host is the instance's address;
// its idle connections are closed by CloseIdleConnections and Close.
func WithBase(rt http.RoundTripper) Option { return func(o *options) { o.base = rt } }

// WithRetries sets how many times a request that failed on the connection
// is sent again, on another instance when possible (default 2; 0 turns
// retries off; negative counts as 0). See the package documentation for
// which requests and which failures qualify.
func WithRetries(n int) Option { return func(o *options) { o.retries = max(n, 0) } }

// WithEjection sets when an instance is skipped: after failures connection
// failures in a row it is left out of picks for d (defaults 3 and 10 s).
// failures or d of zero or less turns ejection off.
func WithEjection(failures int, d time.Duration) Option {
	return func(o *options) { o.ejectFailures, o.ejectFor = failures, d }
}

// WithMaxServices bounds the services a Transport keeps watching (default
// 1,024, as discovery.WithMaxPinned); past it, the least recently used one
// is released, with its ejection record. It keeps host names from callers
// from growing the Transport, and the cache's watches, without bound.
func WithMaxServices(n int) Option { return func(o *options) { o.maxServices = n } }

// WithZone makes picks prefer instances in zone, the caller's own: each
// service's balancer (WithBalancer's, or the default round robin) picks
// within the zone a balancer.ZoneAware chooses, per service, following
// Envoy's zone-aware routing (see balancer.ZoneAware; opts set its zone key
// and the callers' spread). Zone "" leaves picking as it is. Ejection and
// retries apply as without zones: an ejected instance is not picked, and a
// retry picks from the Set less the instances tried, in the zone if it has
// another instance, else in another zone. With WithNearest too, the zone is
// chosen first and the nearest instances within it are picked. For the
// zone from the environment, pass beacon.ZoneFromEnv().
func WithZone(zone string, opts ...balancer.ZoneOption) Option {
	return func(o *options) { o.zone, o.zoneOpts = zone, opts }
}

// WithZoneCallers makes WithZone learn the callers' spread over zones from
// service, the callers' own: its passing instances counted by zone, watched
// through the Transport's cache (discovery.Cache.WatchCallers) from the
// first request until Close. Without it, and without balancer.WithCallers
// among WithZone's options, every pick goes to the caller's zone while it
// has instances.
func WithZoneCallers(service string) Option { return func(o *options) { o.callersOf = service } }

// WithLogger sets where ejections and retries are logged (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Transport is an http.RoundTripper that sends each request to an instance
// of the Consul service named by the URL's host. Create it with New; it is
// safe for concurrent use.
type Transport struct {
	cache *discovery.Cache
	o     options

	// services maps a service name to its state: the bounded map the
	// cache pins its watches in, read without a lock.
	services *lru.Map[string, *service]
	mu       sync.Mutex // serialises adding a service with Close
	closed   bool
	rtts     *discovery.RTTWatcher  // WithNearest's, from the first service on; guarded by mu
	noRTTs   bool                   // WatchRTTs failed: nearest-first picks from every instance
	callers  *discovery.ZoneCallers // WithZoneCallers; set under mu at the first request
}

var _ http.RoundTripper = (*Transport)(nil)

// ErrClosed is returned by RoundTrip after Close.
var ErrClosed = errors.New("httpclient: transport closed")

// New returns a Transport resolving services through cache. The cache must
// outlive the Transport; nothing is sent until the first request.
func New(cache *discovery.Cache, opts ...Option) *Transport {
	o := options{retries: DefaultRetries, ejectFailures: DefaultEjectionFailures, ejectFor: DefaultEjectionDuration, maxServices: DefaultMaxServices}
	for _, f := range opts {
		f(&o)
	}
	if o.base == nil {
		o.base = http.DefaultTransport.(*http.Transport).Clone()
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.ejectFailures <= 0 || o.ejectFor <= 0 {
		o.ejectFailures, o.ejectFor = 0, 0
	}
	return &Transport{cache: cache, o: o, services: lru.New(o.maxServices, func(_ string, s *service) { s.w.Close() })}
}

// RoundTrip sends r to an instance of the service named by r.URL's host,
// retrying on another instance as the package documentation describes. It
// does not modify r and always closes r.Body.
//
// Errors: a host that is not a service name matches beacon.ErrInvalid; a
// service without instances matches beacon.ErrNoInstances; a failed attempt
// is an *Error, which unwraps to the base transport's error.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	s, err := t.service(r)
	if err != nil {
		closeBody(r)
		return nil, err
	}
	set, err := s.set(r.Context())
	if err != nil {
		closeBody(r)
		return nil, err
	}
	ep, err := s.bal.Pick(set)
	if err != nil {
		closeBody(r)
		return nil, s.noInstances(err)
	}
	retries := 0
	if t.o.retries > 0 && replayable(r) {
		retries = t.o.retries
	}
	var tried []beacon.InstanceKey
	body := r.Body
	for attempt := 1; ; attempt++ {
		req := outgoing(r, ep.Addr, body)
		resp, err := t.o.base.RoundTrip(req)
		if err != nil && resp != nil && resp.Body != nil { // a broken base transport; http.Client ignores such a response too
			_ = resp.Body.Close()
		}
		if err == nil {
			s.eject.Succeeded(ep.Endpoint)
			return respond(resp, ep), nil
		}
		ep.Done()
		failed := connFailure(err) && r.Context().Err() == nil
		if failed {
			s.eject.Failed(ep.Endpoint)
		}
		last := &Error{Service: s.name, ID: ep.Instance.ID, Addr: ep.Addr, Attempts: attempt, Err: err}
		if !failed || attempt > retries {
			return nil, last
		}
		if r.GetBody != nil {
			if body, err = r.GetBody(); err != nil {
				last.Err = errors.Join(last.Err, fmt.Errorf("httpclient: rewinding the body: %w", err))
				return nil, last
			}
		}
		tried = append(tried, ep.Instance.Key())
		t.o.logger.Debug("httpclient: retrying on another instance", "service", s.name, "id", ep.Instance.ID, "addr", ep.Addr, "attempt", attempt, "err", last.Err)
		if set, err = s.set(r.Context()); err == nil {
			ep, err = s.pickOther(set, tried)
		}
		if err != nil { // the service lost its last instance meanwhile
			if body != nil {
				_ = body.Close()
			}
			return nil, last
		}
	}
}

// CloseIdleConnections closes the base transport's idle connections, when
// it has a CloseIdleConnections method.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.o.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Close stops watching the services the Transport has resolved and closes
// idle connections. Later requests fail with ErrClosed; requests in flight
// finish. It is safe to call more than once. Closing the cache has the same
// effect on the watches.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	rtts := t.rtts
	callers := t.callers
	t.mu.Unlock()
	if rtts != nil {
		rtts.Close()
	}
	t.services.Clear()
	if callers != nil {
		callers.Close()
	}
	t.CloseIdleConnections()
	return nil
}

// Ejected returns the instances of service that are being skipped after
// failing, or nil. The instances are copies.
func (t *Transport) Ejected(service string) []beacon.Instance {
	s, ok := t.services.Get(service)
	if !ok {
		return nil
	}
	return s.eject.Ejected()
}

// service returns the state of the service r is addressed to, starting to
// watch it on first use.
func (t *Transport) service(r *http.Request) (*service, error) {
	if r.URL == nil {
		return nil, errors.New("httpclient: nil Request.URL")
	}
	if r.URL.Scheme != "http" && r.URL.Scheme != "https" {
		return nil, fmt.Errorf("httpclient: unsupported scheme %q", r.URL.Scheme)
	}
	name := r.URL.Hostname()
	if s, ok := t.services.Get(name); ok {
		return s, nil
	}
	ref, isQuery := discovery.PreparedQueryName(name)
	if isQuery {
		if err := beacon.ValidateQueryRef(ref); err != nil {
			return nil, fmt.Errorf("httpclient: host %q: %w", r.URL.Host, err)
		}
	} else if err := beacon.ValidateServiceName(name); err != nil {
		return nil, fmt.Errorf("httpclient: host %q: %w", r.URL.Host, err)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		// Consul would accept "10.0.0.1" as a name, but a URL naming an
		// address is a caller's mistake: never send it anywhere.
		return nil, fmt.Errorf("httpclient: host %q: %w", r.URL.Host, &beacon.ValidationError{Field: "Service", Reason: "an IP address, not a service name"})
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	var w *discovery.Watcher
	var err error
	if isQuery {
		w, err = t.cache.WatchPrepared(ref) // http://NAME.query.consul/: a prepared query
	} else {
		w, err = t.cache.Watch(beacon.Query{Service: name})
	}
	if err != nil {
		return nil, fmt.Errorf("httpclient: watch %q: %w", name, err)
	}
	s := &service{name: name, w: w, bal: t.o.balancer,
		eject: balancer.NewEjection(t.o.ejectFailures, t.o.ejectFor, t.o.logger.With("service", name))}
	if s.bal == nil {
		s.bal = balancer.NewRoundRobin()
	}
	if t.o.nearest {
		s.bal = t.nearestFor(s.bal, w)
	}
	if t.o.zone != "" {
		// One ZoneAware per service: it keeps the split of one Set.
		zopts := t.o.zoneOpts
		if t.o.callersOf != "" {
			if t.callers == nil {
				key := balancer.NewZoneAware(nil, t.o.zone, zopts...).Key()
				if t.callers, err = t.cache.WatchCallers(beacon.Query{Service: t.o.callersOf}, key); err != nil {
					w.Close()
					return nil, fmt.Errorf("httpclient: zone callers %q: %w", t.o.callersOf, err)
				}
			}
			zopts = append(slices.Clip(zopts), balancer.WithCallers(t.callers))
		}
		s.bal = balancer.NewZoneAware(s.bal, t.o.zone, zopts...)
	}
	held, added := t.services.Add(name, s)
	if !added {
		w.Close() // another request added it meanwhile
	}
	return held, nil
}

// outgoing returns a shallow copy of r addressed to addr and sending body,
// allocated with its URL in one piece. Headers are shared, not copied:
// neither this package nor net/http's transports modify them.
func outgoing(r *http.Request, addr string, body io.ReadCloser) *http.Request {
	o := new(struct {
		req http.Request
		url url.URL
	})
	o.req = *r
	o.url = *r.URL
	o.url.Host = addr
	o.req.URL = &o.url
	o.req.Body = body
	if r.Host == "" || r.Host == r.URL.Host {
		o.req.Host = addr
	}
	return &o.req
}

func closeBody(r *http.Request) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
}
