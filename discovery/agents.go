package discovery

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/beaconsd/beacon"
)

// agents spreads lookups over the configured agents: all watches use the
// current one; when it fails they move to the next that is up; an agent
// marked down is probed by one goroutine until it answers.
type agents struct {
	regs  []beacon.Registry
	addrs []string
	log   *slog.Logger
	probe time.Duration

	ctx context.Context // ends probers
	wg  *sync.WaitGroup

	mu      sync.Mutex
	current int
	down    []bool
	upCh    chan struct{} // closed and replaced whenever an agent comes back
}

func newAgents(ctx context.Context, wg *sync.WaitGroup, regs []beacon.Registry, addrs []string, probe time.Duration, log *slog.Logger) *agents {
	return &agents{regs: regs, addrs: addrs, log: log, probe: probe, ctx: ctx, wg: wg, down: make([]bool, len(regs)), upCh: make(chan struct{})}
}

// pick returns the agent to use, waiting while all are down.
func (a *agents) pick(ctx context.Context) (int, error) {
	for {
		a.mu.Lock()
		for n := range len(a.regs) {
			i := (a.current + n) % len(a.regs)
			if !a.down[i] {
				if i != a.current {
					a.log.Warn("discovery: moving watches to another agent", "from", a.addrs[a.current], "to", a.addrs[i])
					a.current = i
				}
				a.mu.Unlock()
				return i, nil
			}
		}
		up := a.upCh
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-up:
		}
	}
}

// Instances implements the lookup part of beacon.Registry over the agents.
func (a *agents) Instances(ctx context.Context, q beacon.Query) ([]beacon.Instance, beacon.QueryMeta, error) {
	i, err := a.pick(ctx)
	if err != nil {
		return nil, beacon.QueryMeta{}, err
	}
	insts, meta, err := a.regs[i].Instances(ctx, q)
	if err != nil && ctx.Err() == nil && errors.Is(err, beacon.ErrUnavailable) {
		a.markDown(i, err)
	}
	return insts, meta, err
}

// probeACLs asks the current agent about ACLs, when its backend can.
func (a *agents) probeACLs(ctx context.Context) (beacon.ACLs, error) {
	i, err := a.pick(ctx)
	if err != nil {
		return beacon.ACLsUnknown, err
	}
	p, ok := a.regs[i].(beacon.ACLProber)
	if !ok {
		return beacon.ACLsUnknown, errors.New("discovery: the backend cannot ask about ACLs")
	}
	return p.ProbeACLs(ctx)
}

func (a *agents) markDown(i int, cause error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.down[i] {
		return
	}
	a.down[i] = true
	a.log.Warn("discovery: agent unreachable; probing it", "agent", a.addrs[i], "err", cause)
	a.wg.Add(1)
	go a.prober(i)
}

// prober asks agent i a cheap question until it answers, then wakes every
// watch waiting for an agent.
func (a *agents) prober(i int) {
	defer a.wg.Done()
	t := time.NewTicker(a.probe)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(a.ctx, a.probe+time.Second)
		_, _, err := a.regs[i].Instances(ctx, beacon.Query{Service: "consul"})
		cancel()
		// Up only when it answered: any HTTP status counts, a timeout of
		// our own probe does not (a paused agent accepts and never answers).
		var se *beacon.StatusError
		if err == nil || errors.As(err, &se) {
			a.mu.Lock()
			a.down[i] = false
			close(a.upCh)
			a.upCh = make(chan struct{})
			a.mu.Unlock()
			a.log.Info("discovery: agent answers again", "agent", a.addrs[i])
			return
		}
	}
}

// Checks runs the change feed's query on the current agent, holding one of
// the cache's long-poll slots while it blocks.
func (a *agents) Checks(ctx context.Context, sem chan struct{}, q beacon.ChecksQuery) ([]beacon.CheckState, beacon.QueryMeta, error) {
	i, err := a.pick(ctx)
	if err != nil {
		return nil, beacon.QueryMeta{}, err
	}
	f, ok := a.regs[i].(beacon.ChangeFeed)
	if !ok {
		return nil, beacon.QueryMeta{}, errNoFeed
	}
	if q.WaitIndex > 0 {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		case <-ctx.Done():
			return nil, beacon.QueryMeta{}, ctx.Err()
		}
	}
	checks, meta, err := f.Checks(ctx, q)
	if err != nil && ctx.Err() == nil && errors.Is(err, beacon.ErrUnavailable) {
		a.markDown(i, err)
	}
	return checks, meta, err
}

// hasFeed reports whether every agent's client can list checks.
func (a *agents) hasFeed() bool {
	for _, r := range a.regs {
		if _, ok := r.(beacon.ChangeFeed); !ok {
			return false
		}
	}
	return true
}
