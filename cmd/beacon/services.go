package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
)

// serviceSummary is one line of `beacon services` (and its -json form).
type serviceSummary struct {
	Name     string
	Tags     []string
	Passing  int
	Warning  int
	Critical int
}

func (c *command) services(args []string) error {
	fs := c.flagSet("services", "[-json]")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if _, err := c.parseArgs(fs, args, 0, ""); err != nil {
		return err
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	var out []serviceSummary
	err = c.eachAgent(cfg, func(cl *consulhttp.Client) error {
		svcs, _, err := cl.Services(c.ctx)
		if err != nil {
			return err
		}
		out = make([]serviceSummary, 0, len(svcs))
		for _, s := range svcs {
			// Every health state is counted, so ask for all instances, by
			// whatever name the catalog holds.
			insts, _, err := cl.ServiceInstances(c.ctx, s.Name)
			if err != nil {
				return err
			}
			sum := serviceSummary{Name: s.Name, Tags: s.Tags}
			for _, in := range insts {
				switch in.Health {
				case beacon.HealthPassing:
					sum.Passing++
				case beacon.HealthWarning:
					sum.Warning++
				default:
					sum.Critical++
				}
			}
			out = append(out, sum)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return c.printJSON(out)
	}
	if len(out) == 0 {
		// Every server registers "consul", so an empty catalog is almost
		// always ACLs hiding it from this token.
		fmt.Fprintln(c.stderr, "beacon: no service visible; with ACLs on, a token without service:read sees none (beacon doctor checks)")
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tPASSING\tWARNING\tCRITICAL\tTAGS")
	for _, s := range out {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", s.Name, s.Passing, s.Warning, s.Critical, orDash(strings.Join(s.Tags, ",")))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
