package keeper

import (
	"context"
	"errors"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/backoff"
)

// probe is the goroutine removing the copy left on one agent.
type probe struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has returned
}

// startProbe starts the goroutine that removes the copy left on agent i,
// unless one runs or the keeper is ending (teardown removes it then).
func (k *Keeper) startProbe(i int) {
	if k.probes[i] != nil || k.life.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(k.life)
	p := &probe{cancel: cancel, done: make(chan struct{})}
	k.probes[i] = p
	k.workers.Add(1)
	go k.probe(ctx, i, k.reg.ID, p.done)
}

// stopProbe ends the probe of agent i, if one runs, and waits for it: once
// it returns, no deregistration of its is in flight on our side.
func (k *Keeper) stopProbe(i int) {
	p := k.probes[i]
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
	delete(k.probes, i)
}

// probe asks agent i to deregister id until it answers yes, waiting 100 ms
// growing to 1 s (jittered) between tries, then tells run by sending i on
// probed; a refused permission or an invalid ID ends it without a word to
// run (i stays stale for the teardown). It runs apart from run, so a
// silent agent holds up nothing; it ends with ctx (the keeper's life, or
// stopProbe).
func (k *Keeper) probe(ctx context.Context, i int, id string, done chan<- struct{}) {
	defer k.workers.Done()
	defer close(done)
	b := backoff.Backoff{Min: retryMin, Max: retryMax}
	for {
		dctx, cancel := context.WithTimeout(ctx, k.timeout)
		err := k.agents[i].Client.Deregister(dctx, id)
		cancel()
		if err == nil {
			select {
			case k.probed <- i:
			case <-ctx.Done():
			}
			return
		}
		if errors.Is(err, beacon.ErrPermissionDenied) || errors.Is(err, beacon.ErrInvalid) {
			// Asking again changes nothing; Stop's teardown asks once more.
			k.log.Warn("keeper: cannot remove the copy left on a previous agent", "agent", k.agents[i].Addr, "err", err)
			return
		}
		if !b.Wait(ctx) {
			return
		}
	}
}

// staleRemoved records that a probe removed the copy left on agent i.
func (k *Keeper) staleRemoved(i int) {
	delete(k.probes, i) // its goroutine has returned or is returning
	if k.stale[i] {
		delete(k.stale, i)
		k.publishStale()
		k.log.Info("keeper: removed the copy left on a previous agent", "agent", k.agents[i].Addr)
		k.emit(EventStaleCopyRemoved, k.agents[i].Addr, "removed the copy left on an agent the keeper moved away from")
	}
}
