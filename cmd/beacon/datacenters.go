package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
)

// datacenterLine is one line of `beacon datacenters` (and its -json form).
type datacenterLine struct {
	Name  string
	Local bool // the datacenter of the agent asked
	// RTTMillis is the estimated WAN round-trip time from the local
	// datacenter in milliseconds (0 for the local one), null when Consul
	// has no estimate.
	RTTMillis *float64
}

func (c *command) datacenters(args []string) error {
	fs := c.flagSet("datacenters", "[-json]")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if _, err := c.parseArgs(fs, args, 0, ""); err != nil {
		return err
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	var dcs []beacon.DatacenterRTT
	err = c.eachAgent(cfg, func(cl *consulhttp.Client) error {
		dcs, err = beacon.NearestDatacenters(c.ctx, cl)
		return err
	})
	if err != nil {
		return err
	}
	out := make([]datacenterLine, len(dcs))
	for i, d := range dcs {
		out[i] = datacenterLine{Name: d.Name, Local: d.Local}
		if d.Known {
			ms := float64(d.RTT) / float64(time.Millisecond)
			out[i].RTTMillis = &ms
		}
	}
	if *asJSON {
		return c.printJSON(out)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATACENTER\tRTT")
	for _, d := range out {
		rtt := "unknown"
		switch {
		case d.Local:
			rtt = "0 (local)"
		case d.RTTMillis != nil:
			// As `consul rtt` prints it.
			rtt = fmt.Sprintf("%.3f ms", *d.RTTMillis)
		}
		fmt.Fprintf(tw, "%s\t%s\n", d.Name, rtt)
	}
	return tw.Flush()
}

// checkDatacenter fails unless the agent's servers know dc, so that a
// misspelt -dc says so at once instead of Consul's "No path to
// datacenter" on every read.
func (c *command) checkDatacenter(cl *consulhttp.Client, dc string) error {
	known, err := cl.Datacenters(c.ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(known, dc) {
		return fmt.Errorf("datacenter %q is not known to the agent (it knows %s)", dc, strings.Join(known, ", "))
	}
	return nil
}
