// Command sayhello is the SayHello service of the tutorial Beacon grew out
// of: it registers itself in Consul, answers /health, /sayHello and
// /discovery?serviceName=, and deregisters when it stops.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sayhello:", err)
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, usageHint)
			os.Exit(2)
		}
		os.Exit(1)
	}
}
