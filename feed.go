package beacon

import (
	"context"
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
}

// Validate checks q before it is sent.
func (q ServicesQuery) Validate() error {
	return ChecksQuery(q).Validate()
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
