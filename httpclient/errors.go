package httpclient

import (
	"errors"
	"fmt"
)

// Error is a request that failed on its way to an instance: no response was
// received. It unwraps to the base transport's error of the last attempt, so
// errors.Is finds context.DeadlineExceeded or syscall.ECONNREFUSED in it.
type Error struct {
	Service string
	// ID and Addr are the instance of the last attempt.
	ID   string
	Addr string
	// Attempts counts the attempts made, retries included.
	Attempts int
	Err      error
}

func (e *Error) Error() string {
	return fmt.Sprintf("httpclient: %s: instance %q at %s (attempt %d): %v", e.Service, e.ID, e.Addr, e.Attempts, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the last attempt timed out, so that url.Error's
// Timeout, which http.Client wraps this in, keeps working.
func (e *Error) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.Err, &t) && t.Timeout()
}
