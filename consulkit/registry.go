package consulkit

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/beaconsd/beacon"
)

func toAPIRegistration(r beacon.Registration) *api.AgentServiceRegistration {
	reg := &api.AgentServiceRegistration{
		ID: r.ID, Name: r.Service, Tags: r.Tags, Address: r.Address, Port: r.Port, Meta: r.Meta,
	}
	if len(r.TaggedAddresses) > 0 {
		reg.TaggedAddresses = make(map[string]api.ServiceAddress, len(r.TaggedAddresses))
		for k, v := range r.TaggedAddresses {
			reg.TaggedAddresses[k] = api.ServiceAddress{Address: v.Address, Port: v.Port}
		}
	}
	if r.Weights != (beacon.Weights{}) {
		reg.Weights = &api.AgentWeights{Passing: r.Weights.Passing, Warning: r.Weights.Warning}
	}
	ids := r.CheckIDs()
	for i, c := range r.Checks {
		reg.Checks = append(reg.Checks, &api.AgentServiceCheck{
			CheckID:                        ids[i],
			Name:                           r.CheckName(i),
			HTTP:                           c.HTTP,
			TCP:                            c.TCP,
			TTL:                            dur(c.TTL),
			GRPC:                           c.GRPC,
			GRPCUseTLS:                     c.GRPCUseTLS,
			H2PING:                         c.H2PING,
			H2PingUseTLS:                   c.H2PingUseTLS,
			AliasService:                   c.AliasService,
			AliasNode:                      c.AliasNode,
			TLSServerName:                  c.TLSServerName,
			TLSSkipVerify:                  c.TLSSkipVerify,
			Interval:                       dur(c.Interval),
			Timeout:                        dur(c.Timeout),
			DeregisterCriticalServiceAfter: dur(c.DeregisterCriticalAfter),
			Status:                         string(c.InitialStatus),
			Notes:                          c.Notes,
		})
	}
	return reg
}

// cleartextH2PING reports whether r has an H2PING check without TLS, which
// api.AgentServiceCheck cannot carry: it leaves a false H2PingUseTLS out,
// and Consul reads a missing one as true.
func cleartextH2PING(r beacon.Registration) bool {
	for _, c := range r.Checks {
		if c.H2PING != "" && !c.H2PingUseTLS {
			return true
		}
	}
	return false
}

// rawRegistration is consul/api's registration with checks that always
// carry H2PingUseTLS when they carry H2PING: the outer Checks field hides
// the embedded one when encoded.
type rawRegistration struct {
	*api.AgentServiceRegistration
	Checks []rawCheck `json:",omitempty"`
}

type rawCheck struct {
	*api.AgentServiceCheck
	H2PingUseTLS *bool `json:",omitempty"`
}

func toRawRegistration(reg *api.AgentServiceRegistration) rawRegistration {
	raw := rawRegistration{AgentServiceRegistration: reg}
	for _, c := range reg.Checks {
		rc := rawCheck{AgentServiceCheck: c}
		if c.H2PING != "" {
			rc.H2PingUseTLS = &c.H2PingUseTLS
		}
		raw.Checks = append(raw.Checks, rc)
	}
	return raw
}

func dur(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// Register adds or replaces r through go-kit's Client. go-kit takes no
// context, so the call is bounded by the HTTP client's timeout
// (consul.Config.Timeout) and ctx is only checked before it starts. go-kit
// cannot ask the agent to replace existing checks, so checks the new
// registration no longer lists are removed afterwards through consul/api.
// A registration with a cleartext H2PING check (H2PingUseTLS false) goes
// through consul/api instead, bounded by ctx: go-kit's types cannot carry it.
func (c *Client) Register(ctx context.Context, r beacon.Registration) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("consulkit: register %q: %w", r.ID, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("consulkit: register %q: %w", r.ID, err)
	}
	if cleartextH2PING(r) {
		// go-kit's Register takes consul/api's types, which cannot say
		// "no TLS" to an H2PING check: the same request through
		// consul/api's raw writer, with the field spelled out.
		rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout())
		_, err := c.api.Raw().Write("/v1/agent/service/register", toRawRegistration(toAPIRegistration(r)), nil, (&api.WriteOptions{}).WithContext(rctx))
		cancel()
		if err != nil {
			return fmt.Errorf("consulkit: register %q: %w", r.ID, mapError(ctx, http.MethodPut, "/v1/agent/service/register", err))
		}
	} else if err := c.kit.Register(toAPIRegistration(r)); err != nil {
		return fmt.Errorf("consulkit: register %q: %w", r.ID, mapError(nil, http.MethodPut, "/v1/agent/service/register", err))
	}
	if err := c.removeStaleChecks(ctx, r); err != nil {
		return fmt.Errorf("consulkit: register %q: %w", r.ID, err)
	}
	return nil
}

func (c *Client) removeStaleChecks(ctx context.Context, r beacon.Registration) error {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout())
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(rctx)
	filter := fmt.Sprintf("ServiceID == %q", r.ID)
	checks, err := c.api.Agent().ChecksWithFilterOpts(filter, q)
	if err != nil {
		return mapError(ctx, http.MethodGet, "/v1/agent/checks", err)
	}
	keep := make(map[string]bool, len(r.Checks))
	for _, id := range r.CheckIDs() {
		keep[id] = true
	}
	for id := range checks {
		if keep[id] {
			continue
		}
		if err := c.api.Agent().CheckDeregisterOpts(id, q); err != nil && !isNotFound(err) {
			return mapError(ctx, http.MethodPut, "/v1/agent/check/deregister/"+id, err)
		}
	}
	return nil
}

func isNotFound(err error) bool {
	se, ok := err.(api.StatusError)
	return ok && se.Code == http.StatusNotFound
}

// Deregister removes the instance through go-kit's Client (bounded by the
// HTTP client's timeout, as Register). An unknown ID is not an error.
func (c *Client) Deregister(ctx context.Context, id string) error {
	if err := beacon.ValidateID("ID", id); err != nil {
		return fmt.Errorf("consulkit: deregister %q: %w", id, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("consulkit: deregister %q: %w", id, err)
	}
	err := c.kit.Deregister(&api.AgentServiceRegistration{ID: id})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("consulkit: deregister %q: %w", id, mapError(nil, http.MethodPut, "/v1/agent/service/deregister/"+id, err))
	}
	return nil
}

// UpdateTTL sets a TTL check's status through consul/api (go-kit has no
// such call).
func (c *Client) UpdateTTL(ctx context.Context, checkID string, status beacon.Health, output string) error {
	if err := beacon.ValidateTTLUpdate(checkID, status, output); err != nil {
		return fmt.Errorf("consulkit: update check %q: %w", checkID, err)
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout())
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(rctx)
	if err := c.api.Agent().UpdateTTLOpts(checkID, output, string(status), q); err != nil {
		return fmt.Errorf("consulkit: update check %q: %w", checkID, mapError(ctx, http.MethodPut, "/v1/agent/check/update/"+checkID, err))
	}
	return nil
}

// Instances looks instances up through go-kit's Client.Service, which takes
// consul/api QueryOptions and so a context and a blocking index; it filters
// by one tag only, so queries with several tags go to consul/api's
// ServiceMultipleTags.
func (c *Client) Instances(ctx context.Context, q beacon.Query) ([]beacon.Instance, beacon.QueryMeta, error) {
	if err := q.Validate(); err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulkit: instances of %q: %w", q.Service, err)
	}
	timeout := c.cfg.RequestTimeout()
	opts := &api.QueryOptions{
		Datacenter:        q.Datacenter,
		AllowStale:        q.Consistency == beacon.ConsistencyStale,
		RequireConsistent: q.Consistency == beacon.ConsistencyConsistent,
		Filter:            q.Filter,
		UseCache:          q.Cached,
		Near:              q.Near,
		// Consul 1.14 serves a merge-central-config read without streaming.
		MergeCentralConfig: q.NoStreaming,
	}
	if q.WaitIndex > 0 {
		opts.WaitIndex = q.WaitIndex
		opts.WaitTime = q.WaitTime
		timeout = c.cfg.BlockingTimeout(q.WaitTime)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	opts = opts.WithContext(rctx)

	var (
		entries []*api.ServiceEntry
		meta    *api.QueryMeta
		err     error
	)
	passing := !q.IncludeUnhealthy
	switch len(q.Tags) {
	case 0:
		entries, meta, err = c.kitLookup.Service(q.Service, "", passing, opts)
	case 1:
		entries, meta, err = c.kitLookup.Service(q.Service, q.Tags[0], passing, opts)
	default:
		entries, meta, err = c.api.Health().ServiceMultipleTags(q.Service, q.Tags, passing, opts)
	}
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulkit: instances of %q: %w", q.Service, mapError(ctx, http.MethodGet, "/v1/health/service/"+q.Service, err))
	}
	out := make([]beacon.Instance, 0, len(entries))
	var nm nodeMetas
	for i, e := range entries {
		if e == nil || e.Node == nil || e.Service == nil || e.Service.ID == "" {
			return nil, beacon.QueryMeta{}, fmt.Errorf("consulkit: instances of %q: %w: entry %d has no node or service", q.Service, beacon.ErrMalformedResponse, i)
		}
		out = append(out, toInstance(e, &nm))
	}
	return out, beacon.QueryMeta{LastIndex: meta.LastIndex, KnownLeader: meta.KnownLeader, LastContact: meta.LastContact, FilteredByACLs: meta.ResultsFilteredByACLs, Backend: beacon.ParseQueryBackend(meta.QueryBackend), AgentCache: agentCache(opts.UseCache, meta), CacheAge: meta.CacheAge}, nil
}

// agentCache is QueryMeta.AgentCache from consul/api's meta, which parses
// X-Cache only into a bool.
func agentCache(cached bool, meta *api.QueryMeta) string {
	switch {
	case !cached:
		return ""
	case meta.CacheHit:
		return "HIT"
	default:
		return "MISS"
	}
}

func toInstance(e *api.ServiceEntry, nm *nodeMetas) beacon.Instance {
	health, maint := beacon.HealthPassing, false
	for _, ch := range e.Checks {
		maint = maint || beacon.IsMaintenanceCheck(ch.CheckID, e.Service.ID)
		st := beacon.Health(ch.Status)
		if !st.Valid() {
			st = beacon.HealthCritical // nothing unrecognised looks healthy
		}
		health = health.Worse(st)
	}
	addr := e.Service.Address
	if addr == "" {
		addr = e.Node.Address
	}
	svcTagged, nodeTagged := beacon.CompactTaggedAddresses(addr, e.Service.Port, e.Service.Address != "", fromAPIAddresses(e.Service.TaggedAddresses), e.Node.TaggedAddresses)
	return beacon.Instance{
		ID:                  e.Service.ID,
		Service:             e.Service.Service,
		Node:                e.Node.Node,
		Address:             addr,
		Port:                e.Service.Port,
		Tags:                e.Service.Tags,
		Meta:                e.Service.Meta,
		Weights:             beacon.Weights{Passing: e.Service.Weights.Passing, Warning: e.Service.Weights.Warning},
		Health:              health,
		Maintenance:         maint,
		TaggedAddresses:     svcTagged,
		NodeTaggedAddresses: nodeTagged,
		NodeMeta:            nm.share(e.Node.Meta),
	}
}

// nodeMetas hands out one map for equal node meta within an answer:
// consul/api decodes a map per entry, and every instance of a node, most
// nodes of a zone, carry the same one.
type nodeMetas struct{ seen []map[string]string }

// share returns the canonical copy of m less Consul's own keys (see
// beacon.CompactNodeMeta), nil for none.
func (s *nodeMetas) share(m map[string]string) map[string]string {
	m = beacon.CompactNodeMeta(m)
	if len(m) == 0 {
		return nil
	}
	for _, c := range s.seen {
		if maps.Equal(c, m) {
			return c
		}
	}
	if len(s.seen) < 16 { // bounded: an answer of distinct metas stays linear
		s.seen = append(s.seen, m)
	}
	return m
}

// fromAPIAddresses converts consul/api's tagged addresses; nil for none.
func fromAPIAddresses(m map[string]api.ServiceAddress) map[string]beacon.ServiceAddress {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]beacon.ServiceAddress, len(m))
	for k, v := range m {
		out[k] = beacon.ServiceAddress{Address: v.Address, Port: v.Port}
	}
	return out
}

// fromAgentService is the instance an agent's copy describes.
func fromAgentService(s *api.AgentService) beacon.Instance {
	tagged, _ := beacon.CompactTaggedAddresses(s.Address, s.Port, true, fromAPIAddresses(s.TaggedAddresses), nil)
	return beacon.Instance{
		ID: s.ID, Service: s.Service, Address: s.Address, Port: s.Port, Tags: s.Tags, Meta: s.Meta,
		Weights:         beacon.Weights{Passing: s.Weights.Passing, Warning: s.Weights.Warning},
		TaggedAddresses: tagged,
	}
}

// AgentService returns the instance as the agent holds it, through
// consul/api (go-kit has no such call), or beacon.ErrNotFound.
func (c *Client) AgentService(ctx context.Context, id string) (beacon.Instance, error) {
	if err := beacon.ValidateID("ID", id); err != nil {
		return beacon.Instance{}, fmt.Errorf("consulkit: agent service %q: %w", id, err)
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout())
	defer cancel()
	s, _, err := c.api.Agent().Service(id, (&api.QueryOptions{}).WithContext(rctx))
	if err != nil {
		return beacon.Instance{}, fmt.Errorf("consulkit: agent service %q: %w", id, mapError(ctx, http.MethodGet, "/v1/agent/service/"+id, err))
	}
	if s == nil || s.ID == "" {
		return beacon.Instance{}, fmt.Errorf("consulkit: agent service %q: %w: no ID in the answer", id, beacon.ErrMalformedResponse)
	}
	return fromAgentService(s), nil
}

var _ beacon.AgentServiceWatcher = (*Client)(nil)

// WatchAgentService is AgentService as a blocking query on the copy's
// content hash, through consul/api's WaitHash (go-kit has no such call).
func (c *Client) WatchAgentService(ctx context.Context, id, hash string, wait time.Duration) (beacon.Instance, string, error) {
	if err := beacon.ValidateID("ID", id); err != nil {
		return beacon.Instance{}, "", fmt.Errorf("consulkit: watch agent service %q: %w", id, err)
	}
	timeout := c.cfg.RequestTimeout()
	opts := &api.QueryOptions{}
	if hash != "" {
		opts.WaitHash, opts.WaitTime = hash, wait
		timeout = c.cfg.BlockingTimeout(wait)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, meta, err := c.api.Agent().Service(id, opts.WithContext(rctx))
	if err != nil {
		return beacon.Instance{}, "", fmt.Errorf("consulkit: watch agent service %q: %w", id, mapError(ctx, http.MethodGet, "/v1/agent/service/"+id, err))
	}
	if s == nil || s.ID == "" || meta == nil || meta.LastContentHash == "" {
		return beacon.Instance{}, "", fmt.Errorf("consulkit: watch agent service %q: %w: no ID or content hash in the answer", id, beacon.ErrMalformedResponse)
	}
	return fromAgentService(s), meta.LastContentHash, nil
}
