package main

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
)

func (c *command) instances(args []string) error {
	fs := c.flagSet("instances", "NAME [-tag t,...] [-all] [-dc NAME] [-near] [-json]")
	var tags listFlag
	fs.Var(&tags, "tag", "only instances with all these `tags` (comma-separated or repeated)")
	all := fs.Bool("all", false, "include warning and critical instances (and those in maintenance: HEALTH critical(maint))")
	dc := fs.String("dc", "", dcFlagHelp)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	near := fs.Bool("near", false, "nearest first, with the RTT estimated from the agent's node by Consul's network coordinates (in -json: RTT, in nanoseconds)")
	pos, err := c.parseArgs(fs, args, 1, "one service NAME")
	if err != nil {
		return err
	}
	q := beacon.Query{Service: pos[0], Tags: tags, IncludeUnhealthy: *all, Datacenter: *dc}
	if err := q.Validate(); err != nil {
		return usageError{err: err}
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	var insts []beacon.Instance
	var rtts *beacon.NodeRTTs
	err = c.eachAgent(cfg, func(cl *consulhttp.Client) error {
		if *near {
			if rtts, err = c.nodeRTTs(cl, q.Datacenter); err != nil {
				return err
			}
		}
		if q.Datacenter != "" {
			if err := c.checkDatacenter(cl, q.Datacenter); err != nil {
				return err
			}
		}
		insts, _, err = cl.Instances(c.ctx, q)
		return err
	})
	if err != nil {
		return err
	}
	sortInstances(insts)
	if *near {
		beacon.SortByRTT(insts, rtts)
	}
	if *asJSON {
		if insts == nil {
			insts = []beacon.Instance{}
		}
		if *near {
			return c.printJSON(withRTTs(insts, rtts))
		}
		return c.printJSON(insts)
	}
	if len(insts) == 0 {
		what := "passing instances"
		if *all {
			what = "instances"
		}
		where := ""
		if q.Datacenter != "" {
			where = " in " + q.Datacenter
		}
		fmt.Fprintf(c.stdout, "no %s of %q%s\n", what, q.Service, where)
		return nil
	}
	if *near {
		return writeNearTable(c.stdout, insts, rtts)
	}
	return writeInstanceTable(c.stdout, insts)
}

// dcFlagHelp describes -dc, for instances and watch.
const dcFlagHelp = "read the service in this `datacenter` (default: the agent's own; beacon datacenters lists them)"

func sortInstances(insts []beacon.Instance) {
	slices.SortFunc(insts, func(a, b beacon.Instance) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Node, b.Node))
	})
}

func writeInstanceTable(w interface{ Write([]byte) (int, error) }, insts []beacon.Instance) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tHEALTH\tNODE\tTAGS\tMETA\tWEIGHTS")
	for _, in := range insts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\n", in.ID, in.HostPort(), healthString(in), in.Node,
			orDash(strings.Join(in.Tags, ",")), orDash(metaString(in.Meta)), in.Weights.Passing, in.Weights.Warning)
	}
	return tw.Flush()
}

// healthString is an instance's health, marked when it is in maintenance.
func healthString(in beacon.Instance) string {
	if in.Maintenance {
		return string(in.Health) + "(maint)"
	}
	return string(in.Health)
}

func metaString(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}
