package registrytest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
)

// Op names a method of Memory, for fault injection and call counts.
type Op string

// The operations of Memory. OpAll stands for any of them in FailNext, Fail
// and Calls.
const (
	OpAll          Op = "*"
	OpRegister     Op = "Register"
	OpDeregister   Op = "Deregister"
	OpUpdateTTL    Op = "UpdateTTL"
	OpAgentService Op = "AgentService"
	OpInstances    Op = "Instances"
	OpChecks       Op = "Checks"
	OpProbeACLs    Op = "ProbeACLs"
)

// Fault decides the outcome of one call before Memory acts on it: a
// non-nil error fails the call with that error (wrapped with the operation),
// nil lets it proceed. arg is the call's instance ID, check ID or service
// name ("" for Checks and ProbeACLs). A Fault may block, for example until
// ctx ends; it is called without Memory's lock held.
type Fault func(ctx context.Context, op Op, arg string) error

// MemoryNode is the node name of every instance a Memory returns, and
// MemoryNodeCheck the ID of its one node check (Consul's serfHealth).
const (
	MemoryNode      = "memory"
	MemoryNodeCheck = "serfHealth"
	// memoryAddress is the node address an instance without an address of
	// its own reports, as Consul reports the agent's.
	memoryAddress = "127.0.0.1"
	// defaultWait is Consul's default WaitTime for a blocking query.
	defaultWait = 5 * time.Minute
)

var (
	_ beacon.Registry   = (*Memory)(nil)
	_ beacon.ChangeFeed = (*Memory)(nil)
	_ beacon.ACLProber  = (*Memory)(nil)
)

// Memory is an in-memory beacon.Registry standing in for one Consul agent
// of datacenter "dc1", so that logic built on a registry (a keeper's
// failover, discovery's index rules, a client's retries) is tested
// without a consul binary. It also implements beacon.ChangeFeed and
// beacon.ACLProber. Agent behaviour itself is tested against real Consul
// with Run; Memory only follows the contract Run checks:
//
//   - Every method validates its input with the root package's Validate
//     functions first, and refuses it with the *beacon.ValidationError
//     a real backend returns.
//   - Register is an upsert; Deregister of an unknown ID succeeds;
//     UpdateTTL of an unknown check and AgentService of an unknown ID are
//     *beacon.StatusError 404s (beacon.ErrNotFound).
//   - Instances honours Service, Tags and IncludeUnhealthy; Datacenter
//     must be "" or "dc1"; a Filter is refused (Memory cannot evaluate
//     Consul's filter language); Consistency and Cached change nothing.
//   - Indexes are Consul's: one counter raised by every change; a service's
//     index is the counter at the last change to one of its instances, so
//     re-registering an identical instance or repeating a TTL update with
//     the same status wakes nobody. A blocking query (WaitIndex > 0) returns
//     when that index passes WaitIndex, when WaitTime (default 5 min) ends,
//     or with ctx's error when ctx ends.
//   - Checks never run and TTLs never expire: a test moves a check with
//     UpdateTTL or SetHealth.
//
// Faults are injected per call with FailNext, Fail and SetFault; Pause
// makes every call hang as on a paused agent; SetIndex moves the index
// (backwards too) and Restart empties the agent as a restarted dev agent.
// The zero value is not usable: build one with NewMemory. All methods are
// safe for concurrent use, and Memory starts no goroutines.
type Memory struct {
	mu       sync.Mutex
	index    uint64                 // the agent's raft index
	base     uint64                 // index reported for a service never seen
	services map[string]*memService // by instance ID
	svcIndex map[string]uint64      // by service name
	checks   map[string]*memCheck   // by check ID, the node check included
	checkIdx uint64                 // index of the checks table
	changed  chan struct{}          // closed and replaced at every change
	gen      uint64                 // raised by Restart: in-flight calls fail
	paused   chan struct{}          // non-nil while paused; closed by Resume
	timeout  time.Duration          // bounds a paused call, as a backend's deadline
	acls     beacon.ACLs
	fault    Fault
	failNext map[Op][]error
	fail     map[Op]error
	calls    map[Op]int
}

type memService struct {
	reg    beacon.Registration
	checks []string // IDs as Registration.CheckIDs names them
}

type memCheck struct {
	id, serviceID, service string
	ttl                    bool
	status                 beacon.Health
	output                 string
	modifyIndex            uint64
}

// NewMemory returns an empty agent whose node check passes, with ACLs
// disabled and index 1.
func NewMemory() *Memory {
	m := &Memory{
		acls:     beacon.ACLsDisabled,
		failNext: map[Op][]error{},
		fail:     map[Op]error{},
		calls:    map[Op]int{},
	}
	m.reset(1)
	return m
}

// reset empties the agent at index n. The caller holds m.mu (or owns m).
func (m *Memory) reset(n uint64) {
	m.index, m.base, m.checkIdx = n, n, n
	m.services = map[string]*memService{}
	m.svcIndex = map[string]uint64{}
	m.checks = map[string]*memCheck{
		MemoryNodeCheck: {id: MemoryNodeCheck, status: beacon.HealthPassing, modifyIndex: n},
	}
	if m.changed != nil {
		close(m.changed)
	}
	m.changed = make(chan struct{})
}

// FailNext makes the next call of op return err (wrapped with the
// operation, so errors.Is and errors.As find it); OpAll: the next call of
// any operation. Several calls queue several failures, used in order. err
// is typically beacon.ErrUnavailable, or a *beacon.StatusError as a real
// backend returns for a non-2xx answer.
func (m *Memory) FailNext(op Op, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failNext[op] = append(m.failNext[op], err)
}

// Fail makes every call of op (OpAll: of every operation) return err until
// Fail(op, nil). Queued FailNext errors are used first.
func (m *Memory) Fail(op Op, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		delete(m.fail, op)
		return
	}
	m.fail[op] = err
}

// SetFault installs f, consulted on every call after FailNext and Fail;
// nil removes it.
func (m *Memory) SetFault(f Fault) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fault = f
}

// Pause makes every call made from now on hang as on a paused agent (a
// blocking query already waiting goes on waiting): it returns when Resume is called (and then proceeds), or fails
// when ctx ends (with ctx's error) or when the timeout set by
// SetCallTimeout passes (with beacon.ErrUnavailable, as a backend's own
// deadline does).
func (m *Memory) Pause() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.paused == nil {
		m.paused = make(chan struct{})
	}
}

// Resume ends a Pause: hung calls proceed.
func (m *Memory) Resume() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.paused != nil {
		close(m.paused)
		m.paused = nil
	}
}

// SetCallTimeout bounds how long a call hangs while paused, as
// consul.Config.Timeout bounds a real backend's request; zero (the
// default) lets it hang until its context ends.
func (m *Memory) SetCallTimeout(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.timeout = d
}

// SetACLs sets what ProbeACLs answers (beacon.ACLsDisabled by default).
func (m *Memory) SetACLs(a beacon.ACLs) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.acls = a
}

// Index returns the agent's current index.
func (m *Memory) Index() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.index
}

// SetIndex sets the agent's index, and every service's and the checks'
// index, to n: lower than before is how an agent reset looks to a
// watcher. Blocked queries are woken; those whose WaitIndex is still not
// passed keep waiting, as Consul's do, until WaitTime ends and they
// return the lower index. n must be at least 1.
func (m *Memory) SetIndex(n uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n = max(n, 1)
	m.index, m.base, m.checkIdx = n, n, n
	for s := range m.svcIndex {
		m.svcIndex[s] = n
	}
	m.wake()
}

// Restart empties the agent as a restarted dev agent: every instance and
// check is gone and the index starts again at 1. Calls in flight fail with
// beacon.ErrUnavailable, as their connections would.
func (m *Memory) Restart() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	m.reset(1)
}

// SetHealth sets the status of any check, HTTP, TCP and the node check
// (MemoryNodeCheck) included, as the agent running it would. An unknown
// check is beacon.ErrNotFound.
func (m *Memory) SetHealth(checkID string, status beacon.Health) error {
	if !status.Valid() {
		return fmt.Errorf("registrytest: set health %q: %q is not a status", checkID, status)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.checks[checkID]
	if !ok {
		return fmt.Errorf("registrytest: set health %q: %w", checkID, beacon.ErrNotFound)
	}
	m.setStatus(c, status, c.output)
	return nil
}

// Calls returns how many calls of op (OpAll: of any operation) reached the
// agent, failed ones included; calls refused by validation never did.
func (m *Memory) Calls(op Op) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if op == OpAll {
		n := 0
		for _, c := range m.calls {
			n += c
		}
		return n
	}
	return m.calls[op]
}

// begin counts a call and applies the injected faults and a pause. It
// returns the agent generation the call runs in.
func (m *Memory) begin(ctx context.Context, op Op, arg string) (uint64, error) {
	m.mu.Lock()
	m.calls[op]++
	var err error
	if q := m.failNext[op]; len(q) > 0 {
		err, m.failNext[op] = q[0], q[1:]
	} else if q := m.failNext[OpAll]; len(q) > 0 {
		err, m.failNext[OpAll] = q[0], q[1:]
	} else if e := m.fail[op]; e != nil {
		err = e
	} else if e := m.fail[OpAll]; e != nil {
		err = e
	}
	paused, timeout, fault, gen := m.paused, m.timeout, m.fault, m.gen
	m.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if paused != nil {
		if err := m.hang(ctx, paused, timeout); err != nil {
			return 0, err
		}
	}
	if fault != nil {
		if err := fault(ctx, op, arg); err != nil {
			return 0, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return gen, nil
}

// hang waits for Resume, ctx or the call timeout.
func (m *Memory) hang(ctx context.Context, paused <-chan struct{}, timeout time.Duration) error {
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-paused:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-expired:
		return fmt.Errorf("%w: paused agent did not answer within %v", beacon.ErrUnavailable, timeout)
	}
}

// restarted is the error of a call whose agent restarted under it.
var restarted = fmt.Errorf("%w: the agent restarted (connection reset)", beacon.ErrUnavailable)

// wake releases every blocked query. The caller holds m.mu.
func (m *Memory) wake() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// bump raises the index for a change to service (and to the checks table
// when checks is true). The caller holds m.mu.
func (m *Memory) bump(service string, checks bool) {
	m.index++
	if service != "" {
		m.svcIndex[service] = m.index
	}
	if checks {
		m.checkIdx = m.index
	}
	m.wake()
}

// setStatus changes a check's status and output; only a new status is a
// change watchers see (the agent defers syncing output-only updates). The
// caller holds m.mu.
func (m *Memory) setStatus(c *memCheck, status beacon.Health, output string) {
	c.output = output
	if c.status == status {
		return
	}
	c.status = status
	if c.serviceID == "" {
		// A node check changes the health of every instance on the node.
		m.index++
		c.modifyIndex = m.index
		m.checkIdx = m.index
		for _, s := range m.services {
			m.svcIndex[s.reg.Service] = m.index
		}
		m.wake()
		return
	}
	m.bump(c.service, true)
	c.modifyIndex = m.index
}

func statusErr(method, path string, code int, msg string) error {
	return &beacon.StatusError{Method: method, Path: path, StatusCode: code, Message: msg}
}

// Register adds or replaces an instance and its checks. A check that keeps
// its ID and kind keeps its status; a new one starts at its InitialStatus,
// or critical as Consul starts checks.
func (m *Memory) Register(ctx context.Context, r beacon.Registration) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("registrytest: register %q: %w", r.ID, err)
	}
	if _, err := m.begin(ctx, OpRegister, r.ID); err != nil {
		return fmt.Errorf("registrytest: register %q: %w", r.ID, err)
	}
	r = cloneRegistration(r)
	ids := r.CheckIDs()
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.services[r.ID]
	if old != nil && reflect.DeepEqual(old.reg, r) {
		return nil // nothing changed: Consul's catalog is already in sync
	}
	var added []*memCheck
	removed := false
	keep := make(map[string]bool, len(ids))
	for i, id := range ids {
		keep[id] = true
		c := r.Checks[i]
		if prev, ok := m.checks[id]; ok && prev.serviceID == r.ID && prev.ttl == (c.TTL != 0) {
			prev.service = r.Service
			continue
		}
		nc := &memCheck{id: id, serviceID: r.ID, service: r.Service, ttl: c.TTL != 0, status: cmp.Or(c.InitialStatus, beacon.HealthCritical)}
		m.checks[id] = nc
		added = append(added, nc)
	}
	if old != nil {
		for _, id := range old.checks {
			if !keep[id] {
				delete(m.checks, id)
				removed = true
			}
		}
	}
	m.services[r.ID] = &memService{reg: r, checks: ids}
	m.bump(r.Service, len(added) > 0 || removed)
	if old != nil && old.reg.Service != r.Service {
		m.svcIndex[old.reg.Service] = m.index // the instance left that service
	}
	for _, c := range added {
		c.modifyIndex = m.index
	}
	return nil
}

func cloneRegistration(r beacon.Registration) beacon.Registration {
	r.Tags = slices.Clone(r.Tags)
	r.Meta = maps.Clone(r.Meta)
	r.Checks = slices.Clone(r.Checks)
	r.TaggedAddresses = maps.Clone(r.TaggedAddresses)
	return r
}

// Deregister removes an instance and its checks; an unknown ID succeeds.
func (m *Memory) Deregister(ctx context.Context, id string) error {
	if err := beacon.ValidateID("ID", id); err != nil {
		return fmt.Errorf("registrytest: deregister %q: %w", id, err)
	}
	if _, err := m.begin(ctx, OpDeregister, id); err != nil {
		return fmt.Errorf("registrytest: deregister %q: %w", id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.services[id]
	if !ok {
		return nil
	}
	delete(m.services, id)
	for _, c := range s.checks {
		delete(m.checks, c)
	}
	m.bump(s.reg.Service, len(s.checks) > 0)
	return nil
}

// UpdateTTL sets a TTL check's status and output. An unknown check is a
// 404 *beacon.StatusError (beacon.ErrNotFound), a check that is not a TTL
// check a 500, as Consul answers.
func (m *Memory) UpdateTTL(ctx context.Context, checkID string, status beacon.Health, output string) error {
	if err := beacon.ValidateTTLUpdate(checkID, status, output); err != nil {
		return fmt.Errorf("registrytest: update check %q: %w", checkID, err)
	}
	if _, err := m.begin(ctx, OpUpdateTTL, checkID); err != nil {
		return fmt.Errorf("registrytest: update check %q: %w", checkID, err)
	}
	path := "/v1/agent/check/update/" + url.PathEscape(checkID)
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.checks[checkID]
	switch {
	case !ok:
		return fmt.Errorf("registrytest: update check %q: %w", checkID, statusErr("PUT", path, 404, fmt.Sprintf("Unknown check ID %q", checkID)))
	case !c.ttl:
		return fmt.Errorf("registrytest: update check %q: %w", checkID, statusErr("PUT", path, 500, fmt.Sprintf("CheckID %q does not have associated TTL", checkID)))
	}
	m.setStatus(c, status, output)
	return nil
}

// AgentService returns the instance as the agent holds it (no Node, no
// Health, Address as registered), or a 404 *beacon.StatusError
// (beacon.ErrNotFound).
func (m *Memory) AgentService(ctx context.Context, id string) (beacon.Instance, error) {
	if err := beacon.ValidateID("ID", id); err != nil {
		return beacon.Instance{}, fmt.Errorf("registrytest: agent service %q: %w", id, err)
	}
	if _, err := m.begin(ctx, OpAgentService, id); err != nil {
		return beacon.Instance{}, fmt.Errorf("registrytest: agent service %q: %w", id, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.services[id]
	if !ok {
		err := statusErr("GET", "/v1/agent/service/"+url.PathEscape(id), 404, fmt.Sprintf("unknown service ID: %s", id))
		return beacon.Instance{}, fmt.Errorf("registrytest: agent service %q: %w", id, err)
	}
	r := s.reg
	tagged, _ := beacon.CompactTaggedAddresses(r.Address, r.Port, true, r.TaggedAddresses, nil)
	return beacon.Instance{
		ID: r.ID, Service: r.Service, Address: r.Address, Port: r.Port,
		Tags: slices.Clone(r.Tags), Meta: maps.Clone(r.Meta), Weights: r.Weights,
		TaggedAddresses: tagged,
	}, nil
}

// Instances looks up instances of q.Service, sorted by ID; with
// q.WaitIndex set it blocks as Consul does (see Memory).
func (m *Memory) Instances(ctx context.Context, q beacon.Query) ([]beacon.Instance, beacon.QueryMeta, error) {
	if err := q.Validate(); err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("registrytest: instances %q: %w", q.Service, err)
	}
	gen, err := m.begin(ctx, OpInstances, q.Service)
	if err == nil {
		err = checkQuery(q.Datacenter, q.Filter, "/v1/health/service/"+url.PathEscape(q.Service))
	}
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("registrytest: instances %q: %w", q.Service, err)
	}
	var out []beacon.Instance
	meta, err := m.block(ctx, gen, q.WaitIndex, q.WaitTime, func() uint64 {
		out = m.instances(q)
		if i, ok := m.svcIndex[q.Service]; ok {
			return i
		}
		return m.base
	})
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("registrytest: instances %q: %w", q.Service, err)
	}
	return out, meta, nil
}

// checkQuery refuses what Memory cannot answer as Consul would.
func checkQuery(dc, filter, path string) error {
	if dc != "" && dc != "dc1" {
		return statusErr("GET", path, 500, "No path to datacenter")
	}
	if filter != "" {
		return errors.New("Memory cannot evaluate Consul filter expressions; test Filter against a real agent")
	}
	return nil
}

// instances answers q from the current state. The caller holds m.mu.
func (m *Memory) instances(q beacon.Query) []beacon.Instance {
	out := []beacon.Instance{}
	node := m.checks[MemoryNodeCheck].status
	for _, s := range m.services {
		r := s.reg
		if r.Service != q.Service || !hasTags(r.Tags, q.Tags) {
			continue
		}
		h := node
		for _, id := range s.checks {
			h = h.Worse(m.checks[id].status)
		}
		if h != beacon.HealthPassing && !q.IncludeUnhealthy {
			continue
		}
		addr := cmp.Or(r.Address, memoryAddress)
		tagged, _ := beacon.CompactTaggedAddresses(addr, r.Port, r.Address != "", r.TaggedAddresses, nil) // the node has none
		out = append(out, beacon.Instance{
			ID: r.ID, Service: r.Service, Node: MemoryNode,
			Address: addr, Port: r.Port,
			Tags: slices.Clone(r.Tags), Meta: maps.Clone(r.Meta), Weights: r.Weights,
			Health: h, TaggedAddresses: tagged,
		})
	}
	slices.SortFunc(out, func(a, b beacon.Instance) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func hasTags(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

// block runs answer under m.mu until the index it returns passes
// waitIndex (at once when waitIndex is 0), wait ends, ctx ends or the
// agent restarts.
func (m *Memory) block(ctx context.Context, gen, waitIndex uint64, wait time.Duration, answer func() uint64) (beacon.QueryMeta, error) {
	var expired <-chan time.Time
	if waitIndex > 0 {
		t := time.NewTimer(cmp.Or(wait, defaultWait))
		defer t.Stop()
		expired = t.C
	}
	for {
		m.mu.Lock()
		if m.gen != gen {
			m.mu.Unlock()
			return beacon.QueryMeta{}, restarted
		}
		idx := answer()
		changed := m.changed
		m.mu.Unlock()
		meta := beacon.QueryMeta{LastIndex: idx, KnownLeader: true}
		if waitIndex == 0 || idx > waitIndex {
			return meta, nil
		}
		select {
		case <-changed:
		case <-expired:
			return meta, nil
		case <-ctx.Done():
			return beacon.QueryMeta{}, ctx.Err()
		}
	}
}

// Checks lists every check, the node check included, sorted by ID; with
// q.WaitIndex set it blocks until a check is added, removed or changes
// status, or q.WaitTime ends.
func (m *Memory) Checks(ctx context.Context, q beacon.ChecksQuery) ([]beacon.CheckState, beacon.QueryMeta, error) {
	if err := q.Validate(); err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("registrytest: checks: %w", err)
	}
	gen, err := m.begin(ctx, OpChecks, "")
	if err == nil {
		err = checkQuery(q.Datacenter, "", "/v1/health/state/any")
	}
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("registrytest: checks: %w", err)
	}
	var out []beacon.CheckState
	meta, err := m.block(ctx, gen, q.WaitIndex, q.WaitTime, func() uint64 {
		out = make([]beacon.CheckState, 0, len(m.checks))
		for _, c := range m.checks {
			out = append(out, beacon.CheckState{
				Node: MemoryNode, CheckID: c.id, ServiceID: c.serviceID, ServiceName: c.service,
				Status: c.status, ModifyIndex: c.modifyIndex,
			})
		}
		slices.SortFunc(out, func(a, b beacon.CheckState) int { return cmp.Compare(a.CheckID, b.CheckID) })
		return m.checkIdx
	})
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("registrytest: checks: %w", err)
	}
	return out, meta, nil
}

// ProbeACLs answers what SetACLs set.
func (m *Memory) ProbeACLs(ctx context.Context) (beacon.ACLs, error) {
	if _, err := m.begin(ctx, OpProbeACLs, ""); err != nil {
		return beacon.ACLsUnknown, fmt.Errorf("registrytest: probe ACLs: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.acls, nil
}

// Agents stands regs in for as many agents: it returns a Config with one
// made-up loopback address per registry (nothing is dialled) and a
// consul.Backend that hands each address its registry, for
// keeper.WithBackend and discovery.WithBackend. Set the Config's other
// fields (Timeout, MaxConns) as a test needs.
func Agents(regs ...beacon.Registry) (consul.Config, consul.Backend) {
	var cfg consul.Config
	for i := range regs {
		cfg.Addresses = append(cfg.Addresses, fmt.Sprintf("127.0.0.1:%d", 18500+i))
	}
	addrs := slices.Clone(cfg.Addresses)
	return cfg, func(c consul.Config) (beacon.Registry, error) {
		if len(c.Addresses) == 1 {
			if i := slices.Index(addrs, c.Addresses[0]); i >= 0 {
				return regs[i], nil
			}
		}
		return nil, fmt.Errorf("registrytest: no in-memory agent at %v", c.Addresses)
	}
}
