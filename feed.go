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
