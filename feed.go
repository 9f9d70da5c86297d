package beacon

import (
	"context"
	"strings"
	"time"
)

// CheckState is one health check as the catalog reports it.
type CheckState struct {
	Node        string
	CheckID     string
	ServiceID   string // empty for node checks
	ServiceName string // empty for node checks
	Status      Health
	ModifyIndex uint64
}

// ChecksQuery selects every check of a datacenter (GET /v1/health/state/any).
type ChecksQuery struct {
	Datacenter  string
	Consistency Consistency
	WaitIndex   uint64
	WaitTime    time.Duration
}

// Validate checks q before it is sent.
func (q ChecksQuery) Validate() error {
	if err := ValidateDatacenter(q.Datacenter); err != nil {
		return err
	}
	if q.Consistency < ConsistencyDefault || q.Consistency > ConsistencyConsistent {
		return invalid("Consistency", "unknown mode %d", q.Consistency)
	}
	if q.WaitTime < 0 || q.WaitTime > MaxWaitTime {
		return invalid("WaitTime", "%v is outside 0–%v", q.WaitTime, MaxWaitTime)
	}
	return nil
}

// ChangeFeed is implemented by backends that can list every check of a
// datacenter. Its blocking form wakes on any check change (registrations
// and deregistrations of checked services included), which lets a
// discovery cache watch many services with one long poll and fetch only
// those that changed. Meta- or tag-only changes do not touch checks and do
// not wake it.
type ChangeFeed interface {
	Checks(ctx context.Context, q ChecksQuery) ([]CheckState, QueryMeta, error)
}

// ServicesQuery selects the service summaries of a datacenter
// (ServiceSummaries).
type ServicesQuery struct {
	Datacenter  string
	Consistency Consistency
	WaitIndex   uint64
	WaitTime    time.Duration
	// Services, when not empty, limits the answer to these services
	// (Consul's ?filter, evaluated by the servers): a host watching a few
	// services of a large datacenter reads their summaries, not the whole
	// datacenter's, each time anything in it changes. At most
	// MaxSummaryServices names, each a valid service name without '"' or
	// '\' (FilterableServiceName).
	Services []string
}

// MaxSummaryServices bounds ServicesQuery.Services: the filter travels in
// the URL, and the servers evaluate every term for every instance.
const MaxSummaryServices = 256

// FilterableServiceName reports whether name can be named in
// ServicesQuery.Services: a valid service name with no character that
// Consul's filter language would read as the end of its string.
func FilterableServiceName(name string) bool {
	return ValidateServiceName(name) == nil && !strings.ContainsAny(name, "\"\\")
}

// Validate checks q before it is sent.
func (q ServicesQuery) Validate() error {
	if len(q.Services) > MaxSummaryServices {
		return invalid("Services", "%d names, more than %d", len(q.Services), MaxSummaryServices)
	}
	for _, name := range q.Services {
		if !FilterableServiceName(name) {
			return invalid("Services", "%.80q cannot be named in a filter", name)
		}
	}
	return ChecksQuery{Datacenter: q.Datacenter, Consistency: q.Consistency, WaitIndex: q.WaitIndex, WaitTime: q.WaitTime}.Validate()
}

// Filter is the filter expression (Consul's ?filter) that limits the
// summaries to q.Services, or "" without them. Call it on a validated q.
func (q ServicesQuery) Filter() string {
	if len(q.Services) == 0 {
		return ""
	}
	var b strings.Builder
	for i, name := range q.Services {
		if i > 0 {
			b.WriteString(" or ")
		}
		// The summaries are built from instances: the selector is the
		// instance's service name.
		b.WriteString(`Service.Service == "`)
		b.WriteString(name)
		b.WriteByte('"')
	}
	return b.String()
}

// ServiceSummary is what a datacenter's service summary says of one
// service: counts and a digest, not its instances. The counts are Consul's:
// Instances registered, and checks passing, warning and critical, a node's
// checks (serfHealth) counted once for each service on the node.
type ServiceSummary struct {
	Name                       string
	Instances                  int
	Passing, Warning, Critical int
	// Digest is a hash of the names of the nodes the service runs on and
	// of its tags (the union of its instances'), independent of their
	// order; it says whether they changed, not what they are.
	Digest uint64
}

// ServiceSummaries is implemented by backends that can summarise every
// service of a datacenter in one answer, with a blocking form that wakes
// on any catalog change (a registration, a deregistration, a check's
// status), as ChangeFeed does, at about a sixth of its size: one entry per
// service, not per check. discovery's change feed prefers it.
//
// Consul serves it at GET /v1/internal/ui/services, an endpoint internal
// to Consul (its web UI's), not part of its documented API: it may change
// or be missing in other versions. An agent that does not serve it answers
// a *StatusError with status 404 or 405; callers fall back to ChangeFeed.
// A summary does not show a meta-only change, nor a tag change that
// leaves the union of the service's tags as it was.
type ServiceSummaries interface {
	ServiceSummaries(ctx context.Context, q ServicesQuery) ([]ServiceSummary, QueryMeta, error)
}
