package consultest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// federationReadyTimeout bounds how long NewFederation and StartServers
// wait for every datacenter to reach every other one over the WAN.
const federationReadyTimeout = 60 * time.Second

// FederationSpec describes the datacenters of NewFederation. The first is
// the primary datacenter.
type FederationSpec struct {
	Datacenters []DatacenterSpec
}

// DatacenterSpec is one datacenter of a federation: a Cluster of Servers
// servers and Clients client agents named Name. Options apply to its every
// node as they do for NewCluster (WithNodeName defaults to Name);
// WithConfigJSON is merged under the federation's own keys (datacenter,
// primary_datacenter, gossip_wan, retry_interval_wan). WithTLS and WithACL
// are refused: each Cluster would have its own CA and management token,
// which a WAN federation cannot share.
type DatacenterSpec struct {
	Name    string
	Servers int
	Clients int
	Options []Option
}

// Federation is datacenters of Consul agents on loopback, WAN-joined.
type Federation struct {
	names []string
	dcs   map[string]*Cluster
}

// NewFederation starts the datacenters of spec, all at once, each a
// Cluster as NewCluster starts it (its nodes on loopback IPs of their own),
// with every server's serf WAN port joined to every other datacenter's
// servers. Each server keeps -retry-join-wan naming those servers, so one
// restarted later rejoins by itself. It returns once, through every
// datacenter, /v1/catalog/datacenters lists all of them and a catalog read
// with ?dc= of each of the others succeeds. WAN gossip is tuned like the
// clusters' LAN gossip (probe_interval 200ms, probe_timeout 100ms,
// suspicion_mult 3), so a killed datacenter's servers are failed in a
// second or two.
//
// It skips or fails the test as NewCluster does, and fails it if the
// federation is not ready within 60 seconds. Every agent is killed and its
// directory removed when the test ends.
func NewFederation(t testing.TB, spec FederationSpec) *Federation {
	t.Helper()
	f, err := newFederation(t, spec)
	if err != nil {
		abort(t, err)
	}
	return f
}

func newFederation(t testing.TB, spec FederationSpec) (*Federation, error) {
	if len(spec.Datacenters) < 2 {
		return nil, fmt.Errorf("consultest: NewFederation: %d datacenters, need two or more", len(spec.Datacenters))
	}
	f := &Federation{dcs: map[string]*Cluster{}}
	primary := spec.Datacenters[0].Name
	opts := make([][]Option, len(spec.Datacenters))
	for i, d := range spec.Datacenters {
		if d.Name == "" || f.dcs[d.Name] != nil || slices.Contains(f.names, d.Name) {
			return nil, fmt.Errorf("consultest: NewFederation: datacenter name %q empty or repeated", d.Name)
		}
		f.names = append(f.names, d.Name)
		o, err := federatedOptions(d, primary)
		if err != nil {
			return nil, err
		}
		opts[i] = o
	}

	// The clusters start in parallel: each waits mostly for its own raft
	// election. newCluster, not NewCluster: t.Fatal belongs to the test's
	// goroutine.
	clusters := make([]*Cluster, len(spec.Datacenters))
	errs := make([]error, len(spec.Datacenters))
	var wg sync.WaitGroup
	for i, d := range spec.Datacenters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clusters[i], errs[i] = newCluster(t.Logf, d.Servers, d.Clients, opts[i]...)
		}()
	}
	wg.Wait()
	for i, c := range clusters {
		if errs[i] == nil {
			f.dcs[f.names[i]] = c
		}
	}
	t.Cleanup(func() {
		for _, c := range f.dcs {
			for _, n := range c.Nodes() {
				n.release(t)
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	// Every server learns the other datacenters' servers for later
	// restarts, then joins them now. The args slice is shared between a
	// cluster's nodes (copied options), hence the clone.
	for _, name := range f.names {
		var others []string
		for _, other := range f.names {
			if other != name {
				for _, s := range f.dcs[other].Servers {
					others = append(others, s.SerfWANAddr())
				}
			}
		}
		for _, s := range f.dcs[name].Servers {
			s.mu.Lock()
			args := slices.Clone(s.opts.args)
			for _, a := range others {
				args = append(args, "-retry-join-wan", a)
			}
			s.opts.args = args
			s.mu.Unlock()
			for _, a := range others {
				if err := s.joinWAN(a); err != nil {
					return nil, fmt.Errorf("consultest: NewFederation: %w", err)
				}
			}
		}
	}
	if err := f.waitConnected(time.Now().Add(federationReadyTimeout), ""); err != nil {
		return nil, fmt.Errorf("consultest: NewFederation: not federated after %v: %w", federationReadyTimeout, err)
	}
	return f, nil
}

// federatedOptions returns d's options with the federation's configuration
// merged over any WithConfigJSON among them.
func federatedOptions(d DatacenterSpec, primary string) ([]Option, error) {
	o := options{name: d.Name}
	for _, opt := range d.Options {
		opt(&o)
	}
	if o.tls || o.acl {
		return nil, fmt.Errorf("consultest: NewFederation: datacenter %s: WithTLS and WithACL are not supported in a federation", d.Name)
	}
	cfg := map[string]any{}
	if o.extraJSON != "" {
		if err := json.Unmarshal([]byte(o.extraJSON), &cfg); err != nil {
			return nil, fmt.Errorf("consultest: NewFederation: datacenter %s: WithConfigJSON: %w", d.Name, err)
		}
	}
	cfg["datacenter"] = d.Name
	cfg["primary_datacenter"] = primary
	// The default WAN retry interval is 30s: one early miss would stall
	// a restarted server that long.
	cfg["retry_interval_wan"] = "500ms"
	cfg["gossip_wan"] = map[string]any{"probe_interval": "200ms", "probe_timeout": "100ms", "suspicion_mult": 3}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return append([]Option{WithNodeName(d.Name)}, append(slices.Clone(d.Options), WithConfigJSON(string(b)))...), nil
}

// Names returns the datacenters' names, the primary first.
func (f *Federation) Names() []string { return slices.Clone(f.names) }

// DC returns the named datacenter's Cluster (nil if there is none): its
// Leader, Config, nodes' Kill and Restart work as they do for NewCluster.
func (f *Federation) DC(name string) *Cluster { return f.dcs[name] }

// KillServers kills every server of the named datacenter (SIGKILL, no
// leave): its client agents stay up, and other datacenters' servers see its
// servers fail over the WAN.
func (f *Federation) KillServers(t testing.TB, name string) {
	t.Helper()
	c := f.mustDC(t, name)
	for _, s := range c.Servers {
		s.Kill()
	}
}

// StartServers restarts every server of the named datacenter with its data
// (RestartNoWait each, so that several wait for no quorum one by one), then
// waits until the datacenter has a leader, and it and every other
// datacenter with a server running reach each other again, as
// NewFederation checks; it fails the test if that takes more than 60
// seconds. Servers that run are restarted too.
func (f *Federation) StartServers(t testing.TB, name string) {
	t.Helper()
	c := f.mustDC(t, name)
	for _, s := range c.Servers {
		s.RestartNoWait(t, true)
	}
	deadline := time.Now().Add(federationReadyTimeout)
	for {
		_, err := c.leader()
		if err == nil {
			err = f.connected(name)
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consultest: datacenter %s not back in the federation after %v: %v", name, federationReadyTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

func (f *Federation) mustDC(t testing.TB, name string) *Cluster {
	t.Helper()
	c := f.dcs[name]
	if c == nil {
		t.Fatalf("consultest: no datacenter %q in the federation (have %q)", name, f.names)
	}
	return c
}

// waitConnected polls connected(only) until it holds or the deadline
// passes.
func (f *Federation) waitConnected(deadline time.Time, only string) error {
	for {
		err := f.connected(only)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(pollInterval)
	}
}

// connected reports whether, through the first answering node of every
// datacenter (a client if it has any), /v1/catalog/datacenters lists all
// datacenters and /v1/catalog/nodes?dc= of each other one answers. With
// only set, it asks only of the pairs that include that datacenter, and
// skips datacenters whose servers are all down.
func (f *Federation) connected(only string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	down := func(name string) bool {
		return only != "" && !slices.ContainsFunc(f.dcs[name].Servers, (*Node).answering)
	}
	var errs []error
	for _, name := range f.names {
		if down(name) {
			continue
		}
		c := f.dcs[name]
		nodes := append(slices.Clone(c.Clients), c.Servers...)
		i := slices.IndexFunc(nodes, (*Node).answering)
		if i < 0 {
			errs = append(errs, fmt.Errorf("%s: no agent answering", name))
			continue
		}
		n := nodes[i]
		var dcs []string
		if err := n.getJSON(ctx, "/v1/catalog/datacenters", &dcs); err != nil {
			errs = append(errs, fmt.Errorf("%s via %s: %w", name, n.Name, err))
			continue
		}
		for _, other := range f.names {
			if !slices.Contains(dcs, other) {
				errs = append(errs, fmt.Errorf("%s via %s: /v1/catalog/datacenters = %q, no %s", name, n.Name, dcs, other))
				continue
			}
			if other == name || down(other) || (only != "" && name != only && other != only) {
				continue
			}
			var nodes []json.RawMessage
			if err := n.getJSON(ctx, "/v1/catalog/nodes?dc="+url.QueryEscape(other), &nodes); err != nil {
				errs = append(errs, fmt.Errorf("%s via %s: dc=%s: %w", name, n.Name, other, err))
			}
		}
	}
	return errors.Join(errs...)
}

// SerfWANAddr returns "ip:port" of the node's serf WAN port (servers only
// listen on it).
func (n *Node) SerfWANAddr() string { return net.JoinHostPort(n.IP, strconv.Itoa(n.ports.SerfWAN)) }

// joinWAN asks the server to join addr's WAN pool (PUT /v1/agent/join?wan=1).
func (n *Node) joinWAN(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, n.URL()+"/v1/agent/join/"+addr+"?wan=1", nil)
	if err != nil {
		return err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: WAN join %s: %w", n.Name, addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: WAN join %s: %s: %s", n.Name, addr, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
