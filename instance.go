package beacon

import (
	"context"
	"maps"
	"strconv"
	"time"
)

// Health is the state of a check or, aggregated over its checks, of an instance.
type Health string

// The states Consul knows. Maintenance is reported by Consul as critical.
const (
	HealthPassing  Health = "passing"
	HealthWarning  Health = "warning"
	HealthCritical Health = "critical"
)

// Valid reports whether h is one of the three states Consul accepts.
func (h Health) Valid() bool {
	return h == HealthPassing || h == HealthWarning || h == HealthCritical
}

// Worse returns the worse of h and o: critical beats warning beats passing.
// Unknown states count as critical, so nothing unrecognised looks healthy.
func (h Health) Worse(o Health) Health {
	if h.rank() >= o.rank() {
		return h
	}
	return o
}

func (h Health) rank() int {
	switch h {
	case HealthPassing:
		return 0
	case HealthWarning:
		return 1
	default:
		return 2
	}
}

// Weights are Consul's DNS SRV weights for an instance: Passing applies while
// every check passes, Warning while one warns. The zero value lets Consul
// apply its default (1 and 1).
type Weights struct {
	Passing int
	Warning int
}

// Instance is one registered service instance as Consul reports it.
//
// Consul service IDs are unique per agent only, so an instance is identified
// by Node and ID together; see Key.
type Instance struct {
	ID      string
	Service string
	Node    string
	// Address is the service address, or the node's when the service has none.
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
	Weights Weights
	// Health is the worst status over the instance's checks, node checks included.
	Health Health
	// Maintenance: the instance is in maintenance, or its node is (its
	// checks include its _service_maintenance: check or _node_maintenance);
	// Health is then critical. See Maintainer.
	Maintenance bool `json:",omitempty"`
	// TaggedAddresses are the service's addresses by tag (TaggedWAN,
	// TaggedLAN, ... or any key of the registrant's), nil when it has none
	// beyond Address and Port: entries restating them are left out (see
	// CompactTaggedAddresses). AddressFor chooses among them.
	TaggedAddresses map[string]ServiceAddress `json:",omitempty"`
	// NodeTaggedAddresses are the node's addresses by tag, carried only
	// when Address is the node's (the service registered none of its own),
	// and nil when they all restate it.
	NodeTaggedAddresses map[string]string `json:",omitempty"`
	// NodeMeta is the meta of the instance's node (node_meta in the
	// agent's configuration), nil when the node has none. Backends share
	// one map between the instances of a node within an answer: treat it
	// as read-only. Zone reads it.
	NodeMeta map[string]string `json:",omitempty"`
}

// InstanceKey identifies an instance across a Consul datacenter.
type InstanceKey struct {
	Node string
	ID   string
}

// Key returns the node-and-ID pair that identifies i.
func (i Instance) Key() InstanceKey { return InstanceKey{Node: i.Node, ID: i.ID} }

// Clone returns a deep copy of i, so callers can hand it out safely.
func (i Instance) Clone() Instance {
	if i.Tags != nil {
		i.Tags = append([]string(nil), i.Tags...)
	}
	if i.Meta != nil {
		m := make(map[string]string, len(i.Meta))
		for k, v := range i.Meta {
			m[k] = v
		}
		i.Meta = m
	}
	i.TaggedAddresses = maps.Clone(i.TaggedAddresses) // nil stays nil
	i.NodeTaggedAddresses = maps.Clone(i.NodeTaggedAddresses)
	i.NodeMeta = maps.Clone(i.NodeMeta)
	return i
}

// Registration is what an instance submits to its agent. Register is an
// upsert: submitting the same ID again replaces tags, meta, weights and checks.
type Registration struct {
	// ID is unique on the agent. Any characters are allowed; backends
	// percent-escape it in URLs.
	ID string
	// Service is the service name. Consul accepts names DNS cannot serve
	// (legacy_svc, api.v2) and only warns; so does Beacon (see
	// ValidateServiceName and ValidateDNSName).
	Service string
	// Address is where callers reach the instance: an IP address or a host
	// name. Empty means the address of the agent's node, which is what
	// Consul then reports as the instance's address.
	Address string
	// Port is the instance's port, 0–65535.
	Port    int
	Tags    []string
	Meta    map[string]string
	Weights Weights
	Checks  []Check
	// TaggedAddresses are further addresses of the instance by tag, sent
	// as Consul's service tagged addresses: TaggedWAN is where callers in
	// other datacenters reach it (see Instance.AddressFor). Any key is
	// allowed; the four family keys (TaggedLANIPv4, ...) must hold an
	// address of their family. A zero Port means the instance's Port.
	TaggedAddresses map[string]ServiceAddress
}

// Check describes one health check. Exactly one kind is set: HTTP, TCP,
// TTL, GRPC, H2PING, or alias (AliasService and/or AliasNode).
type Check struct {
	// ID defaults to "service:<registration ID>" for the first check and
	// "service:<registration ID>:<n>" (n from 1) when there are several, as Consul does.
	ID   string
	Name string

	// HTTP is a URL the agent GETs; 2xx is passing, 429 warning, others critical.
	HTTP string
	// TCP is a host:port the agent dials.
	TCP string
	// TTL is how long the check stays passing without an update.
	TTL time.Duration

	// GRPC is "host:port" or "host:port/service": the agent asks the
	// standard gRPC health service (grpc.health.v1.Health/Check) there,
	// about service or, without one, about the whole server. SERVING is
	// passing, anything else (or no answer) critical.
	GRPC string
	// GRPCUseTLS makes the GRPC check connect with TLS (see TLSSkipVerify).
	GRPCUseTLS bool
	// H2PING is a host:port the agent opens an HTTP/2 connection to and
	// sends a PING frame on: an answered ping is passing.
	H2PING string
	// H2PingUseTLS makes the H2PING check speak HTTP/2 over TLS; false
	// speaks cleartext HTTP/2 (h2c). Beacon always sends it, so the zero
	// value means cleartext, unlike Consul's own JSON, where leaving the
	// field out means TLS.
	H2PingUseTLS bool
	// AliasService is the ID of a service instance whose health this
	// check mirrors: on this agent, or on AliasNode when that is set.
	// Consul follows it as it changes, without an interval. Once the
	// aliased instance is deregistered the alias turns critical, but
	// Consul 1.14.8 may take up to a minute to notice.
	AliasService string
	// AliasNode is a node whose health (with AliasService: that
	// instance's health on that node) this check mirrors.
	AliasNode string

	// TLSServerName is the server name an https HTTP, a TLS GRPC or a TLS
	// H2PING check verifies the certificate against (default: the host
	// it dials).
	TLSServerName string
	// TLSSkipVerify makes an https HTTP, a TLS GRPC or a TLS H2PING
	// check accept any certificate: for tests and self-signed endpoints.
	TLSSkipVerify bool

	// Interval is how often HTTP, TCP, GRPC and H2PING checks run (at least
	// a second).
	Interval time.Duration
	// Timeout bounds one HTTP, TCP, GRPC or H2PING check; zero lets Consul
	// choose (10 s).
	Timeout time.Duration
	// DeregisterCriticalAfter removes the instance after it has been critical
	// this long: zero for never, else at least a minute (Consul's minimum).
	DeregisterCriticalAfter time.Duration
	// InitialStatus is the status before the first run: Consul starts checks
	// critical unless told otherwise.
	InitialStatus Health
	// Notes is free text shown in Consul's UI.
	Notes string
}

// CheckIDs returns the IDs of r's checks as Consul will know them.
func (r Registration) CheckIDs() []string {
	ids := make([]string, len(r.Checks))
	for i, c := range r.Checks {
		ids[i] = r.checkID(i, c)
	}
	return ids
}

// CheckName returns the name of r's i-th check as Consul will show it:
// its Name, or Consul's own default for a service check.
func (r Registration) CheckName(i int) string {
	if n := r.Checks[i].Name; n != "" {
		return n
	}
	return "Service '" + r.Service + "' check"
}

func (r Registration) checkID(i int, c Check) string {
	switch {
	case c.ID != "":
		return c.ID
	case i == 0 && len(r.Checks) == 1:
		return "service:" + r.ID
	default:
		return "service:" + r.ID + ":" + strconv.Itoa(i+1)
	}
}

// Consistency is the read mode of a query.
type Consistency int

const (
	// ConsistencyDefault reads from the leader, which may have lost leadership.
	ConsistencyDefault Consistency = iota
	// ConsistencyStale reads from any server: faster, works without a leader.
	ConsistencyStale
	// ConsistencyConsistent confirms leadership before answering.
	ConsistencyConsistent
)

// Query selects instances of one service.
type Query struct {
	Service string
	// Tags must all be present on an instance.
	Tags []string
	// IncludeUnhealthy returns instances whatever their health. By default
	// only instances whose every check passes are returned.
	IncludeUnhealthy bool
	Datacenter       string
	Consistency      Consistency
	// Cached asks the agent to answer from its own cache (?cached), which
	// it keeps fresh with a background blocking query: cheaper for the
	// servers, possibly a little behind. Not for Consistency modes other
	// than the default.
	Cached bool
	// Filter is a Consul filter expression, for example `Service.Meta.version == "2"`.
	Filter string
	// WaitIndex makes the lookup a blocking query: it returns when the
	// result's index passes WaitIndex or WaitTime has elapsed. Zero returns at once.
	WaitIndex uint64
	// WaitTime bounds a blocking query; zero means Consul's default (5 min),
	// the maximum is 10 min.
	WaitTime time.Duration
	// Near sorts instances by round-trip time from a node (?near=);
	// "_agent" means the agent answering. It also keeps the agent off its
	// streaming backend (see QueryBackend): discovery uses it to leave a
	// stale streaming view.
	Near string
	// NoStreaming keeps the agent off its streaming backend: the query is
	// answered as a plain blocking query, or with Cached from the agent's
	// own cache (X-Cache HIT or MISS). Backends send
	// ?merge-central-config, which Consul 1.14 always serves without
	// streaming and which changes nothing in the answer for services that
	// are not sidecar proxies or gateways; unlike Near it neither sorts nor
	// needs coordinates.
	NoStreaming bool
}

// QueryBackend is the agent backend that served a query, from
// X-Consul-Query-Backend: Consul 1.10+ serves blocking health queries from
// a streaming view when it can.
type QueryBackend string

// The backends Consul names; "" means the answer did not say.
const (
	QueryBackendStreaming     QueryBackend = "streaming"
	QueryBackendBlockingQuery QueryBackend = "blocking-query"
)

// ParseQueryBackend reads an X-Consul-Query-Backend value: one of the two
// names Consul sends, or "" for anything else, which no one can act on.
func ParseQueryBackend(s string) QueryBackend {
	switch b := QueryBackend(s); b {
	case QueryBackendStreaming, QueryBackendBlockingQuery:
		return b
	}
	return ""
}

// QueryMeta describes a lookup's answer.
type QueryMeta struct {
	// LastIndex is the X-Consul-Index to pass as the next WaitIndex.
	LastIndex   uint64
	KnownLeader bool
	LastContact time.Duration
	// FilteredByACLs: Consul left out results the token may not read
	// (X-Consul-Results-Filtered-By-ACLs). Consul sets it only for a token
	// it knows, never for the anonymous one, and not on answers from its
	// streaming backend, so false proves nothing.
	FilteredByACLs bool
	// Backend is the agent backend that answered (X-Consul-Query-Backend),
	// or "" when the answer did not say.
	Backend QueryBackend
	// AgentCache is the agent cache's X-Cache for a Cached query: "HIT" or
	// "MISS"; "" when the answer did not carry one (not a ?cached query).
	// A ?cached answer from the streaming backend says HIT too.
	AgentCache string
	// CacheAge is the Age of a cached answer: how long ago the agent's
	// cache last refreshed it (whole seconds, as Consul sends it).
	CacheAge time.Duration
}

// Registrar is the writing half of a backend: what a keeper needs to keep
// one instance registered. Methods are safe for concurrent use; every call
// is bounded by its context and by the backend's own deadline.
type Registrar interface {
	// Register adds or replaces an instance and its checks on the agent.
	Register(ctx context.Context, r Registration) error
	// Deregister removes an instance from the agent; an unknown ID is not an error.
	Deregister(ctx context.Context, id string) error
	// UpdateTTL sets the status and output of a TTL check.
	UpdateTTL(ctx context.Context, checkID string, status Health, output string) error
	// AgentService returns the instance with this ID as the agent itself
	// holds it (no Node, no Health), or ErrNotFound when the agent does not
	// know it: how a keeper notices that an agent lost its registration.
	AgentService(ctx context.Context, id string) (Instance, error)
}

// Lookup is the reading half of a backend: what discovery needs. It is
// safe for concurrent use and bounded by its context and the backend's
// own deadline.
type Lookup interface {
	// Instances looks up instances of q.Service; with q.WaitIndex set, it
	// blocks until the result changes or q.WaitTime passes.
	Instances(ctx context.Context, q Query) ([]Instance, QueryMeta, error)
}

// Registry is what every backend implements: both halves. Optional
// capabilities are separate small interfaces a backend may also
// implement: ChangeFeed, ACLProber, AgentServiceWatcher and PreparedQueries.
type Registry interface {
	Registrar
	Lookup
}
