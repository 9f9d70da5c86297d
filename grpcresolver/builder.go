package grpcresolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"

	"google.golang.org/grpc/resolver"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/discovery"
)

// Scheme is the target scheme the Builder serves: "consul:///<service>".
const Scheme = "consul"

// tagParam is the target parameter that selects instances by tag.
const tagParam = "tag"

type options struct {
	logger *slog.Logger
}

// Option adjusts a Builder.
type Option func(*options)

// WithLogger sets where resolvers log what gRPC refused and what they chose
// not to push (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// builder is the resolver.Builder NewBuilder returns.
type builder struct {
	cache *discovery.Cache
	log   *slog.Logger
}

var _ resolver.Builder = (*builder)(nil)

// NewBuilder returns a Builder of resolvers for targets
// "consul:///<service>?tag=a&tag=b" (also "consul://<ignored>/<service>")
// that follow the instances cache watches. Pass it to grpc.NewClient with
// grpc.WithResolvers; it is safe for concurrent use and for any number of
// client connections. The cache must outlive the connections.
func NewBuilder(cache *discovery.Cache, opts ...Option) resolver.Builder {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return &builder{cache: cache, log: o.logger}
}

// Scheme returns "consul".
func (b *builder) Scheme() string { return Scheme }

// errNoCache is returned by Build when NewBuilder was given a nil cache.
var errNoCache = errors.New("grpcresolver: no discovery cache")

// Build validates target and starts following its instances. An invalid
// target's error matches beacon.ErrInvalid; a closed cache's matches
// discovery.ErrClosed. gRPC fails the connection attempt with it.
func (b *builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	if b.cache == nil {
		return nil, errNoCache
	}
	var q beacon.Query
	var w *discovery.Watcher
	var err error
	if ref, ok := discovery.PreparedQueryName(target.Endpoint()); ok {
		// consul:///NAME.query.consul: a prepared query, as Consul's DNS names one.
		if target.URL.RawQuery != "" {
			return nil, fmt.Errorf("grpcresolver: target %q: %w", target.URL.String(), &beacon.ValidationError{Field: "target", Reason: "a prepared query takes no parameters"})
		}
		q.Service = ref
		w, err = b.cache.WatchPrepared(ref)
	} else {
		if q, err = parseTarget(target); err != nil {
			return nil, fmt.Errorf("grpcresolver: target %q: %w", target.URL.String(), err)
		}
		w, err = b.cache.Watch(q)
	}
	if err != nil {
		return nil, fmt.Errorf("grpcresolver: target %q: %w", target.URL.String(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &consulResolver{
		cc:     cc,
		w:      w,
		q:      q,
		log:    b.log.With("service", q.Service),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go r.run(ctx)
	return r, nil
}

// parseTarget turns "consul://[authority]/<service>?tag=a&tag=b" into a query.
func parseTarget(target resolver.Target) (beacon.Query, error) {
	q := beacon.Query{Service: target.Endpoint()}
	if err := beacon.ValidateServiceName(q.Service); err != nil {
		return beacon.Query{}, err
	}
	params, err := url.ParseQuery(target.URL.RawQuery)
	if err != nil {
		return beacon.Query{}, &beacon.ValidationError{Field: "target", Reason: fmt.Sprintf("parameters: %v", err)}
	}
	for k := range params {
		if k != tagParam {
			return beacon.Query{}, &beacon.ValidationError{Field: "target", Reason: fmt.Sprintf("unknown parameter %q (only %q is understood)", k, tagParam)}
		}
	}
	for _, tag := range params[tagParam] {
		if tag == "" {
			return beacon.Query{}, &beacon.ValidationError{Field: "target", Reason: "empty tag"}
		}
		q.Tags = append(q.Tags, tag)
	}
	if err := q.Validate(); err != nil {
		return beacon.Query{}, err
	}
	return q, nil
}
