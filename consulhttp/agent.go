package consulhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/beaconsd/beacon"
)

// The agent API's JSON shapes, with Consul's field names.
type serviceDef struct {
	ID      string
	Name    string
	Tags    []string          `json:",omitempty"`
	Address string            `json:",omitempty"`
	Port    int               `json:",omitempty"`
	Meta    map[string]string `json:",omitempty"`
	Weights *weightsJSON      `json:",omitempty"`
	Checks  []checkDef        `json:",omitempty"`
	// TaggedAddresses: beacon.ServiceAddress has Consul's field names.
	TaggedAddresses map[string]beacon.ServiceAddress `json:",omitempty"`
}

type weightsJSON struct {
	Passing int
	Warning int
}

// checkDef is one check. H2PingUseTLS is sent whenever H2PING is, false
// included: Consul reads a missing one as true.
type checkDef struct {
	CheckID                        string `json:",omitempty"`
	Name                           string `json:",omitempty"`
	HTTP                           string `json:",omitempty"`
	TCP                            string `json:",omitempty"`
	TTL                            string `json:",omitempty"`
	GRPC                           string `json:",omitempty"`
	GRPCUseTLS                     bool   `json:",omitempty"`
	H2PING                         string `json:",omitempty"`
	H2PingUseTLS                   *bool  `json:",omitempty"`
	AliasService                   string `json:",omitempty"`
	AliasNode                      string `json:",omitempty"`
	TLSServerName                  string `json:",omitempty"`
	TLSSkipVerify                  bool   `json:",omitempty"`
	Interval                       string `json:",omitempty"`
	Timeout                        string `json:",omitempty"`
	DeregisterCriticalServiceAfter string `json:",omitempty"`
	Status                         string `json:",omitempty"`
	Notes                          string `json:",omitempty"`
}

// dur renders a duration as Consul parses it; zero means "not set".
func dur(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func toServiceDef(r beacon.Registration) serviceDef {
	def := serviceDef{ID: r.ID, Name: r.Service, Tags: r.Tags, Address: r.Address, Port: r.Port, Meta: r.Meta, TaggedAddresses: r.TaggedAddresses}
	if r.Weights != (beacon.Weights{}) {
		def.Weights = &weightsJSON{Passing: r.Weights.Passing, Warning: r.Weights.Warning}
	}
	ids := r.CheckIDs()
	for i, c := range r.Checks {
		var h2TLS *bool
		if c.H2PING != "" {
			h2TLS = &c.H2PingUseTLS
		}
		def.Checks = append(def.Checks, checkDef{
			CheckID:                        ids[i],
			Name:                           r.CheckName(i),
			HTTP:                           c.HTTP,
			TCP:                            c.TCP,
			TTL:                            dur(c.TTL),
			GRPC:                           c.GRPC,
			GRPCUseTLS:                     c.GRPCUseTLS,
			H2PING:                         c.H2PING,
			H2PingUseTLS:                   h2TLS,
			AliasService:                   c.AliasService,
			AliasNode:                      c.AliasNode,
			TLSServerName:                  c.TLSServerName,
			TLSSkipVerify:                  c.TLSSkipVerify,
			Interval:                       dur(c.Interval),
			Timeout:                        dur(c.Timeout),
			DeregisterCriticalServiceAfter: dur(c.DeregisterCriticalAfter),
			Status:                         string(c.InitialStatus),
			Notes:                          c.Notes,
		})
	}
	return def
}

// Register adds or replaces r on the agent (PUT /v1/agent/service/register).
// Checks the registration no longer lists are removed.
func (c *Client) Register(ctx context.Context, r beacon.Registration) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("consulhttp: register %q: %w", r.ID, err)
	}
	req := c.newRequest(http.MethodPut, "/v1/agent/service/register")
	req.query.Set("replace-existing-checks", "true")
	req.body = toServiceDef(r)
	if err := c.send(ctx, req); err != nil {
		return fmt.Errorf("consulhttp: register %q: %w", r.ID, err)
	}
	return nil
}

// Deregister removes the instance with this ID from the agent
// (PUT /v1/agent/service/deregister/:id). An ID the agent does not know is
// not an error: the goal, its absence, is met.
func (c *Client) Deregister(ctx context.Context, id string) error {
	if err := beacon.ValidateID("ID", id); err != nil {
		return fmt.Errorf("consulhttp: deregister %q: %w", id, err)
	}
	req := c.newRequest(http.MethodPut, "/v1/agent/service/deregister/"+url.PathEscape(id))
	err := c.send(ctx, req)
	if err != nil && !errors.Is(err, beacon.ErrNotFound) {
		return fmt.Errorf("consulhttp: deregister %q: %w", id, err)
	}
	return nil
}

// UpdateTTL sets a TTL check's status and output
// (PUT /v1/agent/check/update/:id). An unknown check is beacon.ErrNotFound,
// which is how a keeper learns the agent lost its registration.
func (c *Client) UpdateTTL(ctx context.Context, checkID string, status beacon.Health, output string) error {
	if err := beacon.ValidateTTLUpdate(checkID, status, output); err != nil {
		return fmt.Errorf("consulhttp: update check %q: %w", checkID, err)
	}
	req := c.newRequest(http.MethodPut, "/v1/agent/check/update/"+url.PathEscape(checkID))
	req.body = struct{ Status, Output string }{string(status), output}
	if err := c.send(ctx, req); err != nil {
		return fmt.Errorf("consulhttp: update check %q: %w", checkID, err)
	}
	return nil
}

// agentService is the answer of GET /v1/agent/service/:id.
type agentService struct {
	ID      string
	Service string
	Tags    []string
	Address string
	Port    int
	Meta    map[string]string
	Weights weightsJSON
	// TaggedAddresses: beacon.ServiceAddress has Consul's field names.
	TaggedAddresses map[string]beacon.ServiceAddress
}

// AgentService returns the instance as the agent holds it
// (GET /v1/agent/service/:id), or beacon.ErrNotFound.
func (c *Client) AgentService(ctx context.Context, id string) (beacon.Instance, error) {
	if err := beacon.ValidateID("ID", id); err != nil {
		return beacon.Instance{}, fmt.Errorf("consulhttp: agent service %q: %w", id, err)
	}
	resp, err := c.do(ctx, c.newRequest(http.MethodGet, "/v1/agent/service/"+url.PathEscape(id)))
	if err != nil {
		return beacon.Instance{}, fmt.Errorf("consulhttp: agent service %q: %w", id, err)
	}
	defer drainClose(resp.Body)
	in, err := decodeAgentService(resp.Body)
	if err != nil {
		return beacon.Instance{}, fmt.Errorf("consulhttp: agent service %q: %w", id, err)
	}
	return in, nil
}

var _ beacon.AgentServiceWatcher = (*Client)(nil)

// WatchAgentService is AgentService as a blocking query on the copy's
// content hash (GET /v1/agent/service/:id?hash=&wait=, the X-Consul-ContentHash
// header): it returns once the copy's hash differs from hash, when wait
// passes, or when the agent goes away (beacon.ErrUnavailable).
func (c *Client) WatchAgentService(ctx context.Context, id, hash string, wait time.Duration) (beacon.Instance, string, error) {
	if err := beacon.ValidateID("ID", id); err != nil {
		return beacon.Instance{}, "", fmt.Errorf("consulhttp: watch agent service %q: %w", id, err)
	}
	req := c.newRequest(http.MethodGet, "/v1/agent/service/"+url.PathEscape(id))
	if hash != "" {
		req.query.Set("hash", hash)
		if wait > 0 {
			// Round up: "0ms" would make Consul wait its default 5 minutes.
			req.query.Set("wait", strconv.FormatInt(int64((wait+time.Millisecond-1)/time.Millisecond), 10)+"ms")
		}
		req.timeout = c.cfg.BlockingTimeout(wait)
	}
	resp, err := c.do(ctx, req)
	if err != nil {
		return beacon.Instance{}, "", fmt.Errorf("consulhttp: watch agent service %q: %w", id, err)
	}
	defer drainClose(resp.Body)
	in, err := decodeAgentService(resp.Body)
	if err != nil {
		return beacon.Instance{}, "", fmt.Errorf("consulhttp: watch agent service %q: %w", id, err)
	}
	h := resp.Header.Get("X-Consul-ContentHash")
	if h == "" {
		return beacon.Instance{}, "", fmt.Errorf("consulhttp: watch agent service %q: %w: no X-Consul-ContentHash header", id, beacon.ErrMalformedResponse)
	}
	return in, h, nil
}

// decodeAgentService turns a GET /v1/agent/service/:id answer into an
// instance. Every malformed answer, one without an ID included, is an
// error wrapping beacon.ErrMalformedResponse.
func decodeAgentService(body io.Reader) (beacon.Instance, error) {
	var s agentService
	if err := decodeJSON(body, &s); err != nil {
		return beacon.Instance{}, err
	}
	if s.ID == "" {
		return beacon.Instance{}, fmt.Errorf("%w: no ID in the answer", beacon.ErrMalformedResponse)
	}
	tagged, _ := beacon.CompactTaggedAddresses(s.Address, s.Port, true, s.TaggedAddresses, nil)
	return beacon.Instance{
		ID: s.ID, Service: s.Service, Address: s.Address, Port: s.Port, Tags: s.Tags, Meta: s.Meta,
		Weights:         beacon.Weights{Passing: s.Weights.Passing, Warning: s.Weights.Warning},
		TaggedAddresses: tagged,
	}, nil
}
