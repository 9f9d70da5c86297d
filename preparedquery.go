package beacon

import (
	"context"
	"errors"
	"strconv"
)

// MaxQueryNameLen is Beacon's bound on a prepared query's name (Consul sets
// none): names travel in URL paths and log lines, as service names do.
const MaxQueryNameLen = MaxServiceNameLen

// PreparedQuery is a Consul prepared query (/v1/query): a named lookup of
// one service that Consul's servers execute, failing over to other
// datacenters when the local one has no instance that qualifies.
//
// It models what service discovery needs of Consul 1.14's definition.
// Templates, sessions, a stored ACL token, the DNS TTL, node and service
// meta filters, IgnoreCheckIDs and peering targets are not modelled:
// PreparedQueries.UpdateQuery replaces a whole definition and so clears
// them on a query that had them.
type PreparedQuery struct {
	// ID is the query's UUID, chosen by Consul at creation. It is empty in
	// a definition given to CreateQuery and required by UpdateQuery.
	ID string
	// Name executes the query (and names it in DNS: NAME.query.consul).
	// Required; see ValidateQueryName.
	Name string
	// Service is the service the query looks up (ValidateServiceName).
	Service string
	// Tags an instance must carry; a tag written "!tag" is one it must not.
	Tags []string
	// OnlyPassing leaves out instances with a warning check. Without it
	// Consul returns passing and warning instances (never critical ones),
	// and a datacenter whose instances all warn does not fail over.
	OnlyPassing bool
	// Near sorts the instances by estimated round-trip time from a node:
	// a node name, or "_agent" for the agent that executes the query.
	// Empty: Consul shuffles them.
	Near string
	// Failover is where Consul looks when the local datacenter has no
	// instance that qualifies.
	Failover QueryFailover
}

// QueryFailover lists the other datacenters a prepared query may be
// answered from, tried in order until one has an instance that qualifies.
type QueryFailover struct {
	// NearestN tries up to this many other datacenters first, nearest
	// first by WAN round-trip time. Zero tries none this way.
	NearestN int
	// Datacenters are tried in this order after the NearestN ones (a
	// datacenter is never tried twice). Consul skips names it does not
	// know when it executes the query.
	Datacenters []string
}

// ExecuteOptions adjust one execution of a prepared query.
type ExecuteOptions struct {
	// Datacenter executes the query defined in another datacenter (?dc=);
	// empty means the client's configured datacenter, else the agent's.
	Datacenter string
	// Near overrides the query's Near for this execution (?near=).
	Near string
	// Limit caps how many instances are returned (?limit=); zero means all.
	Limit int
}

// PreparedQueryResult is what executing a prepared query returned.
type PreparedQueryResult struct {
	// Service is the service the query looked up.
	Service string
	// Datacenter is the datacenter that answered: the local one, or the
	// one failed over to.
	Datacenter string
	// Failovers counts the other datacenters Consul asked before one
	// answered (0 when the local one did).
	Failovers int
	// Instances are the instances that qualified, as Lookup.Instances
	// reports them (Health is the worst of each one's checks).
	Instances []Instance
	// Index is the answer's X-Consul-Index. It is not a change signal:
	// Consul answers an execution at once, whatever index is passed, and
	// 1.14.8 answers 1 whatever the result.
	Index uint64
}

// PreparedQueries is an optional capability of a backend: managing and
// executing Consul prepared queries (/v1/query). Definitions are validated
// before anything is sent (PreparedQuery.Validate), as registrations are.
// Methods are safe for concurrent use and bounded by their context and the
// backend's request timeout.
type PreparedQueries interface {
	// CreateQuery creates a prepared query from def (whose ID must be
	// empty) and returns the ID Consul gave it. A name already in use is
	// refused by Consul.
	CreateQuery(ctx context.Context, def PreparedQuery) (string, error)
	// UpdateQuery replaces the definition of the query def.ID names. It
	// returns an error matching ErrNotFound when there is no such query.
	UpdateQuery(ctx context.Context, def PreparedQuery) error
	// GetQuery returns the query with this ID (a UUID: Consul reads
	// definitions by ID only), or an error matching ErrNotFound.
	GetQuery(ctx context.Context, id string) (PreparedQuery, error)
	// ListQueries returns every prepared query the token may read.
	ListQueries(ctx context.Context) ([]PreparedQuery, error)
	// DeleteQuery deletes the query with this ID. A query that does not
	// exist is not an error: the goal, its absence, is met.
	DeleteQuery(ctx context.Context, id string) error
	// ExecuteQuery runs the query with this ID or name on Consul's servers
	// and returns the instances that qualified, with the datacenter that
	// answered. It never blocks: one request, answered at once. A caller
	// that follows a query polls it (at a rate it chooses); the result's
	// Index does not tell whether anything changed.
	ExecuteQuery(ctx context.Context, idOrName string, opts ExecuteOptions) (PreparedQueryResult, error)
}

// IsQueryID reports whether s has the shape of a prepared query ID: a UUID
// in its 36-character form (8-4-4-4-12 hexadecimal digits).
func IsQueryID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// ValidateQueryID checks a prepared query ID, which GetQuery, UpdateQuery
// and DeleteQuery need: Consul reads and writes definitions by UUID only
// (a name there is a server error, not "not found").
func ValidateQueryID(id string) error {
	if id == "" {
		return invalid("ID", "empty")
	}
	if !IsQueryID(id) {
		return invalid("ID", "%.80q is not a prepared query ID (a UUID)", id)
	}
	return nil
}

// ValidateQueryName checks a prepared query's name as CreateQuery and
// UpdateQuery take it: the rules of a service name (non-empty, valid UTF-8,
// no control characters, no '/', not "." or "..", at most
// MaxQueryNameLen bytes), and not shaped like an ID, which Consul would
// look up as an ID first when the query is executed.
func ValidateQueryName(name string) error {
	if err := validateQueryName(name); err != nil {
		return err
	}
	if IsQueryID(name) {
		return invalid("Name", "%q has the shape of a query ID (a UUID)", name)
	}
	return nil
}

func validateQueryName(name string) error {
	return refield(ValidateServiceName(name), "Name")
}

// refield returns err, a *ValidationError or nil, for another field.
func refield(err error, field string) error {
	if ve, ok := err.(*ValidationError); ok {
		return &ValidationError{Field: field, Reason: ve.Reason}
	}
	return err
}

// ValidateQueryRef checks what ExecuteQuery takes: a query ID, or a name
// by ValidateQueryName's rules. Any name Consul may hold that can travel in
// a URL path is accepted, a UUID-shaped one included (it is sent as is).
func ValidateQueryRef(idOrName string) error {
	if IsQueryID(idOrName) {
		return nil
	}
	return refield(ValidateServiceName(idOrName), "Query")
}

// Validate checks q against Consul's rules for a definition and Beacon's
// own (see the field docs). The ID is checked only when set; CreateQuery
// and UpdateQuery say whether it must be. It returns a *ValidationError
// naming the first offending field.
func (q PreparedQuery) Validate() error {
	if q.ID != "" {
		if err := ValidateQueryID(q.ID); err != nil {
			return err
		}
	}
	if err := ValidateQueryName(q.Name); err != nil {
		return err
	}
	if err := ValidateServiceName(q.Service); err != nil {
		return err
	}
	if err := validateTags(q.Tags); err != nil {
		return err
	}
	for i, t := range q.Tags {
		if t == "!" {
			return invalid("Tags["+strconv.Itoa(i)+"]", `"!" excludes no tag`)
		}
	}
	if err := validateText("Near", q.Near); err != nil {
		return err
	}
	if q.Failover.NearestN < 0 {
		return invalid("Failover.NearestN", "%d, must not be negative", q.Failover.NearestN)
	}
	seen := make(map[string]bool, len(q.Failover.Datacenters))
	for i, dc := range q.Failover.Datacenters {
		field := "Failover.Datacenters[" + strconv.Itoa(i) + "]"
		if dc == "" {
			return invalid(field, "empty")
		}
		if err := ValidateDatacenter(dc); err != nil {
			return refield(err, field)
		}
		if seen[dc] {
			return invalid(field, "%q listed twice", dc)
		}
		seen[dc] = true
	}
	return nil
}

// Validate checks o before an execution is sent.
func (o ExecuteOptions) Validate() error {
	if err := ValidateDatacenter(o.Datacenter); err != nil {
		return err
	}
	if err := validateText("Near", o.Near); err != nil {
		return err
	}
	if o.Limit < 0 {
		return invalid("Limit", "%d, must not be negative", o.Limit)
	}
	return nil
}

// QueryGone tells a write refused because the prepared query id does not
// exist from other failures, without reading Consul's message: Consul
// answers such a write with a server error, so after a 5xx (writeErr) it
// reads the query through get and returns that read's error when it
// matches ErrNotFound; otherwise nil, and writeErr stands. Both backends
// use it.
func QueryGone(ctx context.Context, get func(context.Context, string) (PreparedQuery, error), id string, writeErr error) error {
	var se *StatusError
	if !errors.As(writeErr, &se) || se.StatusCode < 500 {
		return nil
	}
	if _, err := get(ctx, id); errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}
