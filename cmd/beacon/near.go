package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
)

// nodeRTTs estimates the RTTs from the agent's node to the nodes of its
// datacenter (instances -near), from their LAN coordinates, as a client
// with WithNearest does. With dc naming another datacenter it refuses:
// that datacenter's nodes are in another coordinate space. An agent with
// coordinates disabled gives no estimates, which is said on stderr.
func (c *command) nodeRTTs(cl *consulhttp.Client, dc string) (*beacon.NodeRTTs, error) {
	if dc != "" {
		local, err := cl.LocalDatacenter(c.ctx)
		if err != nil {
			return nil, err
		}
		if local != dc {
			return nil, usagef("-near measures from the agent's node, in %s: the nodes of %s are in another coordinate space", local, dc)
		}
	}
	from, err := cl.LocalNode(c.ctx)
	if err != nil {
		return nil, err
	}
	coords, meta, err := cl.NodeCoordinates(c.ctx, beacon.CoordinatesQuery{Consistency: beacon.ConsistencyStale})
	var se *beacon.StatusError
	if errors.As(err, &se) && se.StatusCode == http.StatusUnauthorized {
		fmt.Fprintf(c.stderr, "beacon: the agent has network coordinates disabled: no RTT estimates\n")
		return beacon.NewNodeRTTs(from, 0, nil), nil
	}
	if err != nil {
		return nil, err
	}
	return beacon.NewNodeRTTs(from, meta.LastIndex, coords), nil
}

// nearInstance is an instance as instances -near -json prints it: with
// RTT, its estimated round-trip time in nanoseconds, absent when unknown.
type nearInstance struct {
	beacon.Instance
	RTT *time.Duration `json:",omitempty"`
}

func withRTTs(insts []beacon.Instance, rtts *beacon.NodeRTTs) []nearInstance {
	out := make([]nearInstance, len(insts))
	for i, in := range insts {
		out[i].Instance = in
		if d, ok := rtts.RTT(in.Node); ok {
			out[i].RTT = &d
		}
	}
	return out
}

// rttString is an estimate for a table: to the microsecond, "-" when
// there is none.
func rttString(rtts *beacon.NodeRTTs, node string) string {
	d, ok := rtts.RTT(node)
	if !ok {
		return "-"
	}
	return d.Round(time.Microsecond).String()
}

// writeNearTable is writeInstanceTable with an RTT column after NODE.
func writeNearTable(w interface{ Write([]byte) (int, error) }, insts []beacon.Instance, rtts *beacon.NodeRTTs) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tHEALTH\tNODE\tRTT\tTAGS\tMETA\tWEIGHTS")
	for _, in := range insts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\n", in.ID, in.HostPort(), healthString(in), in.Node, rttString(rtts, in.Node),
			orDash(strings.Join(in.Tags, ",")), orDash(metaString(in.Meta)), in.Weights.Passing, in.Weights.Warning)
	}
	return tw.Flush()
}
