package keeper

import (
	"context"
	"errors"
	"time"

	"golang.org/x/time/rate"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/backoff"
)

// agentEvent is what a watcher saw on agent: answered is true when the
// agent answered (its copy changed or is gone), false when it did not.
type agentEvent struct {
	agent    int
	answered bool
}

// watchWait is how long one long poll of the agent's copy waits: Consul's
// default. An agent that dies breaks the poll at once, whatever it is.
const watchWait = 5 * time.Minute

// watchAgent makes the watcher watch agent i, when its backend can
// (beacon.AgentServiceWatcher): a heartbeat every TTL/3 notices an agent
// that restarted (and lost the instance) between two heartbeats only at
// the next one, the watcher the moment it happens.
func (k *Keeper) watchAgent(i int) {
	if k.watching == i {
		return
	}
	if k.watchCancel != nil {
		k.watchCancel() // it returns by itself; teardown waits for it
		k.watching, k.watchCancel = -1, nil
	}
	w, ok := k.agents[i].Client.(beacon.AgentServiceWatcher)
	if !ok || k.life.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(k.life)
	k.watching, k.watchCancel = i, cancel
	k.workers.Add(1)
	go k.watch(ctx, i, w, k.reg.ID)
}

// watch long-polls agent i's copy of id, by content hash, and tells run
// (events) when it changed or vanished or when the agent went away;
// after a failure it waits 100 ms growing to 1 s, jittered, and after an
// answer at most once a second past a burst of 3 (an agent or proxy that
// ignores the hash would otherwise turn the poll into a hot loop). An answer
// that retrying cannot change (a refused permission) ends it: the
// heartbeat still notices everything, only later.
func (k *Keeper) watch(ctx context.Context, i int, w beacon.AgentServiceWatcher, id string) {
	defer k.workers.Done()
	b := backoff.Backoff{Min: retryMin, Max: retryMax}
	limit := rate.NewLimiter(rate.Every(time.Second), 3)
	hash := ""
	for {
		_, h, err := w.WatchAgentService(ctx, id, hash, watchWait)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			if hash != "" && h != hash {
				k.notify(agentEvent{agent: i, answered: true})
			}
			hash = h
			b.Reset()
			if limit.Wait(ctx) != nil {
				return
			}
			continue
		case errors.Is(err, beacon.ErrNotFound):
			k.notify(agentEvent{agent: i, answered: true})
		case transient(err):
			k.notify(agentEvent{agent: i})
		default:
			k.log.Warn("keeper: cannot watch the agent's copy; relying on heartbeats", "agent", k.agents[i].Addr, "err", err)
			return
		}
		hash = ""
		if !b.Wait(ctx) {
			return
		}
	}
}

// notify hands e to run without waiting: an event already waiting says
// the same (look now).
func (k *Keeper) notify(e agentEvent) {
	select {
	case k.events <- e:
	default:
	}
}
