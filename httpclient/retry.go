package httpclient

import (
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
)

// replayable reports whether r may be sent again after a connection
// failure: its method is idempotent (RFC 9110 section 9.2.2), or it carries
// an idempotency key as net/http honours, and its body can be sent again.
func replayable(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
		return false
	}
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, key := r.Header["Idempotency-Key"]
	_, xkey := r.Header["X-Idempotency-Key"]
	return key || xkey
}

// connFailure reports whether err, returned by a base transport without a
// response, is a failure of the connection before any response: a failed
// dial (the request never left), or a connection refused, reset or closed
// by the peer before the first response byte (the request may have reached
// the instance, which is why only idempotent requests are retried).
// Timeouts other than the dial's, TLS and protocol errors do not count.
func connFailure(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF)
}
