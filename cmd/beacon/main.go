// Command beacon operates service discovery on Consul from a terminal or a
// script: it lists services and instances (of any federated datacenter) and
// the datacenters by WAN round-trip time, watches a service change, keeps
// any process registered, deregisters, and diagnoses a client's setup.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal starts a clean stop; the cause carries it so
		// register can forward the same signal to its command.
		cancel(signalCause{<-sigs})
		<-sigs
		fmt.Fprintln(os.Stderr, "beacon: second signal: exiting without cleaning up")
		os.Exit(1)
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, errorLine(err))
		if ue := (usageError{}); errors.As(err, &ue) && ue.hint != "" {
			fmt.Fprintln(os.Stderr, ue.hint)
		}
		os.Exit(exitCode(err))
	}
}

// errorLine is how main reports err: prefixed "beacon: " once, though the
// library's own errors may already begin with it (a validation error
// does), so a user never reads "beacon: beacon: invalid Service".
func errorLine(err error) string {
	return "beacon: " + strings.TrimPrefix(err.Error(), "beacon: ")
}

// exitCode is 2 for a bad command line and 1 for any other failure.
func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}
