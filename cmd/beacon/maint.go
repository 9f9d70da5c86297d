package main

import (
	"errors"
	"fmt"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
)

// notHereError: the agent asked does not hold the instance; the next
// configured agent may.
type notHereError struct {
	ID    string
	Agent string
}

func (e *notHereError) Is(target error) bool { return target == errTryNext }
func (e *notHereError) Unwrap() error        { return beacon.ErrNotFound }

func (e *notHereError) Error() string {
	return fmt.Sprintf("instance %q is not registered on agent %s: maintenance goes through the agent holding it (beacon -consul ADDRESS maint %s ...): %v",
		e.ID, e.Agent, e.ID, beacon.ErrNotFound)
}

// maint puts an instance in maintenance or takes it out, through the
// first configured agent holding it.
func (c *command) maint(args []string) error {
	fs := c.flagSet("maint", "ID on|off [-reason TEXT]")
	reason := fs.String("reason", "", "why, shown with the maintenance check (with on; up to 4 KiB)")
	pos, err := c.parseArgs(fs, args, 2, "an instance ID and on or off")
	if err != nil {
		return err
	}
	id := pos[0]
	var on bool
	switch pos[1] {
	case "on":
		on = true
	case "off":
		if *reason != "" {
			return usagef("maint: -reason goes with on, not off")
		}
	default:
		return usagef("maint: want on or off, got %q", pos[1])
	}
	if err := beacon.ValidateMaintenance(id, *reason); err != nil {
		return usageError{err: err}
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	return c.eachAgent(cfg, func(cl *consulhttp.Client) error {
		err := cl.Maintenance(c.ctx, id, on, *reason)
		switch {
		case errors.Is(err, beacon.ErrNotFound):
			return &notHereError{ID: id, Agent: cl.Agent()}
		case err != nil:
			return err
		}
		state := "off"
		if on {
			state = "on"
		}
		fmt.Fprintf(c.stdout, "maintenance %s for %s on agent %s\n", state, id, cl.Agent())
		return nil
	})
}
