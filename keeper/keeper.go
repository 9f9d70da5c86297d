package keeper

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/internal/backoff"
	"github.com/beaconsd/beacon/internal/notify"
)

// Errors returned by Start and Update.
var (
	ErrStarted = errors.New("keeper: already started")
	ErrStopped = errors.New("keeper: stopped")
)

// Defaults. The TTL bounds how long a dead process stays passing.
const (
	DefaultTTL                     = 5 * time.Second
	DefaultDeregisterCriticalAfter = time.Minute
	DefaultDrainGrace              = time.Second
	DefaultReconcileInterval       = 30 * time.Second
	// heartbeatOutput is constant: the agent writes to the catalog (and so
	// to Raft) only when a check's status or output changes.
	heartbeatOutput = "beacon keeper: alive"
	drainOutput     = "beacon keeper: draining"
	// A heartbeat that failed for a transport reason is retried on the
	// same agent after retryMin, doubling up to retryMax, jittered (a
	// fleet on one agent that died together does not retry together).
	// The probes of stale copies, and the watcher after a failed poll,
	// wait on the same schedule.
	retryMin = 100 * time.Millisecond
	retryMax = time.Second
)

// HealthFunc reports the service's own health for the next heartbeat. Keep
// its output stable: every change is a write to the catalog.
type HealthFunc func(ctx context.Context) (beacon.Health, string)

type options struct {
	ttl, drainGrace, reconcile, deregisterAfter time.Duration
	health                                      HealthFunc
	logger                                      *slog.Logger
	backend                                     consul.Backend
	startedMeta                                 bool
}

// Option adjusts a Keeper.
type Option func(*options)

// WithTTL sets the heartbeat check's TTL (default 5 s); heartbeats go every TTL/3.
func WithTTL(d time.Duration) Option { return func(o *options) { o.ttl = d } }

// WithHealth reports the service's own health with every heartbeat: f's
// status (passing, warning or critical) and output become the heartbeat
// check's. Without it every heartbeat reports passing, which proves only
// that the process runs and reaches its agent, not that it serves: give a
// function that checks what callers depend on (for an HTTP service, a GET
// of its own health endpoint). f is called from the keeper's goroutine
// with a deadline of TTL/3, so it must not call the Keeper's Update or
// Stop; an invalid status counts as critical.
func WithHealth(f HealthFunc) Option { return func(o *options) { o.health = f } }

// WithLogger sets where state changes and errors are logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithDrainGrace sets how long Stop keeps serving after marking the
// instance critical, so watchers drop it first (default 1 s).
func WithDrainGrace(d time.Duration) Option { return func(o *options) { o.drainGrace = d } }

// WithReconcileInterval sets how often the agent's copy of the
// registration is compared with ours (default 30 s).
func WithReconcileInterval(d time.Duration) Option { return func(o *options) { o.reconcile = d } }

// WithDeregisterCriticalAfter sets when Consul removes an instance whose
// heartbeat stopped (default and minimum 1 minute, Consul's minimum).
func WithDeregisterCriticalAfter(d time.Duration) Option {
	return func(o *options) { o.deregisterAfter = d }
}

// WithBackend chooses the Consul client (default consulhttp). It is called
// once per configured agent, with a Config bound to that agent.
func WithBackend(b consul.Backend) Option { return func(o *options) { o.backend = b } }

// WithStartedMeta publishes when the keeper was created, as the instance's
// start time, in its service meta under beacon.MetaStarted (Unix seconds),
// unless the registration's meta already holds that key. Callers' balancers
// with slow start (balancer.WithSlowStart) then ramp the instance from its
// start even when they first see it in their own first answer, after they
// restarted; without it such callers cannot tell a new instance from an
// old one and ramp neither. The value is fixed for the keeper's life: an
// Update, a re-registration after an agent restart or a failover, and the
// reconcile's comparison all keep it, so only a new process (a new keeper)
// publishes a new start. It takes one of the 64 meta pairs Consul allows.
func WithStartedMeta() Option { return func(o *options) { o.startedMeta = true } }

// Status is a snapshot of a Keeper's state.
type Status struct {
	// Agent is the address of the agent holding the registration, or "".
	Agent         string
	Registered    bool
	LastHeartbeat time.Time
	LastError     error
	LastErrorAt   time.Time
	// Failovers counts moves to another agent.
	Failovers int
	// Maintenance: the keeper keeps the instance in maintenance (see
	// Keeper.Maintenance), set through it or found on the agent.
	Maintenance bool
	// LastHeartbeatOK: the agent accepted the last heartbeat or
	// registration the keeper sent; false from a failed one (LastError
	// says why) until one succeeds, before the first, and after Stop.
	LastHeartbeatOK bool
	// PreviousAgents are the addresses of the agents that may still hold
	// an old copy of the registration (agents the keeper moved away from
	// whose copy is not yet removed), in configuration order; nil for none.
	PreviousAgents []string
}

// update is an Update handed to the goroutine that owns the agent state.
type update struct {
	ctx context.Context
	reg beacon.Registration
	err chan error // capacity 1: the owner never waits for the caller
}

// Keeper keeps one registration alive. Create it with New.
//
// One goroutine, run, owns the agent state from Start until the keeper
// ends: the registration as sent, which agent holds it, the agents that may
// hold an old copy, and the token digest. It makes every call to Consul
// that writes the live registration, so a heartbeat, a failover, an Update
// and the teardown never interleave. Other goroutines reach it only by
// message: Update sends an update, Stop ends life and waits for done, a
// probe (one per stale agent, deregistering the copy left there) sends on
// probed, the watcher (long-polling the current agent's copy) on events.
// Probes and the watcher live on life and are waited for by the teardown.
// mu is the only lock; it guards the lifecycle fields below it and is
// never held while waiting or calling Consul, so there is no lock order to
// keep.
type Keeper struct {
	o       options
	agents  []consul.Agent
	checkID string
	log     *slog.Logger
	timeout time.Duration // bounds each call to Consul: consul.Config.RequestTimeout
	// tokens re-reads the token file (nil without one). The agent syncs a
	// service to the catalog with the token it was registered with, so when
	// the file's token changes the keeper registers again: otherwise
	// revoking the old token would silently break the sync.
	tokens *consul.TokenSource

	life    context.Context    // ends when Stop is called or Start fails
	end     context.CancelFunc // ends life
	updates chan update        // Update → run
	maints  chan maintReq      // Maintenance → run
	done    chan struct{}      // closed once the keeper has ended and its clients are closed
	status  atomic.Pointer[Status]
	stopErr error // written by run before done is closed

	mu      sync.Mutex
	state   int             // stateNew, stateRunning, stateStopped; guarded by mu
	stopCtx context.Context // the first Stop's context, for the drain; guarded by mu

	// Owned by run. Before Start, Update replaces reg under mu; Start hands
	// it to run.
	reg      beacon.Registration // as sent, heartbeat check included
	current  int                 // index into agents; -1 when none holds it
	stale    map[int]bool        // agents that may still hold an old copy
	regToken [sha256.Size]byte   // digest of the token of the last registration
	lastOK   time.Time           // last heartbeat or registration current accepted
	retry    backoff.Backoff     // between heartbeat retries; Reset by every success
	retrying bool                // retrying the current agent after a transport failure
	failing  bool                // the last heartbeat or repair failed
	probes   map[int]*probe      // running probes of stale agents, by agent
	// maintOn and maintReason: the instance is kept in maintenance
	// (Maintenance, or found on the agent before registering there);
	// maintPending: putting it back failed, reconcile retries. Before
	// Start, Maintenance writes them under mu.
	maintOn      bool
	maintReason  string
	maintPending bool
	reg0ID       string // the instance ID, fixed at New: read without mu
	started      string // beacon.MetaStarted's value (WithStartedMeta), fixed at New

	// probed carries, from a probe to run, the agent whose old copy the
	// probe removed; unbuffered, so run owns stale: a probe that was
	// cancelled never reports.
	probed chan int
	// events carries, from the watcher of an agent to run, news that the
	// agent's copy changed, vanished or the agent went away; capacity 1,
	// sent without blocking: run only needs to know that something did.
	events      chan agentEvent
	watching    int                // the agent the watcher watches; -1 for none
	watchCancel context.CancelFunc // ends that watcher
	workers     sync.WaitGroup     // every probe and watcher; teardown waits for them

	listeners notify.Set[Event] // Notify's functions (events.go)
	// registeredOnce: an agent accepted the registration; from then on a
	// changed token digest is a rotation (EventTokenRotated). Owned by run.
	registeredOnce bool
}

const (
	stateNew = iota
	stateRunning
	stateStopped
)

// New returns a Keeper for r on the agents in cfg.Addresses, in order of
// preference. It validates r and the options; nothing is sent until Start.
// Every call to an agent is bounded by cfg.Timeout (consul.DefaultTimeout
// when zero).
func New(cfg consul.Config, r beacon.Registration, opts ...Option) (*Keeper, error) {
	o := options{ttl: DefaultTTL, drainGrace: DefaultDrainGrace, reconcile: DefaultReconcileInterval, deregisterAfter: DefaultDeregisterCriticalAfter}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.backend == nil {
		o.backend = consulhttp.Backend
	}
	switch {
	case o.ttl < 3*time.Millisecond:
		return nil, &beacon.ValidationError{Field: "TTL", Reason: fmt.Sprintf("%v is too short to heartbeat", o.ttl)}
	case o.deregisterAfter < beacon.MinDeregisterCritical:
		return nil, &beacon.ValidationError{Field: "DeregisterCriticalAfter", Reason: fmt.Sprintf("%v, must be at least %v (Consul's minimum)", o.deregisterAfter, beacon.MinDeregisterCritical)}
	case o.drainGrace < 0 || o.reconcile <= 0:
		return nil, &beacon.ValidationError{Field: "options", Reason: "negative drain grace or non-positive reconcile interval"}
	}
	k := &Keeper{
		o: o, checkID: "beacon:" + r.ID, log: o.logger.With("id", r.ID), timeout: cfg.RequestTimeout(),
		current: -1, stale: map[int]bool{}, updates: make(chan update), maints: make(chan maintReq), reg0ID: r.ID, done: make(chan struct{}),
		probes: map[int]*probe{}, probed: make(chan int), events: make(chan agentEvent, 1), watching: -1,
		retry: backoff.Backoff{Min: retryMin, Max: retryMax},
	}
	k.status.Store(&Status{})
	if o.startedMeta {
		k.started = beacon.StartedMeta(time.Now())
	}
	reg, err := k.withHeartbeatCheck(r)
	if err != nil {
		return nil, err
	}
	k.reg = reg
	// Consul registers such a name with only a warning in its own log,
	// which the service's owner rarely reads: say it here, once.
	var dnsErr *beacon.ValidationError
	if errors.As(beacon.ValidateDNSName(r.Service), &dnsErr) {
		k.log.Warn("keeper: Consul DNS will not find this service (lookups through the HTTP API will)", "service", r.Service, "reason", dnsErr.Reason)
	}
	if cfg.TokenFile != "" {
		k.tokens = cfg.NewTokenSource()
	}
	agents, err := o.backend.Agents(cfg)
	if err != nil {
		return nil, fmt.Errorf("keeper: %w", err)
	}
	k.agents = agents
	k.life, k.end = context.WithCancel(context.Background())
	return k, nil
}

// withHeartbeatCheck appends the keeper's TTL check to r, adds its start
// time to r's meta (WithStartedMeta), and validates it.
func (k *Keeper) withHeartbeatCheck(r beacon.Registration) (beacon.Registration, error) {
	// Our own copies: the caller may change its slices and map afterwards.
	r.Tags, r.Meta = slices.Clone(r.Tags), maps.Clone(r.Meta)
	if _, ok := r.Meta[beacon.MetaStarted]; k.started != "" && !ok {
		if r.Meta == nil {
			r.Meta = make(map[string]string, 1)
		}
		// The same value in every registration sent: matches compares meta.
		r.Meta[beacon.MetaStarted] = k.started
	}
	// The status a watcher first sees the instance in. Without a health
	// function every heartbeat reports passing, so registering passing
	// only skips a critical moment the pulse ends at once. With one, its
	// first answer comes with the pulse: until then the instance is
	// critical, never passing on a guess. Neither choice reaches a copy
	// an agent restores: see pulse.
	initial := beacon.HealthPassing
	if k.o.health != nil {
		initial = beacon.HealthCritical
	}
	r.Checks = append(slices.Clone(r.Checks), beacon.Check{
		ID:                      k.checkID,
		Name:                    "beacon keeper heartbeat",
		TTL:                     k.o.ttl,
		InitialStatus:           initial,
		DeregisterCriticalAfter: k.o.deregisterAfter,
	})
	if err := r.Validate(); err != nil {
		return beacon.Registration{}, err
	}
	if "beacon:"+r.ID != k.checkID {
		return beacon.Registration{}, &beacon.ValidationError{Field: "ID", Reason: "a keeper keeps one ID; deregister and start a new keeper to change it"}
	}
	return r, nil
}

func (k *Keeper) closeAgents() { consul.CloseAgents(k.agents) }

// Start registers the instance, retrying with jittered backoff through each
// configured agent in turn until one accepts or ctx ends, then keeps it
// registered in the background until Stop. Invalid input and refused
// permissions are not retried. When Start fails, it first removes whatever
// an attempt cut short may have left on an agent, and the keeper is
// stopped: Start again returns ErrStopped.
func (k *Keeper) Start(ctx context.Context) error {
	k.mu.Lock()
	switch k.state {
	case stateRunning:
		k.mu.Unlock()
		return ErrStarted
	case stateStopped:
		k.mu.Unlock()
		return ErrStopped
	}
	k.state = stateRunning
	k.mu.Unlock()
	started := make(chan error, 1)
	go k.run(ctx, started)
	return <-started
}

// run is the goroutine that owns the agent state, from Start's first
// attempt to the teardown. It reports Start's result on started.
func (k *Keeper) run(startCtx context.Context, started chan<- error) {
	defer close(k.done)
	// Start's retries end with its context or with Stop.
	rctx, rcancel := context.WithCancel(startCtx)
	unhook := context.AfterFunc(k.life, rcancel)
	k.mu.Lock()
	maint0 := k.maintOn // set before Start: no event has said so yet
	k.mu.Unlock()
	err := k.registerWithRetry(rctx)
	unhook()
	rcancel()
	if err != nil {
		k.mu.Lock()
		k.state = stateStopped
		k.mu.Unlock()
		k.end() // Update now answers ErrStopped
		// An attempt cut short may still have reached an agent (and a
		// backend may register in more than one request): any agent may
		// hold a copy, and a failed Start leaves nothing behind.
		for i := range k.agents {
			k.stale[i] = true
		}
		if terr := k.teardown(context.WithoutCancel(startCtx)); terr != nil {
			k.log.Warn("keeper: cleaning up after a failed start", "err", terr)
		}
		started <- err
		return
	}
	if maint0 && k.maintOn {
		k.emitMaint(true, k.maintReason, k.agents[k.current].Addr)
	}
	started <- nil
	k.loop()
	k.mu.Lock()
	ctx := k.stopCtx
	k.mu.Unlock()
	if err := k.teardown(ctx); err != nil {
		k.stopErr = fmt.Errorf("keeper: deregister: %w", err)
		k.log.Error("keeper: deregister failed; Consul removes the instance after its heartbeat has been critical for DeregisterCriticalAfter", "err", k.stopErr)
	} else {
		k.log.Info("keeper: deregistered")
	}
}

// teardown is how every keeper that started ends, after a failed Start or
// on Stop: it waits for the probes and the watcher to end, drains the
// current agent's copy (critical, then the drain grace, cut short when ctx
// ends), asks every agent that may hold a copy to deregister it (even
// after ctx ended: each request has its own deadline), and closes the
// clients. Only run calls it.
func (k *Keeper) teardown(ctx context.Context) error {
	// life has ended, and with it every probe's context: they return at
	// once, and what they did not remove is still in stale; so does the
	// watcher.
	k.workers.Wait()
	clear(k.probes)
	k.watching, k.watchCancel = -1, nil
	held := k.current
	if k.current >= 0 {
		dctx, cancel := context.WithTimeout(ctx, k.timeout)
		err := k.agents[k.current].Client.UpdateTTL(dctx, k.checkID, beacon.HealthCritical, drainOutput)
		cancel()
		if err == nil {
			k.log.Info("keeper: draining", "grace", k.o.drainGrace)
			backoff.Sleep(ctx, k.o.drainGrace)
		}
		k.stale[k.current] = true
		k.current = -1
	}
	var errs []error
	for i, a := range k.agents {
		if !k.stale[i] {
			continue
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.timeout)
		if err := a.Client.Deregister(dctx, k.reg.ID); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.Addr, err))
		} else {
			delete(k.stale, i)
			why := "removed the copy left here"
			switch {
			case !k.registeredOnce:
				why = "removed whatever the failed start may have left"
			case i == held:
				why = "stopped"
			}
			k.emit(EventDeregistered, a.Addr, why)
		}
		cancel()
	}
	k.closeAgents()
	k.publishStale()
	k.setStatus(func(s *Status) { s.Registered, s.Agent, s.LastHeartbeatOK = false, "", false })
	return errors.Join(errs...)
}

// loop heartbeats, reconciles, applies Updates and hears from the probes
// and the watcher until Stop. The heartbeat is a timer, not a ticker:
// after a failure heartbeat chooses when the next one goes (a retry comes
// sooner).
func (k *Keeper) loop() {
	beat := time.NewTimer(k.heartbeatInterval())
	defer beat.Stop()
	rec := time.NewTicker(k.o.reconcile)
	defer rec.Stop()
	for {
		select {
		case <-k.life.Done():
			return
		case <-beat.C:
			beat.Reset(k.heartbeat(k.life))
		case <-rec.C:
			if d, ok := k.reconcile(k.life); ok {
				resetTimer(beat, d)
			}
		case u := <-k.updates:
			k.apply(u)
		case m := <-k.maints:
			k.applyMaint(m)
		case i := <-k.probed:
			k.staleRemoved(i)
		case e := <-k.events:
			// A heartbeat now, not at the next tick, acts on what the
			// watcher saw: a copy gone is registered again (a changed one
			// only if its check went with it; reconcile sees the rest),
			// and an agent gone starts its retries, unless retries or a
			// failover already run on their own schedule (failing).
			if e.agent == k.current && (e.answered || !k.failing) {
				resetTimer(beat, 0)
			}
		}
	}
}

// resetTimer makes t fire after d, whether or not it has fired already.
func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop() // Go 1.23 timers: Reset after Stop never delivers a stale value
	t.Reset(d)
}

func (k *Keeper) registerWithRetry(ctx context.Context) error {
	b := backoff.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for attempt := 1; ; attempt++ {
		err := k.registerAnywhere(ctx, 0, "started")
		if err == nil {
			return nil
		}
		if errors.Is(err, beacon.ErrInvalid) || errors.Is(err, beacon.ErrPermissionDenied) {
			return fmt.Errorf("keeper: register: %w", err)
		}
		if attempt == 1 {
			k.log.Warn("keeper: register failed; retrying", "err", err)
		}
		if !k.serveFor(ctx, b.Next()) {
			return fmt.Errorf("keeper: register: gave up after %d attempts: %w (last error: %w)", attempt, ctx.Err(), err)
		}
	}
}

// serveFor lets d pass between Start's attempts while applying Updates,
// so an Update during the retries is not held up until they end; it
// reports false when ctx ends first.
func (k *Keeper) serveFor(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case u := <-k.updates:
			k.apply(u)
		case m := <-k.maints:
			k.applyMaint(m)
		}
	}
}

// apply makes u's registration the one kept and sends it to the agent
// holding the instance, if any.
func (k *Keeper) apply(u update) {
	if k.life.Err() != nil {
		u.err <- ErrStopped
		return
	}
	k.reg = u.reg
	if k.current < 0 {
		u.err <- nil // Start's next attempt, or the next repair, sends it
		return
	}
	if err := k.registerOn(u.ctx, k.current, "updated"); err != nil {
		k.recordError(err)
		u.err <- fmt.Errorf("keeper: update: %w", err)
		return
	}
	u.err <- nil
}

// registerAnywhere registers through the agents in order, starting at
// first, and makes the one that accepts current; why is for the event.
func (k *Keeper) registerAnywhere(ctx context.Context, first int, why string) error {
	var errs []error
	for n := range len(k.agents) {
		i := (first + n) % len(k.agents)
		if err := k.registerOn(ctx, i, why); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k.agents[i].Addr, err))
			if errors.Is(err, beacon.ErrInvalid) || errors.Is(err, beacon.ErrPermissionDenied) {
				break
			}
			continue
		}
		return nil
	}
	err := errors.Join(errs...)
	k.recordError(err)
	return err
}

// registerOn registers through agent i and makes it current. why says,
// for EventRegistered, what made it register ("" for no event: the caller
// reports its own); a move to another agent is EventMoved instead.
func (k *Keeper) registerOn(ctx context.Context, i int, why string) error {
	// A probe of i must not deregister what this registers: end it first.
	// If this registration fails, i may still hold an old copy: probe on.
	k.stopProbe(i)
	// Registering drops a maintenance the agent holds: read it first.
	k.readMaint(ctx, i)
	rctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	// Read before the backend reads it: if the file changes in between, the
	// digest is the older one and the next heartbeat registers again.
	tok := k.tokenDigest()
	if err := k.agents[i].Client.Register(rctx, k.reg); err != nil {
		if k.stale[i] {
			k.startProbe(i)
		}
		return err
	}
	if k.tokens != nil && k.registeredOnce && tok != k.regToken {
		// Only that it changed: never the token or its digest.
		k.emit(EventTokenRotated, k.agents[i].Addr, "the token file changed; registered again with the new token")
	}
	k.regToken, k.registeredOnce = tok, true
	k.restoreMaint(ctx, i)
	k.pulse(ctx, i)
	from := k.current
	moved := from >= 0 && from != i
	if moved {
		k.log.Warn("keeper: moved to another agent", "from", k.agents[from].Addr, "to", k.agents[i].Addr)
		k.stale[from] = true
		k.startProbe(from)
	}
	delete(k.stale, i)
	k.publishStale()
	k.current = i
	k.watchAgent(i)
	now := time.Now()
	// The Status before the events: a listener reads the new state there.
	k.setStatus(func(s *Status) {
		s.Agent, s.Registered, s.LastHeartbeat, s.LastHeartbeatOK = k.agents[i].Addr, true, now, true
		if moved {
			s.Failovers++
		}
	})
	switch {
	case moved && k.listened():
		k.listeners.Emit(Event{Time: time.Now(), Kind: EventMoved, Agent: k.agents[i].Addr, From: k.agents[from].Addr, Detail: k.agents[from].Addr + " → " + k.agents[i].Addr})
	case !moved && why != "":
		k.emit(EventRegistered, k.agents[i].Addr, why)
	}
	k.beatOK(now)
	k.log.Info("keeper: registered", "agent", k.agents[i].Addr, "service", k.reg.Service)
	return nil
}

// publishStale puts the agents that may hold an old copy (stale) in the
// Status, in configuration order. Only run calls it, after changing stale.
func (k *Keeper) publishStale() {
	var prev []string
	for i, a := range k.agents {
		if k.stale[i] {
			prev = append(prev, a.Addr)
		}
	}
	if prev == nil && k.status.Load().PreviousAgents == nil {
		return // the common case, every registration: nothing to store
	}
	k.setStatus(func(s *Status) { s.PreviousAgents = prev })
}

// beatOK records that the current agent accepted a heartbeat or a
// registration at now: the TTL's time runs from here, and the next
// failure starts its retries from retryMin again.
func (k *Keeper) beatOK(now time.Time) {
	if k.retrying {
		k.log.Info("keeper: agent answers again", "agent", k.agents[k.current].Addr)
	}
	if k.failing {
		k.emit(EventHeartbeatRecovered, k.agents[k.current].Addr, "the agent accepts heartbeats again")
	}
	k.lastOK, k.retrying, k.failing = now, false, false
	k.retry.Reset()
}

// fail records that a heartbeat or a repair failed with cause; the first
// failure after a success is an event (EventHeartbeatFailed).
func (k *Keeper) fail(cause error) {
	// The Status first: a listener told of the failure reads it there too.
	if k.status.Load().LastHeartbeatOK {
		k.setStatus(func(s *Status) { s.LastHeartbeatOK = false })
	}
	if !k.failing && k.listened() {
		agent := ""
		if k.current >= 0 {
			agent = k.agents[k.current].Addr
		}
		k.emit(EventHeartbeatFailed, agent, cause.Error())
	}
	k.failing = true
}

// setStatus changes the published Status. Only run calls it, so a load,
// change and store is never lost to another writer.
func (k *Keeper) setStatus(f func(*Status)) {
	s := *k.status.Load()
	f(&s)
	k.status.Store(&s)
}

func (k *Keeper) recordError(err error) {
	if err == nil {
		return
	}
	now := time.Now()
	k.setStatus(func(s *Status) { s.LastError, s.LastErrorAt = err, now })
}

func (k *Keeper) heartbeatInterval() time.Duration { return k.o.ttl / 3 }

// beatTimeout bounds a call made between heartbeats: it must not hold up
// the next one, nor outlast the configured request timeout.
func (k *Keeper) beatTimeout() time.Duration { return min(k.heartbeatInterval(), k.timeout) }

// heartbeat updates the TTL check, repairs what it finds, and returns
// when the next heartbeat goes.
func (k *Keeper) heartbeat(ctx context.Context) time.Duration {
	status, output := k.health(ctx)
	if k.current < 0 {
		return k.repair(ctx, errors.New("no agent holds the registration"))
	}
	// A changed token file: register again first. The agent syncs a status
	// change with the token the check was registered with; were the old
	// one revoked, that sync would fail, the agent would not retry it, and
	// registering the same definition again later does not make it sync.
	if k.tokens != nil && k.tokenDigest() != k.regToken {
		k.log.Info("keeper: the token file changed; registering again so the agent syncs with the new token", "agent", k.agents[k.current].Addr)
		if err := k.registerOn(ctx, k.current, ""); err != nil {
			return k.repair(ctx, err)
		}
	}
	timeout := k.beatTimeout()
	if k.retrying {
		// A retry that hangs must not eat the time left to fail over.
		timeout = min(timeout, max(time.Until(k.retryUntil()), retryMin))
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	err := k.agents[k.current].Client.UpdateTTL(hctx, k.checkID, status, output)
	cancel()
	if ctx.Err() != nil {
		return k.heartbeatInterval()
	}
	if err != nil {
		return k.repair(ctx, err)
	}
	now := time.Now()
	k.setStatus(func(s *Status) { s.LastHeartbeat, s.Registered, s.LastHeartbeatOK = now, true, true })
	k.beatOK(now)
	return k.heartbeatInterval()
}

// tokenDigest is the SHA-256 of the token file's current token, or zero
// without a token file or when it cannot be read (the request that follows
// reports that error). The keeper keeps the digest, not a second copy of
// the secret.
func (k *Keeper) tokenDigest() [sha256.Size]byte {
	if k.tokens == nil {
		return [sha256.Size]byte{}
	}
	tok, err := k.tokens.Token()
	if err != nil {
		return [sha256.Size]byte{}
	}
	return sha256.Sum256([]byte(tok))
}

// health is the status and output the next heartbeat carries.
func (k *Keeper) health(ctx context.Context) (beacon.Health, string) {
	if k.o.health == nil {
		return beacon.HealthPassing, heartbeatOutput
	}
	hctx, cancel := context.WithTimeout(ctx, k.heartbeatInterval())
	defer cancel()
	status, output := k.o.health(hctx)
	if !status.Valid() {
		return beacon.HealthCritical, fmt.Sprintf("health function returned %q", status)
	}
	return status, output
}

// pulse sends a heartbeat to agent i right after it accepted the
// registration, so the check carries the health function's answer (and a
// fresh TTL) at once. On an agent that already holds the check,
// registering again keeps its status.
//
// A copy an agent restores from its data dir does not depend on the status
// registered: Consul 1.14.8 restores a check registered through the HTTP
// API as critical (agent.loadChecks: "Default check to critical"), and
// passing only from a TTL state the last heartbeat persisted that has not
// expired yet. So the copy left on an agent the keeper moved away from
// comes back critical once its TTL has run out, whatever withHeartbeatCheck
// registered (TestRestoredCopyComesBackCritical).
func (k *Keeper) pulse(ctx context.Context, i int) {
	status, output := k.health(ctx)
	hctx, cancel := context.WithTimeout(ctx, k.beatTimeout())
	defer cancel()
	if err := k.agents[i].Client.UpdateTTL(hctx, k.checkID, status, output); err != nil && ctx.Err() == nil {
		k.log.Warn("keeper: first heartbeat after registering failed; the next one retries", "agent", k.agents[i].Addr, "err", err)
		k.recordError(err)
	}
}

// transient reports whether err is worth retrying on the same agent: it
// did not answer (a refused or broken connection, a deadline), answered
// 5xx, or asked us to slow down. "Not found", invalid input and refused
// permissions are answers, and retrying them changes nothing.
func transient(err error) bool {
	return (errors.Is(err, beacon.ErrUnavailable) || errors.Is(err, beacon.ErrRateLimited)) &&
		!errors.Is(err, beacon.ErrNotFound) && !errors.Is(err, beacon.ErrPermissionDenied) && !errors.Is(err, beacon.ErrInvalid)
}

// retryUntil is when retrying the current agent must give way to a
// failover: a heartbeat interval before the TTL, counted from the last
// heartbeat the agent accepted, expires, so a registration through another
// agent has time to pass before this copy goes critical.
func (k *Keeper) retryUntil() time.Time { return k.lastOK.Add(k.o.ttl - k.heartbeatInterval()) }

// repair reacts to a failed heartbeat, registration or reconcile on the
// current agent and returns when the next heartbeat goes.
//
//   - Not found: the agent lost the registration (restarted, state lost);
//     it registers again there at once. No fleet jitter is added: keepers
//     on one agent reach this at times spread by their own heartbeat
//     phases or by their jittered retries, and one registration is a cheap
//     agent-local write.
//   - A transport failure: the same agent is retried, 100 ms growing to
//     1 s, jittered, while retryUntil allows; an agent that restarts
//     answers within that and keeps the instance.
//   - Anything else, or no time left: the instance registers through the
//     next agent that accepts (registerAnywhere), starting after the
//     failing one; if none does, the next heartbeat tries again after the
//     next retry wait.
func (k *Keeper) repair(ctx context.Context, cause error) time.Duration {
	k.recordError(cause)
	if k.current >= 0 && errors.Is(cause, beacon.ErrNotFound) {
		// Not a failure to report when it is repaired at once: the
		// EventRegistered says what happened.
		k.log.Warn("keeper: agent lost the registration; registering again", "agent", k.agents[k.current].Addr)
		err := k.registerOn(ctx, k.current, "the agent had lost the registration")
		if err == nil || ctx.Err() != nil {
			return k.heartbeatInterval()
		}
		k.recordError(err)
		cause = err
	}
	k.fail(cause)
	if k.current >= 0 && transient(cause) {
		d := k.retry.Next()
		if time.Now().Add(d).Before(k.retryUntil()) {
			if !k.retrying {
				k.log.Warn("keeper: heartbeat failed; retrying the same agent", "agent", k.agents[k.current].Addr, "err", cause, "until", k.retryUntil())
			}
			k.retrying = true
			return d
		}
	}
	k.retrying = false
	k.setStatus(func(s *Status) { s.Registered = false })
	first := 0
	if k.current >= 0 {
		first = k.current + 1 // prefer another agent over the failing one
		k.log.Warn("keeper: heartbeat failed; trying other agents", "agent", k.agents[k.current].Addr, "err", cause)
	}
	if err := k.registerAnywhere(ctx, first, "registered again after failures"); err == nil || ctx.Err() != nil {
		return k.heartbeatInterval()
	}
	return k.retry.Next()
}

// reconcile compares the agent's copy with ours and registers again when it
// is missing or differs. When it found the agent failing it reports when
// the next heartbeat should go (true): repair's verdict, so that a
// transport failure starts the heartbeat's retries at once.
func (k *Keeper) reconcile(ctx context.Context) (time.Duration, bool) {
	if k.current < 0 {
		return 0, false
	}
	rctx, cancel := context.WithTimeout(ctx, k.timeout)
	got, err := k.agents[k.current].Client.AgentService(rctx, k.reg.ID)
	cancel()
	switch {
	case ctx.Err() != nil:
	case err != nil:
		return k.repair(ctx, err), true
	case !matches(got, k.reg):
		k.log.Warn("keeper: agent's copy differs; registering again", "agent", k.agents[k.current].Addr)
		if err := k.registerOn(ctx, k.current, "the agent's copy differed"); err != nil {
			return k.repair(ctx, err), true
		}
	case k.maintPending:
		k.restoreMaint(ctx, k.current)
	default:
		// An operator may have set or cleared maintenance on the agent
		// (beacon maint): learn it, so Status says it and the next
		// registration keeps it.
		k.readMaint(ctx, k.current)
	}
	return 0, false
}

func matches(got beacon.Instance, want beacon.Registration) bool {
	if got.Service != want.Service || got.Port != want.Port || got.Address != want.Address ||
		!slices.Equal(got.Tags, want.Tags) || len(got.Meta) != len(want.Meta) {
		return false
	}
	for key, v := range want.Meta {
		if got.Meta[key] != v {
			return false
		}
	}
	// The agent's copy is read compacted (beacon.CompactTaggedAddresses),
	// so the registration's are compared compacted too.
	wantTagged, _ := beacon.CompactTaggedAddresses(want.Address, want.Port, true, want.TaggedAddresses, nil)
	if !maps.Equal(got.TaggedAddresses, wantTagged) {
		return false
	}
	return want.Weights == (beacon.Weights{}) || got.Weights == want.Weights
}

// Update resubmits the registration with new tags, meta, weights or checks
// (an upsert; the ID cannot change). It is validated first. Before Start it
// only replaces what Start will send; while no agent holds the instance,
// the next attempt sends it. It waits for any call to Consul the keeper
// has under way.
func (k *Keeper) Update(ctx context.Context, r beacon.Registration) error {
	reg, err := k.withHeartbeatCheck(r)
	if err != nil {
		return fmt.Errorf("keeper: update: %w", err)
	}
	k.mu.Lock()
	state := k.state
	if state == stateNew {
		k.reg = reg
	}
	k.mu.Unlock()
	switch state {
	case stateNew:
		return nil // Start sends it
	case stateStopped:
		return ErrStopped
	}
	u := update{ctx: ctx, reg: reg, err: make(chan error, 1)}
	select {
	case k.updates <- u:
		return <-u.err
	case <-k.life.Done():
		return ErrStopped
	case <-ctx.Done():
		return fmt.Errorf("keeper: update: %w", ctx.Err())
	}
}

// Status returns a snapshot of the keeper's state. It never waits for a
// call to Consul.
func (k *Keeper) Status() Status {
	s := *k.status.Load()
	s.PreviousAgents = slices.Clone(s.PreviousAgents) // the caller's to change
	return s
}

// Stop drains and deregisters: it stops heartbeating, marks the instance
// critical so watchers drop it, waits the drain grace (cut short when ctx
// ends), deregisters from every agent that may hold it, and returns. It is
// safe to call more than once and concurrently; every call returns once the
// first has finished, with its result.
func (k *Keeper) Stop(ctx context.Context) error {
	k.mu.Lock()
	prev := k.state
	if prev == stateRunning {
		k.stopCtx = ctx // before end: run reads it once life has ended
	}
	k.state = stateStopped
	k.mu.Unlock()
	k.end() // ends Start's retries, or the loop
	if prev == stateNew {
		k.closeAgents()
		close(k.done)
	}
	<-k.done
	return k.stopErr
}
