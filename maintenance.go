package beacon

import (
	"context"
	"strings"
)

// MaxMaintenanceReason is Beacon's bound on a maintenance reason: it
// travels in a query string and becomes the notes of Consul's check.
const MaxMaintenanceReason = 4096

// MaintenanceCheckPrefix starts the ID of the critical check Consul adds
// to an instance in maintenance: "_service_maintenance:<instance ID>".
const MaintenanceCheckPrefix = "_service_maintenance:"

// NodeMaintenanceCheckID is the ID of the critical check Consul adds to a
// node in maintenance; it takes every instance on the node out.
const NodeMaintenanceCheckID = "_node_maintenance"

// IsMaintenanceCheck reports whether checkID is the maintenance check of
// the instance id, or the node's maintenance check.
func IsMaintenanceCheck(checkID, id string) bool {
	if checkID == NodeMaintenanceCheckID {
		return true
	}
	rest, ok := strings.CutPrefix(checkID, MaintenanceCheckPrefix)
	return ok && rest == id
}

// Maintainer is an optional capability of a backend: put an instance in or
// out of maintenance through its agent
// (PUT /v1/agent/service/maintenance/:id?enable=&reason=). While it is in
// maintenance Consul adds a critical check to it, so it leaves every
// passing list; the agent keeps it across restarts when it has a data dir.
//
// Registering the instance again with Register does drop it: Consul's
// replace-existing-checks removes every check of the service the new
// registration does not list, the maintenance check included. A keeper
// reads the state with InMaintenance first and sets it again.
//
// Methods validate id (and reason) before sending, are safe for
// concurrent use and bounded by ctx and the backend's deadline.
type Maintainer interface {
	// Maintenance puts id in maintenance (on) with reason, which becomes
	// the check's notes (empty: Consul writes its own), or takes it out.
	// An ID the agent does not know is an error matching ErrNotFound;
	// turning maintenance off for an instance not in it succeeds.
	Maintenance(ctx context.Context, id string, on bool, reason string) error
	// InMaintenance reports whether the agent holds id's maintenance
	// check, and the check's notes (the reason). An unknown ID is simply
	// not in maintenance.
	InMaintenance(ctx context.Context, id string) (on bool, reason string, err error)
}

// ValidateMaintenance checks a maintenance request: a valid instance ID
// (ValidateID) and a reason of valid UTF-8 without control characters, at
// most MaxMaintenanceReason bytes (it may be empty: Consul then writes
// its own).
func ValidateMaintenance(id, reason string) error {
	if err := ValidateID("ID", id); err != nil {
		return err
	}
	if len(reason) > MaxMaintenanceReason {
		return invalid("Reason", "%d bytes, more than %d", len(reason), MaxMaintenanceReason)
	}
	return validateText("Reason", reason)
}
