package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/internal/backoff"
	"github.com/beaconsd/beacon/internal/blocking"
	"github.com/beaconsd/beacon/internal/notify"
)

// agents spreads lookups over the configured agents: all watches use the
// current one; when it fails they move to the next that is up; an agent
// marked down is probed by one goroutine until it answers. It is the
// cache's one source: a beacon.Lookup, and a beacon.ChangeFeed,
// beacon.ServiceSummaries and beacon.ACLProber when the agents' clients are.
type agents struct {
	regs  []beacon.Lookup
	addrs []string
	log   *slog.Logger
	probe time.Duration
	life  *lifetime   // the watchdog and probers end with it
	limit *requestCap // WithMaxRequestRate's, nil for none; set before any call
	// events are the cache's Notify listeners; they hear an agent go
	// down or come back, after mu is released.
	events *notify.Set[Event]

	mu      sync.Mutex
	current int
	down    []bool
	upCh    chan struct{} // closed and replaced whenever an agent comes back
	// allDown is closed while every agent is marked down, and replaced
	// when one comes back: a caller waiting for a first answer stops
	// waiting then, as no watch will ask until an agent is back.
	allDown chan struct{}
	lastErr error // what last marked an agent down
	// since[i] is when agent i was last marked down or up again (zero:
	// never either), and why[i] what marked it down last.
	since []time.Time
	why   []error
	// live[i] ends when agent i is marked down, cancelling the requests in
	// flight to it: a paused agent accepts connections and never answers,
	// so its long polls would otherwise hang until their own deadline
	// (minutes) and the watches would never move to another agent.
	live     []context.Context
	kill     []context.CancelCauseFunc // with what marked the agent down
	inflight []atomic.Int64            // requests in flight per agent, for the watchdog
	// answered[i] is when agent i last answered a request (any status),
	// in Unix nanoseconds: proof of life the watchdog need not ask for.
	answered []atomic.Int64
}

// Watchdog timing: while requests are in flight to the current agent, it is
// asked a cheap question every livenessEvery; after livenessMisses
// unanswered in a row (each given livenessTimeout) it is marked down.
const (
	livenessEvery   = 5 * time.Second
	livenessTimeout = 2 * time.Second
	livenessMisses  = 2
)

// recoverySpread is the most a request that waited for an agent to come
// back waits more, each a random share of it. Every cache of a fleet
// probes a restarted agent on the same beat (they all marked it down when
// it died), so without it every watch of every host asks within one
// round trip of the first probe answered: the herd BenchmarkFleet
// measures. Spread uniformly over 3 s, the middle 90% of them spread over
// 2.7 s; a watch keeps serving its last good snapshot meanwhile.
const recoverySpread = 3 * time.Second

var (
	_ beacon.Lookup           = (*agents)(nil)
	_ beacon.ChangeFeed       = (*agents)(nil)
	_ beacon.ServiceSummaries = (*agents)(nil)
	_ beacon.ACLProber        = (*agents)(nil)
)

func newAgents(life *lifetime, clients []consul.Agent, probe time.Duration, log *slog.Logger, events *notify.Set[Event]) *agents {
	regs := make([]beacon.Lookup, len(clients))
	addrs := make([]string, len(clients))
	for i, c := range clients {
		regs[i], addrs[i] = c.Client, c.Addr
	}
	a := &agents{regs: regs, addrs: addrs, log: log, probe: probe, life: life, events: events, down: make([]bool, len(regs)), since: make([]time.Time, len(regs)), why: make([]error, len(regs)), upCh: make(chan struct{}), allDown: make(chan struct{}),
		live: make([]context.Context, len(regs)), kill: make([]context.CancelCauseFunc, len(regs)), inflight: make([]atomic.Int64, len(regs)), answered: make([]atomic.Int64, len(regs))}
	for i := range regs {
		a.live[i], a.kill[i] = context.WithCancelCause(life.ctx)
	}
	life.every(livenessEvery, a.watchdog)
	return a
}

// errStoppedAnswering is the watchdog's verdict on an agent that accepts
// requests and answers none.
var errStoppedAnswering = errors.New("the agent stopped answering")

// markedDown is what ends a request in flight to an agent that was marked
// down meanwhile (by the watchdog, or another request's transport error):
// it carries that cause, so the request reports why, not only that it was
// cut short.
type markedDown struct{ cause error }

func (m *markedDown) Error() string { return "marked down: " + m.cause.Error() }
func (m *markedDown) Unwrap() error { return m.cause }

// bind ties a request to agent i to the agent's liveness: the returned
// context also ends when the agent is marked down. done must be called
// when the request ends; it returns why the agent was marked down when
// that ended the request, nil otherwise.
func (a *agents) bind(ctx context.Context, i int) (rctx context.Context, done func() (killed error)) {
	a.mu.Lock()
	live := a.live[i]
	a.mu.Unlock()
	a.inflight[i].Add(1)
	rctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(live, func() { cancel(&markedDown{context.Cause(live)}) })
	return rctx, func() error {
		stop()
		var m *markedDown
		killed := errors.As(context.Cause(rctx), &m)
		cancel(nil)
		a.inflight[i].Add(-1)
		if killed {
			return m
		}
		return nil
	}
}

// watchdog, called every livenessEvery, asks the current agent a cheap,
// agent-local question while requests are in flight to it, and marks it
// down when it stops answering. It always asks to be called again.
func (a *agents) watchdog() bool {
	a.mu.Lock()
	i, down := a.current, a.down[a.current]
	a.mu.Unlock()
	if down || a.inflight[i].Load() == 0 {
		return true
	}
	// An agent that answered anything lately is alive, if slow: asking
	// costs it (and the servers: the question is a stale read) one more
	// request, and an overloaded agent, which a fleet's herd makes, would
	// miss the question's deadline, be marked down and have every long
	// poll cut, each then asked again: more load, not less.
	began := time.Now()
	if began.UnixNano()-a.answered[i].Load() < int64(livenessEvery) {
		return true
	}
	// A miss is asked again at once: a slow answer is forgiven, a paused
	// agent is found within livenessEvery + misses × timeout (2 ×
	// livenessEvery + misses × timeout after its last answer).
	answered := false
	for range livenessMisses {
		if answered = a.answers(i, livenessTimeout); answered || a.life.ctx.Err() != nil {
			break
		}
	}
	if !answered && a.answered[i].Load() >= began.UnixNano() {
		answered = true // another request was answered meanwhile
	}
	if !answered && a.life.ctx.Err() == nil {
		a.markDown(i, fmt.Errorf("%w: %d liveness probes of %v unanswered", errStoppedAnswering, livenessMisses, livenessTimeout))
	}
	return true
}

// answers reports whether agent i answers a cheap question within timeout.
// Any HTTP status counts; a timeout does not (a paused agent accepts and
// never answers). The question is a stale read of the "consul" service:
// a server answers it from its own state even without a leader, so a lost
// quorum (whose blocked writes hold non-stale reads for seconds) does not
// look like a dead agent.
func (a *agents) answers(i int, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(a.life.ctx, timeout)
	defer cancel()
	_, _, err := a.regs[i].Instances(ctx, beacon.Query{Service: "consul", Consistency: beacon.ConsistencyStale})
	var se *beacon.StatusError
	return err == nil || errors.As(err, &se)
}

// ready returns the agent a request goes to once it may be sent: an agent
// up, then a token of the cache-wide cap (WithMaxRequestRate). The token
// is taken only once an agent answers, so the requests an outage held back
// do not rush out on tokens they took before it, beyond the cap.
func (a *agents) ready(ctx context.Context) (int, error) {
	if _, err := a.pick(ctx); err != nil {
		return 0, err
	}
	if err := a.limit.wait(ctx); err != nil {
		return 0, err
	}
	return a.pick(ctx) // the agent may have changed while the cap held it
}

// pick returns the agent to use, waiting while all are down, and then a
// random share of recoverySpread more.
func (a *agents) pick(ctx context.Context) (int, error) {
	for woken := false; ; {
		if woken {
			if !backoff.Sleep(ctx, backoff.UpTo(recoverySpread)) {
				return 0, ctx.Err()
			}
			woken = false // and look again: the agent may be down again
		}
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
			woken = true
		}
	}
}

// Instances implements beacon.Lookup over the agents.
func (a *agents) Instances(ctx context.Context, q beacon.Query) ([]beacon.Instance, beacon.QueryMeta, error) {
	return call(a, ctx, q.Datacenter != "", func(ctx context.Context, reg beacon.Lookup) ([]beacon.Instance, beacon.QueryMeta, error) {
		return reg.Instances(ctx, q)
	})
}

// Checks implements beacon.ChangeFeed over the agents; it fails with
// errNoFeed when the current agent's client cannot list checks.
//
// Like every change-feed query, it marks the agent down only when its
// connection fails, as a remote request does: its answer is the whole
// datacenter's and may take long to come (at 100,000 instances, 50 MB that
// did not arrive within the request's deadline while 10,000 watches made
// their first reads), and an agent that answers everything else is not
// down for that. Whether it answers at all is the watchdog's to judge.
func (a *agents) Checks(ctx context.Context, q beacon.ChecksQuery) ([]beacon.CheckState, beacon.QueryMeta, error) {
	return call(a, ctx, true, func(ctx context.Context, reg beacon.Lookup) ([]beacon.CheckState, beacon.QueryMeta, error) {
		f, ok := reg.(beacon.ChangeFeed)
		if !ok {
			return nil, beacon.QueryMeta{}, errNoFeed
		}
		return f.Checks(ctx, q)
	})
}

// ServiceSummaries implements beacon.ServiceSummaries over the agents; it
// fails with errNoFeed when the current agent's client cannot summarise
// services. An agent is marked down by it as by Checks.
func (a *agents) ServiceSummaries(ctx context.Context, q beacon.ServicesQuery) ([]beacon.ServiceSummary, beacon.QueryMeta, error) {
	return call(a, ctx, true, func(ctx context.Context, reg beacon.Lookup) ([]beacon.ServiceSummary, beacon.QueryMeta, error) {
		f, ok := reg.(beacon.ServiceSummaries)
		if !ok {
			return nil, beacon.QueryMeta{}, errNoFeed
		}
		return f.ServiceSummaries(ctx, q)
	})
}

// call runs one request on the current agent, waiting while all are down.
// The request ends when the watchdog marks the agent down; a transport
// error marks it down. For a remote request (one the agent forwards to
// another datacenter), only a failure of the agent's own connection does:
// a 5xx ("No path to datacenter") or a timeout there is the other
// datacenter's, and the agent's liveness is left to the watchdog.
func call[T any](a *agents, ctx context.Context, remote bool, do func(context.Context, beacon.Lookup) (T, beacon.QueryMeta, error)) (T, beacon.QueryMeta, error) {
	return callAt(a, ctx, remote, func(ctx context.Context, _ int, reg beacon.Lookup) (T, beacon.QueryMeta, error) { return do(ctx, reg) })
}

// callAt is call, telling do which agent (its index) it asks: a caller
// that asks one agent several questions whose answers must go together
// (the RTT watch: the node name and the coordinates) can tell a move.
func callAt[T any](a *agents, ctx context.Context, remote bool, do func(context.Context, int, beacon.Lookup) (T, beacon.QueryMeta, error)) (T, beacon.QueryMeta, error) {
	i, err := a.ready(ctx)
	if err != nil {
		var zero T
		return zero, beacon.QueryMeta{}, err
	}
	// What came before was local queueing (the cap, the spread after an
	// agent came back, and the caller's long-poll slot): a hot loop must
	// not take it for an index standing still (WithHotThreshold).
	blocking.Sending(ctx)
	rctx, done := a.bind(ctx, i)
	v, meta, err := do(rctx, i, a.regs[i])
	if se := (*beacon.StatusError)(nil); err == nil || errors.As(err, &se) {
		a.answered[i].Store(time.Now().UnixNano())
	}
	if killed := done(); killed != nil && ctx.Err() == nil {
		err = fmt.Errorf("agent %s: %w: %w", a.addrs[i], beacon.ErrUnavailable, killed)
	}
	if err != nil && ctx.Err() == nil && errors.Is(err, beacon.ErrUnavailable) && (!remote || connFailed(err)) {
		a.markDown(i, err)
	}
	return v, meta, err
}

// executeQuery executes a prepared query on the current agent, when its
// client can (beacon.PreparedQueries).
func (a *agents) executeQuery(ctx context.Context, ref string) (beacon.PreparedQueryResult, error) {
	// Remote: Consul may forward the execution to another datacenter.
	res, _, err := call(a, ctx, true, func(ctx context.Context, reg beacon.Lookup) (beacon.PreparedQueryResult, beacon.QueryMeta, error) {
		pq, ok := reg.(beacon.PreparedQueries)
		if !ok {
			return beacon.PreparedQueryResult{}, beacon.QueryMeta{}, errNoPrepared
		}
		res, err := pq.ExecuteQuery(ctx, ref, beacon.ExecuteOptions{})
		return res, beacon.QueryMeta{}, err
	})
	return res, err
}

// localDatacenter asks the current agent for its datacenter, when its
// client can (beacon.DatacenterLister).
func (a *agents) localDatacenter(ctx context.Context) (string, error) {
	i, err := a.pick(ctx)
	if err != nil {
		return "", err
	}
	l, ok := a.regs[i].(beacon.DatacenterLister)
	if !ok {
		return "", errNoLister
	}
	return l.LocalDatacenter(ctx)
}

// nearestDatacenters lists the datacenters nearest first through the
// current agent, when its client can (beacon.DatacenterLister).
func (a *agents) nearestDatacenters(ctx context.Context) ([]beacon.DatacenterRTT, error) {
	i, err := a.pick(ctx)
	if err != nil {
		return nil, err
	}
	l, ok := a.regs[i].(beacon.DatacenterLister)
	if !ok {
		return nil, errNoLister
	}
	return beacon.NearestDatacenters(ctx, l)
}

// connFailed reports whether err is the agent's connection failing (refused,
// reset, broken): not an answer with a status, and not a timeout.
func connFailed(err error) bool {
	var se *beacon.StatusError
	if errors.As(err, &se) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// ProbeACLs implements beacon.ACLProber: it asks the current agent about
// ACLs, when its client can.
func (a *agents) ProbeACLs(ctx context.Context) (beacon.ACLs, error) {
	i, err := a.ready(ctx)
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
	if a.down[i] {
		a.mu.Unlock()
		return
	}
	a.down[i] = true
	a.lastErr = cause
	a.since[i], a.why[i] = time.Now(), cause
	if !slices.Contains(a.down, false) {
		close(a.allDown) // once per outage: markDown returns early for an agent already down
	}
	// An agent that answered (a 5xx: no leader during an election, say) is
	// alive; its long polls may well be fine. One that did not answer,
	// the watchdog's verdict or a transport error, gets what is still in
	// flight to it ended, or a silent agent would hold it for minutes.
	var se *beacon.StatusError
	if !errors.As(cause, &se) {
		a.kill[i](cause)
	}
	a.log.Warn("discovery: agent unreachable; probing it", "agent", a.addrs[i], "err", cause)
	a.life.every(a.probe, func() bool { return !a.probeOnce(i) })
	a.mu.Unlock()
	// Outside the lock: a listener may read Agents.
	a.events.Emit(Event{Time: time.Now(), Kind: EventAgentDown, Agent: a.addrs[i], Detail: cause.Error()})
}

// probeOnce asks agent i, marked down, a cheap question (markDown has it
// asked every probe interval until it answers); when it answers, the
// agent is up again and every watch waiting for an agent is woken.
func (a *agents) probeOnce(i int) (up bool) {
	if !a.answers(i, a.probe+time.Second) {
		return false
	}
	a.mu.Lock()
	a.down[i] = false
	a.since[i] = time.Now()
	a.live[i], a.kill[i] = context.WithCancelCause(a.life.ctx)
	close(a.upCh)
	a.upCh = make(chan struct{})
	select {
	case <-a.allDown: // the outage is over: the next one closes a new channel
		a.allDown = make(chan struct{})
	default:
	}
	a.mu.Unlock()
	a.log.Info("discovery: agent answers again", "agent", a.addrs[i])
	a.events.Emit(Event{Time: time.Now(), Kind: EventAgentUp, Agent: a.addrs[i]})
	return true
}

// outage reports which agents are marked down and what last marked one
// down, and whether that is every agent.
func (a *agents) outage() (down []string, last error, all bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, d := range a.down {
		if d {
			down = append(down, a.addrs[i])
		}
	}
	return down, a.lastErr, len(down) == len(a.down)
}

// whenAllDown returns a channel closed while every agent is marked down.
func (a *agents) whenAllDown() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.allDown
}

// hasFeed reports whether every agent's client can list checks or
// summarise services, what the change feed asks.
func (a *agents) hasFeed() bool {
	for _, r := range a.regs {
		_, checks := r.(beacon.ChangeFeed)
		_, summaries := r.(beacon.ServiceSummaries)
		if !checks && !summaries {
			return false
		}
	}
	return true
}

// AgentStatus is what a cache believes of one of its agents (Cache.Agents).
type AgentStatus struct {
	Address string
	// Current: the agent the cache's requests go to now.
	Current bool
	// Down: marked down (a transport error, or the watchdog found it
	// silent); probed until it answers again.
	Down bool
	// Since is when it was last marked down or up again; zero when
	// neither has happened since the cache started.
	Since time.Time
	// LastError is what last marked it down, nil if nothing has.
	LastError error
	// LastAnswer is when it last answered a request, any status; zero
	// before its first answer.
	LastAnswer time.Time
}

func (a *agents) status() []AgentStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]AgentStatus, len(a.regs))
	for i := range a.regs {
		out[i] = AgentStatus{Address: a.addrs[i], Current: i == a.current, Down: a.down[i], Since: a.since[i], LastError: a.why[i]}
		if ns := a.answered[i].Load(); ns != 0 {
			out[i].LastAnswer = time.Unix(0, ns)
		}
	}
	return out
}
