package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
)

// heldElsewhereError: the ID is registered, but through another node's
// agent, which alone can remove it.
type heldElsewhereError struct {
	ID    string
	Agent string
	Nodes []string // nodes whose agents hold the ID
}

// Is lets eachAgent move on to the next configured agent: the one holding
// the ID may be among them.
func (e *heldElsewhereError) Is(target error) bool { return target == errTryNext }

func (e *heldElsewhereError) Error() string {
	return fmt.Sprintf("instance %q is not registered on agent %s but on node %s; registrations belong to the agent that made them: deregister it through that node's agent (beacon -consul ADDRESS deregister %s)",
		e.ID, e.Agent, strings.Join(e.Nodes, ", "), e.ID)
}

func (c *command) deregister(args []string) error {
	fs := c.flagSet("deregister", "ID")
	pos, err := c.parseArgs(fs, args, 1, "one instance ID")
	if err != nil {
		return err
	}
	id := pos[0]
	if err := beacon.ValidateID("ID", id); err != nil {
		return usageError{err: err}
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	err = c.eachAgent(cfg, func(cl *consulhttp.Client) error {
		node := cl.Agent()
		if self, err := cl.Self(c.ctx); err == nil { // needs agent:read; the address will do without
			node = "node " + self.Node + " (agent " + cl.Agent() + ")"
		}
		_, err := cl.AgentService(c.ctx, id)
		switch {
		case err == nil:
			if err := cl.Deregister(c.ctx, id); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "deregistered %s from %s\n", id, node)
			return nil
		case !errors.Is(err, beacon.ErrNotFound):
			return err
		}
		// Not on this agent. Anywhere else in the catalog?
		holders, err := catalogHolders(c, cl, id)
		if err != nil {
			return err
		}
		if len(holders) > 0 {
			return &heldElsewhereError{ID: id, Agent: cl.Agent(), Nodes: holders}
		}
		fmt.Fprintf(c.stdout, "%s is not registered on %s: nothing to do\n", id, node)
		return nil
	})
	// No configured agent holds it: say which node does, once.
	if he := (*heldElsewhereError)(nil); errors.As(err, &he) && !errors.Is(err, beacon.ErrUnavailable) {
		return he
	}
	return err
}

// catalogHolders lists the nodes whose agents registered an instance with
// this ID, in any service.
func catalogHolders(c *command, cl *consulhttp.Client, id string) ([]string, error) {
	svcs, _, err := cl.Services(c.ctx)
	if err != nil {
		return nil, err
	}
	var nodes []string
	for _, s := range svcs {
		insts, _, err := cl.ServiceInstances(c.ctx, s.Name)
		if err != nil {
			return nil, err
		}
		for _, in := range insts {
			if in.ID == id && !slices.Contains(nodes, in.Node) {
				nodes = append(nodes, in.Node)
			}
		}
	}
	slices.Sort(nodes)
	return nodes, nil
}
