package testutil

import (
	"fmt"
	"testing"
	"time"
)

// PollInterval is how often Eventually asks again: short, as its
// conditions are cheap reads, and the deadline, not the interval, is what
// keeps a loaded machine from failing a test.
const PollInterval = 25 * time.Millisecond

// Eventually calls cond until it returns nil and returns how long that
// took (for a test's log, never for an assertion). When timeout passes
// first it fails the test with what and cond's last error. cond runs on
// the test's goroutine, first at once, then every PollInterval.
//
// Eventually is for conditions with nothing to wait on: state in another
// process (a Consul agent's catalog, a command's output) or owned by a
// goroutine that sends no notification. Where a channel says that
// something changed, wait on the channel instead.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		<-tick.C
	}
}

// Want returns nil when ok holds, else an error with the message: the
// cond of Eventually for a condition that is a bool.
//
//	testutil.Eventually(t, time.Minute, "k-1 passing", func() error {
//		return testutil.Want(passing(c, "k-1"), "k-1 not passing")
//	})
func Want(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}
