package keeper

import (
	"context"
	"errors"
	"fmt"

	"github.com/beaconsd/beacon"
)

// maintReq is a Maintenance call handed to run.
type maintReq struct {
	ctx    context.Context
	on     bool
	reason string
	err    chan error // capacity 1: run never waits for the caller
}

// Maintenance puts the instance in maintenance (on, with reason as the
// check's notes) or takes it out, through the agent holding the
// registration (see beacon.Maintainer): the instance leaves every passing
// list until it is taken out. The keeper keeps it so: a registration it
// sends again (an Update, a reconcile, a failover to another agent) puts
// the instance back in maintenance, and a maintenance an operator set on
// the agent (beacon maint) is read before registering there again and
// kept too. Heartbeats go on meanwhile.
//
// Before Start it only records the wish, which Start's registration
// applies; while no agent holds the instance the next registration does.
// The reason is validated first (beacon.ValidateMaintenance). A backend
// that is not a beacon.Maintainer answers an error matching
// errors.ErrUnsupported. It waits for any call to Consul under way.
func (k *Keeper) Maintenance(ctx context.Context, on bool, reason string) error {
	if err := beacon.ValidateMaintenance(k.reg0ID, reason); err != nil {
		return fmt.Errorf("keeper: maintenance: %w", err)
	}
	k.mu.Lock()
	state := k.state
	if state == stateNew {
		k.maintOn, k.maintReason = on, reason
		k.setStatus(func(s *Status) { s.Maintenance = on })
	}
	k.mu.Unlock()
	switch state {
	case stateNew:
		return nil // Start applies it
	case stateStopped:
		return ErrStopped
	}
	m := maintReq{ctx: ctx, on: on, reason: reason, err: make(chan error, 1)}
	select {
	case k.maints <- m:
		return <-m.err
	case <-k.life.Done():
		return ErrStopped
	case <-ctx.Done():
		return fmt.Errorf("keeper: maintenance: %w", ctx.Err())
	}
}

// applyMaint runs in run: it records m and sends it to the agent holding
// the instance, if any.
func (k *Keeper) applyMaint(m maintReq) {
	if k.life.Err() != nil {
		m.err <- ErrStopped
		return
	}
	if k.current < 0 {
		k.setMaint(m.on, m.reason, "")
		m.err <- nil // the next registration applies it
		return
	}
	if err := k.sendMaint(m.ctx, k.current, m.on, m.reason); err != nil {
		m.err <- fmt.Errorf("keeper: maintenance: %w", err)
		return
	}
	k.setMaint(m.on, m.reason, k.agents[k.current].Addr)
	m.err <- nil
}

// setMaint records maintenance on or off and reports a change; agent is
// the address of the agent that holds (or reported) it, empty
// when none holds the instance yet.
func (k *Keeper) setMaint(on bool, reason, agent string) {
	if on != k.maintOn {
		k.emitMaint(on, reason, agent)
	}
	k.maintOn, k.maintReason, k.maintPending = on, reason, false
	k.setStatus(func(s *Status) { s.Maintenance = on })
}

// sendMaint sets maintenance on agent i.
func (k *Keeper) sendMaint(ctx context.Context, i int, on bool, reason string) error {
	m, ok := k.agents[i].Client.(beacon.Maintainer)
	if !ok {
		return fmt.Errorf("the backend cannot set maintenance: %w", errors.ErrUnsupported)
	}
	rctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	return m.Maintenance(rctx, k.reg.ID, on, reason)
}

// readMaint runs before registering on agent i, which drops any
// maintenance the agent holds for the instance (Consul's
// replace-existing-checks removes its check): what agent i holds for the
// instance wins when i holds the registration now (an operator may have
// set or cleared it there); on another agent, one it holds is kept too. A
// failed read leaves what the keeper knows. Reconcile also calls it, on the
// agent holding the registration, to learn an operator's change.
func (k *Keeper) readMaint(ctx context.Context, i int) {
	m, ok := k.agents[i].Client.(beacon.Maintainer)
	if !ok {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	on, reason, err := m.InMaintenance(rctx, k.reg.ID)
	switch {
	case err != nil && i == k.current && k.status.Load().Registered:
		// The periodic reconcile's read: the next one tries again, and a
		// lasting failure shows in the heartbeat's own errors.
		k.log.Debug("keeper: could not read the agent's maintenance", "agent", k.agents[i].Addr, "err", err)
	case err != nil:
		k.log.Warn("keeper: could not read maintenance before registering", "agent", k.agents[i].Addr, "err", err)
	case on || i == k.current:
		if on != k.maintOn {
			k.log.Info("keeper: maintenance set on the agent", "agent", k.agents[i].Addr, "maintenance", on, "reason", reason)
		}
		k.setMaint(on, reason, k.agents[i].Addr)
	}
}

// restoreMaint runs after registering on agent i: it puts the instance
// back in maintenance when the keeper keeps it there. A failure is
// retried at the next reconcile.
func (k *Keeper) restoreMaint(ctx context.Context, i int) {
	if !k.maintOn {
		return
	}
	if err := k.sendMaint(ctx, i, true, k.maintReason); err != nil {
		k.maintPending = true
		k.recordError(fmt.Errorf("keeper: maintenance: %w", err))
		k.log.Warn("keeper: could not put the instance back in maintenance; retrying at the next reconcile", "agent", k.agents[i].Addr, "err", err)
		return
	}
	k.maintPending = false
}

// emitMaint reports entering (with its reason) or leaving maintenance,
// seen on or sent to agent. Before registering, readMaint learns it from
// an agent the keeper does not hold yet (k.current is not that agent), so
// the caller names it.
func (k *Keeper) emitMaint(on bool, reason, agent string) {
	if !k.listened() {
		return
	}
	d := "left"
	if on {
		d = "entered: " + reason
	}
	k.emit(EventMaintenance, agent, d)
}
