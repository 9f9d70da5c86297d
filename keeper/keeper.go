package keeper

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
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
	// maxRepairJitter spreads a fleet's re-registrations on a restarted
	// agent without delaying any of them noticeably.
	maxRepairJitter = 500 * time.Millisecond
)

// HealthFunc reports the service's own health for the next heartbeat. Keep
// its output stable: every change is a write to the catalog.
type HealthFunc func(ctx context.Context) (beacon.Health, string)

type options struct {
	ttl, drainGrace, reconcile, deregisterAfter time.Duration
	health                                      HealthFunc
	logger                                      *slog.Logger
	backend                                     consul.Backend
}

// Option adjusts a Keeper.
type Option func(*options)

// WithTTL sets the heartbeat check's TTL (default 5 s); heartbeats go every TTL/3.
func WithTTL(d time.Duration) Option { return func(o *options) { o.ttl = d } }

// WithHealth reports the service's own health with every heartbeat.
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

// WithBackend chooses the Consul client (default consulhttp).
func WithBackend(b consul.Backend) Option { return func(o *options) { o.backend = b } }

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
}

type agent struct {
	addr string
	reg  beacon.Registrar
}

// Keeper keeps one registration alive. Create it with New.
type Keeper struct {
	o       options
	agents  []agent
	checkID string
	log     *slog.Logger

	// op serialises every call to Consul, so a heartbeat, a failover, an
	// Update and Stop never interleave.
	op sync.Mutex
	// Guarded by op.
	reg     beacon.Registration // as sent, heartbeat check included
	current int                 // index into agents; -1 when none holds it
	stale   map[int]bool        // agents that may still hold an old copy

	halted bool // set by Stop under op: nothing registers afterwards

	// tokens re-reads the token file (nil without one). The agent syncs a
	// service to the catalog with the token it was registered with, so when
	// the file's token changes the keeper registers again: otherwise
	// revoking the old token would silently break the sync.
	tokens   *consul.TokenSource
	regToken [sha256.Size]byte // digest of the token of the last registration; guarded by op

	mu       sync.Mutex // guards the fields below
	state    int        // stateNew, stateRunning, stateStopped
	status   Status
	cancel   context.CancelFunc // ends Start's retries and the loop
	done     chan struct{}      // closed when Start's retries and the loop are over
	stopDone chan struct{}      // closed when Stop has finished
	stopErr  error
}

const (
	stateNew = iota
	stateRunning
	stateStopped
)

// New returns a Keeper for r on the agents in cfg.Addresses, in order of
// preference. It validates r and the options; nothing is sent until Start.
func New(cfg consul.Config, r beacon.Registration, opts ...Option) (*Keeper, error) {
	o := options{ttl: DefaultTTL, drainGrace: DefaultDrainGrace, reconcile: DefaultReconcileInterval, deregisterAfter: DefaultDeregisterCriticalAfter}
	for _, f := range opts {
		f(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.backend == nil {
		o.backend = func(c consul.Config) (beacon.Registry, error) { return consulhttp.New(c) }
	}
	switch {
	case o.ttl < 3*time.Millisecond:
		return nil, &beacon.ValidationError{Field: "TTL", Reason: fmt.Sprintf("%v is too short to heartbeat", o.ttl)}
	case o.deregisterAfter < beacon.MinDeregisterCritical:
		return nil, &beacon.ValidationError{Field: "DeregisterCriticalAfter", Reason: fmt.Sprintf("%v, must be at least %v (Consul's minimum)", o.deregisterAfter, beacon.MinDeregisterCritical)}
	case o.drainGrace < 0 || o.reconcile <= 0:
		return nil, &beacon.ValidationError{Field: "options", Reason: "negative drain grace or non-positive reconcile interval"}
	}
	k := &Keeper{o: o, checkID: "beacon:" + r.ID, log: o.logger.With("id", r.ID), current: -1, stale: map[int]bool{}}
	reg, err := k.withHeartbeatCheck(r)
	if err != nil {
		return nil, err
	}
	k.reg = reg
	if cfg.TokenFile != "" {
		k.tokens = cfg.NewTokenSource()
	}
	addrs := cfg.Addresses
	if len(addrs) == 0 {
		addrs = []string{consul.DefaultAddress}
	}
	for i := range addrs {
		c, err := o.backend(cfg.Agent(i))
		if err != nil {
			k.closeAgents()
			return nil, fmt.Errorf("keeper: agent %s: %w", addrs[i], err)
		}
		k.agents = append(k.agents, agent{addr: addrs[i], reg: c})
	}
	return k, nil
}

// withHeartbeatCheck appends the keeper's TTL check to r and validates it.
func (k *Keeper) withHeartbeatCheck(r beacon.Registration) (beacon.Registration, error) {
	// Our own copies: the caller may change its slices and map afterwards.
	r.Tags, r.Meta = slices.Clone(r.Tags), maps.Clone(r.Meta)
	r.Checks = append(slices.Clone(r.Checks), beacon.Check{
		ID:                      k.checkID,
		Name:                    "beacon keeper heartbeat",
		TTL:                     k.o.ttl,
		InitialStatus:           beacon.HealthCritical, // see pulse
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

func (k *Keeper) closeAgents() {
	for _, a := range k.agents {
		if c, ok := a.reg.(io.Closer); ok {
			_ = c.Close()
		}
	}
}

// Start registers the instance, retrying with jittered backoff through each
// configured agent in turn until one accepts or ctx ends, then keeps it
// registered in the background until Stop. Invalid input and refused
// permissions are not retried.
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
	// The loop's lifetime starts now, so a Stop during the retries below
	// ends them and is not lost.
	loopCtx, cancel := context.WithCancel(context.Background())
	k.cancel, k.done, k.stopDone = cancel, make(chan struct{}), make(chan struct{})
	k.mu.Unlock()

	rctx, rcancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(loopCtx, rcancel)
	err := k.registerWithRetry(rctx)
	unhook()
	rcancel()
	if err != nil {
		// An attempt cut short may still have reached an agent (and a
		// backend may register in more than one request): remove what may
		// be there, so a failed Start leaves nothing behind.
		k.op.Lock()
		k.halted = true
		for i, a := range k.agents {
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if derr := a.reg.Deregister(dctx, k.reg.ID); derr != nil && !errors.Is(derr, beacon.ErrUnavailable) {
				k.log.Warn("keeper: cleaning up after a failed start", "agent", k.agents[i].addr, "err", derr)
			}
			dcancel()
		}
		k.op.Unlock()
		close(k.done)
		k.mu.Lock()
		if k.state == stateRunning { // no Stop under way: finish it here
			k.state = stateStopped
			close(k.stopDone)
			k.closeAgents()
		}
		k.mu.Unlock()
		return err
	}
	go k.loop(loopCtx)
	return nil
}

func (k *Keeper) registerWithRetry(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		k.op.Lock()
		err := k.registerAnywhere(ctx, 0)
		k.op.Unlock()
		if err == nil {
			return nil
		}
		if errors.Is(err, beacon.ErrInvalid) || errors.Is(err, beacon.ErrPermissionDenied) {
			return fmt.Errorf("keeper: register: %w", err)
		}
		if attempt == 1 {
			k.log.Warn("keeper: register failed; retrying", "err", err)
		}
		if !sleep(ctx, jitter(backoff)) {
			return fmt.Errorf("keeper: register: gave up after %d attempts: %w (last error: %w)", attempt, ctx.Err(), err)
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// registerAnywhere registers through the agents in order, starting at
// first, and makes the one that accepts current. Caller holds op.
func (k *Keeper) registerAnywhere(ctx context.Context, first int) error {
	var errs []error
	for n := range len(k.agents) {
		i := (first + n) % len(k.agents)
		if err := k.registerOn(ctx, i); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k.agents[i].addr, err))
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

// registerOn registers through agent i and makes it current. Caller holds op.
func (k *Keeper) registerOn(ctx context.Context, i int) error {
	rctx, cancel := context.WithTimeout(ctx, consul.DefaultTimeout)
	defer cancel()
	// Read before the backend reads it: if the file changes in between, the
	// digest is the older one and the next heartbeat registers again.
	tok := k.tokenDigest()
	if err := k.agents[i].reg.Register(rctx, k.reg); err != nil {
		return err
	}
	k.regToken = tok
	k.pulse(ctx, i)
	if k.current >= 0 && k.current != i {
		k.stale[k.current] = true
		k.mu.Lock()
		k.status.Failovers++
		k.mu.Unlock()
		k.log.Warn("keeper: moved to another agent", "from", k.agents[k.current].addr, "to", k.agents[i].addr)
	}
	delete(k.stale, i)
	k.current = i
	now := time.Now()
	k.mu.Lock()
	k.status.Agent, k.status.Registered, k.status.LastHeartbeat = k.agents[i].addr, true, now
	k.mu.Unlock()
	k.log.Info("keeper: registered", "agent", k.agents[i].addr, "service", k.reg.Service)
	return nil
}

func (k *Keeper) recordError(err error) {
	if err == nil {
		return
	}
	k.mu.Lock()
	k.status.LastError, k.status.LastErrorAt = err, time.Now()
	k.mu.Unlock()
}

func (k *Keeper) heartbeatInterval() time.Duration { return k.o.ttl / 3 }

func (k *Keeper) loop(ctx context.Context) {
	defer close(k.done)
	hb := time.NewTicker(k.heartbeatInterval())
	defer hb.Stop()
	rec := time.NewTicker(k.o.reconcile)
	defer rec.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			k.op.Lock()
			k.heartbeat(ctx)
			k.op.Unlock()
		case <-rec.C:
			k.op.Lock()
			k.reconcile(ctx)
			k.op.Unlock()
		}
	}
}

// heartbeat updates the TTL check and repairs what it finds. Caller holds op.
func (k *Keeper) heartbeat(ctx context.Context) {
	status, output := k.health(ctx)
	if k.current < 0 {
		k.repair(ctx, errors.New("no agent holds the registration"))
		return
	}
	// A changed token file: register again first. The agent syncs a status
	// change with the token the check was registered with; were the old
	// one revoked, that sync would fail, the agent would not retry it, and
	// registering the same definition again later does not make it sync.
	if k.tokens != nil && k.tokenDigest() != k.regToken {
		k.log.Info("keeper: the token file changed; registering again so the agent syncs with the new token", "agent", k.agents[k.current].addr)
		if err := k.registerOn(ctx, k.current); err != nil {
			k.repair(ctx, err)
			return
		}
	}
	hctx, cancel := context.WithTimeout(ctx, k.heartbeatInterval())
	err := k.agents[k.current].reg.UpdateTTL(hctx, k.checkID, status, output)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		k.repair(ctx, err)
		return
	}
	k.mu.Lock()
	k.status.LastHeartbeat, k.status.Registered = time.Now(), true
	k.mu.Unlock()
	k.removeStale(ctx)
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
// registration. The heartbeat check is registered critical and this makes
// it passing at once: a copy an agent restores from its data dir once its
// TTL state has expired (after the keeper moved to another agent) then
// comes back critical, not passing beside the instance's new copy. On an
// agent that already holds the check, registering again keeps its status.
// Caller holds op.
func (k *Keeper) pulse(ctx context.Context, i int) {
	status, output := k.health(ctx)
	hctx, cancel := context.WithTimeout(ctx, k.heartbeatInterval())
	defer cancel()
	if err := k.agents[i].reg.UpdateTTL(hctx, k.checkID, status, output); err != nil && ctx.Err() == nil {
		k.log.Warn("keeper: first heartbeat after registering failed; the next one retries", "agent", k.agents[i].addr, "err", err)
		k.recordError(err)
	}
}

// repair reacts to a failed heartbeat or reconcile. Caller holds op.
func (k *Keeper) repair(ctx context.Context, cause error) {
	k.recordError(cause)
	switch {
	case errors.Is(cause, beacon.ErrNotFound):
		// The agent lost the registration (restarted, state lost). Jitter
		// so a fleet on one restarted agent does not stampede it.
		k.log.Warn("keeper: agent lost the registration; registering again", "agent", k.agents[k.current].addr)
		if !sleep(ctx, rand.N(min(k.heartbeatInterval()/4, maxRepairJitter)+1)) {
			return
		}
		if err := k.registerOn(ctx, k.current); err == nil {
			return
		}
		fallthrough
	default:
		k.mu.Lock()
		k.status.Registered = false
		k.mu.Unlock()
		first := 0
		if k.current >= 0 {
			first = k.current + 1 // prefer another agent over the failing one
			k.log.Warn("keeper: heartbeat failed; trying other agents", "agent", k.agents[k.current].addr, "err", cause)
		}
		_ = k.registerAnywhere(ctx, first)
	}
}

// reconcile compares the agent's copy with ours and registers again when it
// is missing or differs. Caller holds op.
func (k *Keeper) reconcile(ctx context.Context) {
	if k.current < 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, consul.DefaultTimeout)
	got, err := k.agents[k.current].reg.AgentService(rctx, k.reg.ID)
	cancel()
	switch {
	case ctx.Err() != nil:
	case err != nil:
		k.repair(ctx, err)
	case !matches(got, k.reg):
		k.log.Warn("keeper: agent's copy differs; registering again", "agent", k.agents[k.current].addr)
		if err := k.registerOn(ctx, k.current); err != nil {
			k.repair(ctx, err)
		}
	}
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
	return want.Weights == (beacon.Weights{}) || got.Weights == want.Weights
}

// removeStale deregisters copies left on agents we moved away from, once
// they answer. Caller holds op.
func (k *Keeper) removeStale(ctx context.Context) {
	for i := range k.stale {
		dctx, cancel := context.WithTimeout(ctx, k.heartbeatInterval())
		err := k.agents[i].reg.Deregister(dctx, k.reg.ID)
		cancel()
		if err == nil {
			delete(k.stale, i)
			k.log.Info("keeper: removed the copy left on a previous agent", "agent", k.agents[i].addr)
		}
	}
}

// Update resubmits the registration with new tags, meta, weights or checks
// (an upsert; the ID cannot change). It is validated first.
func (k *Keeper) Update(ctx context.Context, r beacon.Registration) error {
	reg, err := k.withHeartbeatCheck(r)
	if err != nil {
		return fmt.Errorf("keeper: update: %w", err)
	}
	k.mu.Lock()
	state := k.state
	k.mu.Unlock()
	if state == stateStopped {
		return ErrStopped
	}
	k.op.Lock()
	defer k.op.Unlock()
	if k.halted {
		return ErrStopped
	}
	k.reg = reg
	if state == stateNew || k.current < 0 {
		return nil // Start, or the next repair, sends it
	}
	if err := k.registerOn(ctx, k.current); err != nil {
		k.recordError(err)
		return fmt.Errorf("keeper: update: %w", err)
	}
	return nil
}

// Status returns a snapshot of the keeper's state.
func (k *Keeper) Status() Status {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.status
}

// Stop drains and deregisters: it stops heartbeating, marks the instance
// critical so watchers drop it, waits the drain grace (cut short when ctx
// ends), deregisters from every agent that may hold it, and returns. It is
// safe to call more than once; later calls return the first call's result.
func (k *Keeper) Stop(ctx context.Context) error {
	k.mu.Lock()
	switch k.state {
	case stateStopped:
		sd := k.stopDone
		k.mu.Unlock()
		if sd != nil {
			<-sd // a Stop under way: its result is ours
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.stopErr
	case stateNew:
		k.state = stateStopped
		k.mu.Unlock()
		k.closeAgents()
		return nil
	}
	k.state = stateStopped
	cancel, done, stopDone := k.cancel, k.done, k.stopDone
	k.mu.Unlock()
	cancel()
	<-done

	k.op.Lock()
	k.halted = true
	var errs []error
	if k.current >= 0 {
		a := k.agents[k.current]
		dctx, dcancel := context.WithTimeout(ctx, consul.DefaultTimeout)
		err := a.reg.UpdateTTL(dctx, k.checkID, beacon.HealthCritical, drainOutput)
		dcancel()
		if err == nil {
			k.log.Info("keeper: draining", "grace", k.o.drainGrace)
			sleep(ctx, k.o.drainGrace)
		}
		k.stale[k.current] = true
	}
	for i := range k.stale {
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), consul.DefaultTimeout)
		if err := k.agents[i].reg.Deregister(dctx, k.reg.ID); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k.agents[i].addr, err))
		}
		dcancel()
	}
	k.op.Unlock()
	k.closeAgents()
	err := errors.Join(errs...)
	if err != nil {
		err = fmt.Errorf("keeper: deregister: %w", err)
		k.log.Error("keeper: deregister failed; Consul removes the instance after its heartbeat has been critical for DeregisterCriticalAfter", "err", err)
	} else {
		k.log.Info("keeper: deregistered")
	}
	k.mu.Lock()
	k.stopErr = err
	k.status.Registered, k.status.Agent = false, ""
	k.mu.Unlock()
	close(stopDone)
	return err
}

func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d/2+1) }

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
