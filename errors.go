package beacon

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors. Match them with errors.Is; typed errors below unwrap to them.
var (
	// ErrInvalid is matched by every *ValidationError.
	ErrInvalid = errors.New("beacon: invalid input")
	// ErrNotFound: the agent does not know the service or check.
	ErrNotFound = errors.New("beacon: not found")
	// ErrPermissionDenied: the ACL token is missing or lacks a permission.
	ErrPermissionDenied = errors.New("beacon: permission denied")
	// ErrRateLimited: the agent refused the request (HTTP 429), for example
	// because the client holds too many connections.
	ErrRateLimited = errors.New("beacon: rate limited")
	// ErrUnavailable: the agent could not be reached or answered 5xx.
	ErrUnavailable = errors.New("beacon: consul unavailable")
	// ErrMalformedResponse: the agent's answer could not be understood.
	ErrMalformedResponse = errors.New("beacon: malformed response")
	// ErrNoInstances is returned by pickers when there is nothing to pick.
	ErrNoInstances = errors.New("beacon: no instances")
)

// ValidationError reports input refused before anything was sent.
type ValidationError struct {
	Field  string // e.g. "Meta[version]" or "Checks[0].Interval"
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("beacon: invalid %s: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// StatusError is a non-2xx answer from Consul.
type StatusError struct {
	Method     string
	Path       string // the request path, never the query string
	StatusCode int
	Message    string // Consul's message, trimmed and capped
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode), e.Message)
	if e.StatusCode == http.StatusForbidden {
		// Consul's own words ("Permission denied", "ACL not found") do not
		// always say that ACLs are why, or what to do.
		msg += " (Consul's ACLs refused the token: give a token with this permission in CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE)"
	}
	return msg
}

// Is maps the status onto Beacon's sentinels.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrPermissionDenied:
		return e.StatusCode == http.StatusForbidden || e.StatusCode == http.StatusUnauthorized
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	case ErrUnavailable:
		return e.StatusCode >= 500
	}
	return false
}
