package consultest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// maxTxnOps is the most operations Consul 1.14 accepts in one /v1/txn
// request (agent/txn_endpoint.go: maxTxnOps = 128; more is a 413).
const maxTxnOps = 128

// opsPerInstance: an instance is a node, its service and its check.
const opsPerInstance = 3

// Fleet describes the synthetic services Populate writes: Services
// services named Prefix+"0", Prefix+"1", ..., of Instances instances each.
// Every instance sits on a node of its own (an external node, as
// consul-esm would watch), with a loopback address of its own, one
// passing check, Tags and Meta.
type Fleet struct {
	Services  int               // how many services; at least 1
	Instances int               // instances per service; at least 1
	Prefix    string            // service name prefix; "fleet" when empty
	Tags      []string          // every instance's tags
	Meta      map[string]string // every instance's service meta
	// Concurrency is how many transactions are in flight at once while
	// loading; 4 when 0. The servers apply them one raft entry each, so
	// more than a few only queue.
	Concurrency int
}

// Population is a Fleet written into an agent's catalog by Populate. Its
// methods are safe for concurrent use.
type Population struct {
	// Loaded is how long Populate took to write the whole fleet.
	Loaded time.Duration

	srv    *Server
	fleet  Fleet
	client *http.Client

	mu       sync.Mutex
	live     [][]*member // live[s]: service s's instances
	next     int         // the next instance number, for IDs and addresses
	stops    []context.CancelFunc
	churners sync.WaitGroup
}

// member is one synthetic instance.
type member struct {
	id, node, service string
	passing           bool
}

// Populate writes f into srv's catalog through /v1/txn (up to 42
// instances a transaction: node, service and check; Concurrency of them in
// flight) and returns once every instance is written. The servers write
// synthetic nodes directly, so the agent's anti-entropy never sees them:
// 100,000 instances load in seconds where /v1/agent/service/register
// takes minutes for 10,000. The instances are served by
// /v1/health/service like any other. Errors fail the test. Churners still
// running when the test ends are stopped by its cleanup.
func Populate(t testing.TB, srv *Server, f Fleet) *Population {
	t.Helper()
	p, err := populate(srv, f)
	if err != nil {
		t.Fatalf("consultest.Populate: %v", err)
	}
	t.Cleanup(p.wait)
	return p
}

func populate(srv *Server, f Fleet) (*Population, error) {
	if f.Services < 1 || f.Instances < 1 {
		return nil, fmt.Errorf("fleet of %d services × %d instances: both must be at least 1", f.Services, f.Instances)
	}
	if f.Prefix == "" {
		f.Prefix = "fleet"
	}
	if f.Concurrency <= 0 {
		f.Concurrency = 4
	}
	// A client of its own: the shared one keeps too few idle connections
	// for Concurrency writers (or none, with TLS).
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: f.Concurrency}
	if srv.pki != nil {
		tc, err := srv.pki.clientTLS()
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	p := &Population{srv: srv, fleet: f, client: &http.Client{Timeout: 60 * time.Second, Transport: tr}}
	p.live = make([][]*member, f.Services)
	var all []*member
	for s := range f.Services {
		for range f.Instances {
			m := p.newMember(s)
			p.live[s] = append(p.live[s], m)
			all = append(all, m)
		}
	}

	start := time.Now()
	batch := maxTxnOps / opsPerInstance
	jobs := make(chan []*member)
	errc := make(chan error, f.Concurrency)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for range f.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ms := range jobs {
				ops := make([]txnOp, 0, len(ms)*opsPerInstance)
				for _, m := range ms {
					ops = append(ops, p.registerOps(m)...)
				}
				if err := p.txn(ctx, ops); err != nil {
					errc <- err
					cancel()
					return
				}
			}
		}()
	}
send:
	for i := 0; i < len(all); i += batch {
		select {
		case jobs <- all[i:min(i+batch, len(all))]:
		case <-ctx.Done():
			break send
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	p.Loaded = time.Since(start)
	// The load's keep-alives would count as connections to the agent in
	// whatever the test measures next.
	p.client.CloseIdleConnections()
	return p, nil
}

// newMember makes instance number p.next of service s; the caller holds
// p.mu or owns p.
func (p *Population) newMember(s int) *member {
	n := p.next
	p.next++
	svc := p.fleet.Prefix + strconv.Itoa(s)
	id := svc + "-" + strconv.Itoa(n)
	return &member{id: id, node: "node-" + id, service: svc, passing: true}
}

// Services returns the fleet's service names.
func (p *Population) Services() []string {
	out := make([]string, p.fleet.Services)
	for i := range out {
		out[i] = p.fleet.Prefix + strconv.Itoa(i)
	}
	return out
}

// Instances returns how many instances service i (0 ≤ i < Services) has
// now, passing or not.
func (p *Population) Instances(i int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.live[i])
}

// Passing returns how many of service i's instances are passing now.
func (p *Population) Passing(i int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.live[i] {
		if m.passing {
			n++
		}
	}
	return n
}

// address gives instance n a loopback address of its own (127.0.0.1 up):
// discovery counts one entry per address and port.
func address(n int) string {
	n++
	return fmt.Sprintf("127.%d.%d.%d", n>>16&255, n>>8&255, n&255)
}

// txnOp is one /v1/txn operation, in the API's JSON shape.
type txnOp struct {
	Node    *txnNode    `json:",omitempty"`
	Service *txnService `json:",omitempty"`
	Check   *txnCheck   `json:",omitempty"`
}

type txnNode struct {
	Verb string
	Node struct {
		Node    string
		Address string            `json:",omitempty"`
		Meta    map[string]string `json:",omitempty"`
	}
}

type txnService struct {
	Verb    string
	Node    string
	Service struct {
		ID      string
		Service string
		Address string
		Port    int
		Tags    []string          `json:",omitempty"`
		Meta    map[string]string `json:",omitempty"`
		Weights struct{ Passing, Warning int }
	}
}

type txnCheck struct {
	Verb  string
	Check struct {
		Node        string
		CheckID     string
		Name        string
		Status      string
		ServiceID   string
		ServiceName string
	}
}

// externalMeta marks a node as external, as consul-esm's convention has it.
var externalMeta = map[string]string{"external-node": "true", "external-probe": "false"}

func (p *Population) registerOps(m *member) []txnOp {
	n, _ := strconv.Atoi(m.id[len(m.service)+1:])
	node := &txnNode{Verb: "set"}
	node.Node.Node = m.node
	node.Node.Address = address(n)
	node.Node.Meta = externalMeta
	svc := &txnService{Verb: "set", Node: m.node}
	svc.Service.ID = m.id
	svc.Service.Service = m.service
	svc.Service.Address = node.Node.Address
	svc.Service.Port = 20000 + n%40000
	svc.Service.Tags = p.fleet.Tags
	svc.Service.Meta = p.fleet.Meta
	svc.Service.Weights.Passing, svc.Service.Weights.Warning = 1, 1
	return []txnOp{{Node: node}, {Service: svc}, {Check: p.checkOp(m)}}
}

func (p *Population) checkOp(m *member) *txnCheck {
	c := &txnCheck{Verb: "set"}
	c.Check.Node = m.node
	c.Check.CheckID = "service:" + m.id
	c.Check.Name = "synthetic"
	c.Check.Status = "critical"
	if m.passing {
		c.Check.Status = "passing"
	}
	c.Check.ServiceID = m.id
	c.Check.ServiceName = m.service
	return c
}

// txn sends ops as one transaction.
func (p *Population) txn(ctx context.Context, ops []txnOp) error {
	body, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, p.srv.URL()+"/v1/txn", bytes.NewReader(body))
	if err != nil {
		return err
	}
	if p.srv.mgmtToken != "" {
		req.Header.Set("X-Consul-Token", p.srv.mgmtToken)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("txn of %d ops: %w", len(ops), err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("txn of %d ops: %s: %s", len(ops), resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// Change is a kind of change Churn makes.
type Change int

const (
	// FlipHealth turns a passing instance critical or a critical one
	// passing.
	FlipHealth Change = iota + 1
	// AddInstance registers a new, passing instance of a service.
	AddInstance
	// RemoveInstance deregisters an instance (its node, service and check).
	// A service's last instance is never removed.
	RemoveInstance
)

func (c Change) String() string {
	switch c {
	case FlipHealth:
		return "flip-health"
	case AddInstance:
		return "add"
	case RemoveInstance:
		return "remove"
	}
	return "Change(" + strconv.Itoa(int(c)) + ")"
}

// ChurnStats counts what a Churn did.
type ChurnStats struct {
	Changes int            // changes written
	ByKind  map[Change]int // changes written, by kind
	Elapsed time.Duration  // from the first change to the end
}

// Churner is a running Churn.
type Churner struct {
	cancel context.CancelFunc
	done   chan struct{}
	stats  ChurnStats
	err    error
}

// Wait blocks until the churn ends (its duration passed, its context was
// cancelled, Stop, or an error) and returns what it did. The error is the
// first write that failed; a cancelled context is not an error.
func (c *Churner) Wait() (ChurnStats, error) {
	<-c.done
	return c.stats, c.err
}

// Stop ends the churn and waits for it; safe to call more than once.
func (c *Churner) Stop() (ChurnStats, error) {
	c.cancel()
	return c.Wait()
}

// Churn starts changing the fleet in the background: rate changes a second
// (one write each, evenly spaced), for at most dur, at most ceil(rate×dur)
// changes, each of a kind picked at random from kinds (FlipHealth when
// none) on a random service. It stops by itself, when ctx is done, at Stop,
// at the first failed write, or at the end of the test that populated p.
func (p *Population) Churn(ctx context.Context, rate float64, dur time.Duration, kinds ...Change) (*Churner, error) {
	if rate <= 0 || dur <= 0 {
		return nil, fmt.Errorf("consultest: churn at %v/s for %v: both must be positive", rate, dur)
	}
	if len(kinds) == 0 {
		kinds = []Change{FlipHealth}
	}
	for _, k := range kinds {
		if k < FlipHealth || k > RemoveInstance {
			return nil, fmt.Errorf("consultest: churn: unknown %v", k)
		}
	}
	limit := int(rate*dur.Seconds() + 0.999999)
	ctx, cancel := context.WithTimeout(ctx, dur)
	c := &Churner{cancel: cancel, done: make(chan struct{}), stats: ChurnStats{ByKind: map[Change]int{}}}
	p.mu.Lock()
	p.churners.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.churners.Done()
		defer close(c.done)
		defer cancel()
		every := time.Duration(float64(time.Second) / rate)
		start := time.Now()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for c.stats.Changes < limit {
			k := kinds[rand.IntN(len(kinds))]
			if err := p.change(ctx, k); err != nil {
				if ctx.Err() == nil {
					c.err = err
				}
				break
			}
			c.stats.Changes++
			c.stats.ByKind[k]++
			select {
			case <-ctx.Done():
			case <-tick.C:
				continue
			}
			break
		}
		c.stats.Elapsed = time.Since(start)
		// As after the load: no keep-alive outlives the churn.
		p.client.CloseIdleConnections()
	}()
	p.registerChurner(c)
	return c, nil
}

// registerChurner remembers c so that the test's cleanup stops it.
func (p *Population) registerChurner(c *Churner) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stops = append(p.stops, c.cancel)
}

// wait stops every churner and waits for them: the test's cleanup.
func (p *Population) wait() {
	p.mu.Lock()
	stops := p.stops
	p.stops = nil
	p.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	p.churners.Wait()
	p.client.CloseIdleConnections()
}

// change makes one change of kind k on a random service. The state is
// updated only once the write succeeded.
func (p *Population) change(ctx context.Context, k Change) error {
	p.mu.Lock()
	s := rand.IntN(len(p.live))
	var ops []txnOp
	var commit func()
	switch k {
	case FlipHealth:
		m := p.live[s][rand.IntN(len(p.live[s]))]
		flipped := *m
		flipped.passing = !m.passing
		ops = []txnOp{{Check: p.checkOp(&flipped)}}
		commit = func() { m.passing = flipped.passing }
	case AddInstance:
		m := p.newMember(s)
		ops = p.registerOps(m)
		commit = func() { p.live[s] = append(p.live[s], m) }
	case RemoveInstance:
		if len(p.live[s]) < 2 {
			// Flip instead, so the rate holds.
			p.mu.Unlock()
			return p.change(ctx, FlipHealth)
		}
		i := rand.IntN(len(p.live[s]))
		m := p.live[s][i]
		node := &txnNode{Verb: "delete"}
		node.Node.Node = m.node
		ops = []txnOp{{Node: node}}
		commit = func() {
			// By identity: another change may have moved it.
			for j, x := range p.live[s] {
				if x == m {
					p.live[s] = append(p.live[s][:j], p.live[s][j+1:]...)
					return
				}
			}
		}
	}
	p.mu.Unlock()
	// A write once sent is not cancelled (the client's timeout bounds it):
	// one cancelled after the servers applied it would leave the record
	// wrong.
	if err := p.txn(context.WithoutCancel(ctx), ops); err != nil {
		return fmt.Errorf("churn %v: %w", k, err)
	}
	p.mu.Lock()
	commit()
	p.mu.Unlock()
	return nil
}
