// Command consul is a Consul agent built from the MPL-2.0 v1.14.8 sources with
// only the commands Beacon needs (agent, members, leave, version).
//
// The stock main imports every command, and some of those depend on modules
// the Go module proxy refuses (envoyextensions, troubleshoot) or no longer
// compile against any tagged api module. Wiring the few commands we need
// keeps the build inside the open-source, proxy-served module graph.
package main

import (
	"fmt"
	"io"
	"log"
	"os"

	mcli "github.com/mitchellh/cli"

	"github.com/hashicorp/consul/command/agent"
	"github.com/hashicorp/consul/command/cli"
	"github.com/hashicorp/consul/command/leave"
	"github.com/hashicorp/consul/command/members"
	"github.com/hashicorp/consul/command/version"
)

func main() {
	os.Exit(run())
}

func run() int {
	log.SetOutput(io.Discard)
	ui := &cli.BasicUI{BasicUi: mcli.BasicUi{Writer: os.Stdout, ErrorWriter: os.Stderr}}
	cmds := map[string]mcli.CommandFactory{
		"agent":   func() (mcli.Command, error) { return agent.New(ui), nil },
		"members": func() (mcli.Command, error) { return members.New(ui), nil },
		"leave":   func() (mcli.Command, error) { return leave.New(ui), nil },
		"version": func() (mcli.Command, error) { return version.New(ui), nil },
	}
	c := &mcli.CLI{
		Args:        os.Args[1:],
		Commands:    cmds,
		Name:        "consul",
		HelpFunc:    mcli.BasicHelpFunc("consul"),
		HelpWriter:  os.Stdout,
		ErrorWriter: os.Stderr,
	}
	if c.IsVersion() {
		return version.New(ui).Run(nil)
	}
	code, err := c.Run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error executing CLI: %v\n", err)
		return 1
	}
	return code
}
