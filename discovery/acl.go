package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/beaconsd/beacon"
)

// ErrHiddenByACLs: Consul answered a service with an empty list, and ACLs
// are why: the token may not read the service (or the nodes it runs on),
// or no token is configured and the anonymous token may read nothing.
// Consul gives both cases, and a real scale to zero, the same answer (200,
// []), so the cache checks before it believes an empty answer; when ACLs
// hide the service it keeps serving the last good snapshot with this error.
// It matches beacon.ErrPermissionDenied too.
var ErrHiddenByACLs = fmt.Errorf("discovery: ACLs hide the service from this client: %w", beacon.ErrPermissionDenied)

// aclRecheck is how long one verdict about the token (ACLs on or off,
// token known, anonymous reads) is reused before it is asked again.
const aclRecheck = 30 * time.Second

// aclSource is what the guard asks: the agents.
type aclSource interface {
	beacon.Lookup
	beacon.ACLProber
}

// aclGuard decides whether an empty answer is real.
type aclGuard struct {
	src      aclSource
	ctx      context.Context // the cache's: Close ends a check in flight
	hasToken bool
	timeout  time.Duration
	metrics  Metrics
	log      *slog.Logger

	mu      sync.Mutex
	checked time.Time
	blind   bool            // ACLs on, no valid token, the anonymous token sees nothing
	warned  map[string]bool // services already reported hidden
}

// check is called with an empty answer for w. It returns the instances to
// publish (a fresher, non-empty answer when the empty one was stale) and,
// when ACLs hide the service, an error wrapping ErrHiddenByACLs.
func (g *aclGuard) check(w *watch, meta beacon.QueryMeta) ([]beacon.Instance, error) {
	ctx, cancel := context.WithTimeout(g.ctx, g.timeout)
	defer cancel()
	filtered := meta.FilteredByACLs
	if !filtered {
		// Answers from the agent's streaming backend never carry the
		// filtered header; a non-blocking query does.
		q := w.q
		q.WaitIndex, q.WaitTime = 0, 0
		insts, m, err := g.src.Instances(ctx, q)
		switch {
		case err != nil:
			return nil, nil // cannot tell: the empty answer stands
		case len(insts) > 0:
			return insts, nil
		}
		filtered = m.FilteredByACLs
	}
	var reason string
	switch {
	case filtered:
		reason = "the token may not read it or its nodes (it needs service:read and node:read)"
	case !g.hasToken && g.blindAnonymous(ctx):
		reason = "ACLs are on and no token is configured (set CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE)"
	default:
		g.visible(w.q.Service)
		return nil, nil
	}
	err := fmt.Errorf("%w: %q: %s", ErrHiddenByACLs, w.q.Service, reason)
	g.metrics.ACLHidden(w.q.Service)
	g.mu.Lock()
	first := !g.warned[w.q.Service]
	if first {
		if g.warned == nil {
			g.warned = map[string]bool{}
		}
		g.warned[w.q.Service] = true
	}
	g.mu.Unlock()
	if first {
		g.log.Error("discovery: Consul answered an empty list, but ACLs hide the service; serving the last good snapshot", "service", w.q.Service, "reason", reason)
	}
	return nil, err
}

// visible forgets that service was hidden, so a later hiding is reported.
func (g *aclGuard) visible(service string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.warned[service] {
		delete(g.warned, service)
		g.log.Info("discovery: the service is visible to this client again", "service", service)
	}
}

// blindAnonymous reports whether ACLs are on, the client has no valid
// token, and the anonymous token sees nothing: not even the "consul"
// service every cluster's servers register. An anonymous token that sees
// it (as in the common setup that lets DNS read the catalog) sees the
// rest too, so its empty answers are believed.
func (g *aclGuard) blindAnonymous(ctx context.Context) bool {
	g.mu.Lock()
	fresh, blind := time.Since(g.checked) < aclRecheck, g.blind
	g.mu.Unlock()
	if fresh {
		return blind
	}
	blind = false
	if state, err := g.src.ProbeACLs(ctx); err == nil && state == beacon.ACLsNoToken {
		insts, _, err := g.src.Instances(ctx, beacon.Query{Service: "consul", IncludeUnhealthy: true})
		blind = err == nil && len(insts) == 0
	} else if err != nil {
		return false // cannot tell; ask again next time
	}
	g.mu.Lock()
	g.checked, g.blind = time.Now(), blind
	g.mu.Unlock()
	return blind
}

// isHidden reports whether err says ACLs hide a service.
func isHidden(err error) bool { return errors.Is(err, ErrHiddenByACLs) }
