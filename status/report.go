package status

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/keeper"
)

// Report is everything the page shows, in the form the JSON carries. The
// HTML is rendered from the same value. Times are RFC 3339 in JSON;
// durations are seconds (fields named *_seconds).
type Report struct {
	// Generated is when the report was made; Started when the Handler was.
	Generated time.Time `json:"generated"`
	Started   time.Time `json:"started"`
	// Watches are the cache's watches, in discovery's order (by service,
	// a failover watch before the watches it is made of, then by
	// datacenter), at most WithMaxWatches of them. WatchCount is how many
	// the cache runs; Truncated: Watches holds fewer.
	Watches    []Watch `json:"watches"`
	WatchCount int     `json:"watch_count"`
	Truncated  bool    `json:"truncated,omitempty"`
	// Agents are the configured agents (WithAgents), by address.
	Agents []Agent `json:"agents"`
	// Keeper is the registration's state, nil without WithKeeper.
	Keeper *Keeper `json:"keeper,omitempty"`
	// Services are the sampled passing counts per service (see History).
	Services []History `json:"services"`
	// SampleSeconds is the sampler's period; 0 when nothing is sampled.
	SampleSeconds float64 `json:"sample_seconds"`
	// Events are the timeline, newest first, at most DefaultEvents.
	Events []Event `json:"events"`
}

// Watch is one running watch of the discovery cache (discovery.WatchStats).
type Watch struct {
	Service string `json:"service"`
	// Tags are the query's tags, every one required.
	Tags []string `json:"tags,omitempty"`
	// Index is the Consul index of the view (0 before an answer); Agent
	// the agent the cache asks now.
	Index uint64 `json:"index"`
	Agent string `json:"agent,omitempty"`
	// Passing is how many of the published instances pass.
	Passing int `json:"passing"`
	// ErrorSince is when Error began.
	ErrorSince *time.Time `json:"error_since,omitempty"`
	// PreparedQuery is the prepared query a WatchPrepared watch follows.
	PreparedQuery string `json:"prepared_query,omitempty"`
	// Datacenter is the one the watch serves ("" the local one); for a
	// failover watch, the one it failed over to.
	Datacenter string `json:"datacenter"`
	// Failover: the watch has a failover policy; Failovers counts its
	// moves off the local datacenter, FailoverSince and FailoverReason
	// say when and why it last moved.
	Failover       bool       `json:"failover"`
	Failovers      int64      `json:"failovers,omitempty"`
	FailoverSince  *time.Time `json:"failover_since,omitempty"`
	FailoverReason string     `json:"failover_reason,omitempty"`
	// FailoverPolicy is the failover watch's policy, nil for other watches.
	FailoverPolicy *FailoverPolicy `json:"failover_policy,omitempty"`
	// Instances is how many instances the watch publishes: the passing
	// ones, or in panic every one not in maintenance.
	Instances int `json:"instances"`
	// Answered: the watch has a view, Consul's answer or, before Consul
	// first answers this process, a snapshot file's (discovery's
	// SourceFile); AgeSeconds is how old that answer is (0 without one).
	Answered   bool    `json:"answered"`
	AgeSeconds float64 `json:"age_seconds"`
	// ReadPath is the path its last query took (streaming, blocking,
	// cached); ReadPinned: chosen for this watch, not by the cache.
	// Backend is the agent's X-Consul-Query-Backend for the last answer
	// ("streaming", "blocking-query", "" when the agent did not say).
	// AgentCache is the last answer's X-Cache with ?cached (HIT, MISS).
	ReadPath        string  `json:"read_path"`
	ReadPinned      bool    `json:"read_pinned,omitempty"`
	Backend         string  `json:"backend,omitempty"`
	AgentCache      string  `json:"agent_cache,omitempty"`
	CacheAgeSeconds float64 `json:"cache_age_seconds,omitempty"`
	// Error is the last error since the last answer, "" while fresh.
	// ACLHidden: Consul answered an empty list and ACLs caused it
	// (discovery.ErrHiddenByACLs); the last good answer is still served.
	Error     string `json:"error,omitempty"`
	ACLHidden bool   `json:"acl_hidden"`
	// StaleViews counts the stale streaming views found and repaired;
	// OffStream: the watch reads past the streaming backend meanwhile.
	StaleViews int64 `json:"stale_views"`
	OffStream  bool  `json:"off_stream,omitempty"`
	// Panic: too few instances pass (PanicThreshold), and every one not
	// in maintenance is published; Panics counts the times it entered.
	PanicThreshold float64 `json:"panic_threshold,omitempty"`
	Panic          bool    `json:"panic,omitempty"`
	Panics         int64   `json:"panics,omitempty"`
	// Hot: the index moves faster than the hot threshold, and the watch
	// polls at its ceiling.
	Hot bool `json:"hot,omitempty"`
}

// FailoverPolicy is a failover watch's policy (discovery.Failover): the
// datacenters tried in order, then the NearestN nearest by round-trip
// time; it fails over below MinPassing passing local instances and comes
// back after HoldDownSeconds of enough.
type FailoverPolicy struct {
	Datacenters     []string `json:"datacenters,omitempty"`
	NearestN        int      `json:"nearest_n,omitempty"`
	MinPassing      int      `json:"min_passing"`
	HoldDownSeconds float64  `json:"hold_down_seconds"`
}

// String is the policy in a few words, as the page shows it.
func (p FailoverPolicy) String() string {
	var to []string
	to = append(to, p.Datacenters...)
	if p.NearestN > 0 {
		to = append(to, fmt.Sprintf("nearest %d", p.NearestN))
	}
	return fmt.Sprintf("to %s below %d passing, back after %gs", strings.Join(to, ", "), p.MinPassing, p.HoldDownSeconds)
}

// Agent is one configured Consul agent.
type Agent struct {
	// Address is the agent's address, without user info or query.
	Address string `json:"address"`
	// State is "up", "down", or "unknown" while the cache does not say.
	State string `json:"state"`
	// Since is when it entered State, when known.
	Since *time.Time `json:"since,omitempty"`
	// Current: the agent the cache's requests go to now.
	Current bool `json:"current,omitempty"`
	// LastError is the watchdog's or a request's verdict that last marked
	// it down; LastAnswer when it last answered anything.
	LastError  string     `json:"last_error,omitempty"`
	LastAnswer *time.Time `json:"last_answer,omitempty"`
}

// agentOf converts what a cache says of one agent.
func agentOf(a discovery.AgentStatus) Agent {
	out := Agent{Address: address(a.Address), State: "up", Current: a.Current}
	if a.Down {
		out.State = "down"
	}
	if !a.Since.IsZero() {
		t := a.Since
		out.Since = &t
	}
	if a.LastError != nil {
		out.LastError = cut(a.LastError.Error())
	}
	if !a.LastAnswer.IsZero() {
		t := a.LastAnswer
		out.LastAnswer = &t
	}
	return out
}

// Keeper is a keeper's registration (keeper.Status).
type Keeper struct {
	// InstanceID is the registered instance's ID, as given to WithKeeper.
	InstanceID string `json:"instance_id"`
	// Agent is the address of the agent holding the registration, "" for
	// none.
	Agent string `json:"agent"`
	// Status is "registered", "failing" (registered, the last heartbeat or
	// repair failed after it) or "unregistered".
	Status     string `json:"status"`
	Registered bool   `json:"registered"`
	// LastHeartbeat is when the agent last accepted a heartbeat or a
	// registration.
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	// LastError and LastErrorAt are the last failure, if any.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// Failovers counts moves to another agent.
	Failovers   int  `json:"failovers"`
	Maintenance bool `json:"maintenance"`
}

// History is a service's passing instances over the last minutes, one
// sample per SampleSeconds, oldest first: the instance count of the
// service's first watch in discovery's order (its failover watch, else
// its local datacenter's). Samples taken before the service was watched
// are absent, so a new service has a short history.
type History struct {
	Service string `json:"service"`
	Passing []int  `json:"passing"`
}

// watchOf converts one discovery row.
func watchOf(st discovery.WatchStats) Watch {
	w := Watch{
		Service: cut(st.Service), Index: st.Index, Agent: address(st.Agent), Passing: st.Passing, PreparedQuery: cut(st.PreparedQuery), Datacenter: cut(st.Datacenter),
		Failover: st.Failover, Failovers: st.Failovers, FailoverReason: cut(st.FailoverReason),
		Instances: st.Instances, Answered: st.Age > 0, AgeSeconds: st.Age.Seconds(),
		ReadPath: st.ReadPath.String(), ReadPinned: st.ReadPinned, Backend: cut(string(st.Backend)),
		AgentCache: cut(st.AgentCache), CacheAgeSeconds: st.CacheAge.Seconds(),
		StaleViews: st.StaleViews, OffStream: st.OffStream,
		PanicThreshold: st.PanicThreshold, Panic: st.Panic, Panics: st.Panics, Hot: st.Hot,
	}
	if !st.FailoverSince.IsZero() {
		t := st.FailoverSince
		w.FailoverSince = &t
	}
	if st.Failover {
		p := &FailoverPolicy{NearestN: st.FailoverPolicy.NearestN, MinPassing: st.FailoverPolicy.MinPassing, HoldDownSeconds: st.FailoverPolicy.HoldDown.Seconds()}
		for _, dc := range st.FailoverPolicy.Datacenters {
			p.Datacenters = append(p.Datacenters, cut(dc))
		}
		w.FailoverPolicy = p
	}
	for _, tag := range st.Tags {
		w.Tags = append(w.Tags, cut(tag))
	}
	if st.Err != nil {
		if !st.ErrSince.IsZero() {
			t := st.ErrSince
			w.ErrorSince = &t
		}
		w.Error = cut(st.Err.Error())
		w.ACLHidden = errors.Is(st.Err, discovery.ErrHiddenByACLs)
	}
	return w
}

// keeperOf converts a keeper's status.
func keeperOf(id string, s keeper.Status) *Keeper {
	k := &Keeper{InstanceID: cut(id), Agent: cut(s.Agent), Registered: s.Registered, Failovers: s.Failovers, Maintenance: s.Maintenance}
	switch {
	case !s.Registered:
		k.Status = "unregistered"
	case s.LastError != nil && s.LastErrorAt.After(s.LastHeartbeat):
		k.Status = "failing"
	default:
		k.Status = "registered"
	}
	if !s.LastHeartbeat.IsZero() {
		t := s.LastHeartbeat
		k.LastHeartbeat = &t
	}
	if s.LastError != nil {
		k.LastError = cut(s.LastError.Error())
		t := s.LastErrorAt
		k.LastErrorAt = &t
	}
	return k
}

// address shows an agent address without what may carry a secret: user
// info, a query, a fragment. What does not parse as a URL is shown as
// given up to its first '@', which a host:port never holds.
func address(a string) string {
	if strings.Contains(a, "://") {
		u, err := url.Parse(a)
		if err != nil {
			return "(unparsable address)"
		}
		u.User, u.RawQuery, u.Fragment, u.ForceQuery = nil, "", "", false
		return cut(u.String())
	}
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		a = a[i+1:]
	}
	return cut(a)
}
