package consulhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/beaconsd/beacon"
)

// The calls below answer an operator's questions about an agent (what
// `beacon doctor` asks); services do not need them.

// ErrACLDisabled is returned by TokenSelf when the agent has ACLs turned off.
var ErrACLDisabled = errors.New("consulhttp: ACLs are disabled on the agent")

// Leader returns the address of the Raft leader the agent knows, or "" when
// it knows none (GET /v1/status/leader). The endpoint needs no ACL token.
func (c *Client) Leader(ctx context.Context) (string, error) {
	resp, err := c.do(ctx, c.newRequest(http.MethodGet, "/v1/status/leader"))
	if err != nil {
		return "", fmt.Errorf("consulhttp: leader: %w", err)
	}
	defer drainClose(resp.Body)
	leader, err := decodeLeader(resp.Body)
	if err != nil {
		return "", fmt.Errorf("consulhttp: leader: %w", err)
	}
	return leader, nil
}

// decodeLeader reads GET /v1/status/leader's answer: a JSON string, empty
// when there is no leader.
func decodeLeader(body io.Reader) (string, error) {
	var leader string
	if err := decodeJSON(body, &leader); err != nil {
		return "", err
	}
	return leader, nil
}

// AgentInfo is what an agent says about itself.
type AgentInfo struct {
	Node       string
	Datacenter string
	Version    string
	Server     bool
	// UseStreamingBackend and HTTPUseCache are the agent's
	// use_streaming_backend and http_config.use_cache, from the
	// DebugConfig it reports; nil when it did not say.
	UseStreamingBackend *bool
	HTTPUseCache        *bool
}

// Self describes the agent (GET /v1/agent/self; needs agent:read).
func (c *Client) Self(ctx context.Context) (AgentInfo, error) {
	resp, err := c.do(ctx, c.newRequest(http.MethodGet, "/v1/agent/self"))
	if err != nil {
		return AgentInfo{}, fmt.Errorf("consulhttp: agent self: %w", err)
	}
	defer drainClose(resp.Body)
	info, err := decodeSelf(resp.Body)
	if err != nil {
		return AgentInfo{}, fmt.Errorf("consulhttp: agent self: %w", err)
	}
	return info, nil
}

// decodeSelf reads the part of GET /v1/agent/self's answer AgentInfo holds.
func decodeSelf(body io.Reader) (AgentInfo, error) {
	var self struct {
		Config struct {
			NodeName, Datacenter, Version string
			Server                        bool
		}
		DebugConfig struct {
			UseStreamingBackend, HTTPUseCache *bool
		}
	}
	if err := decodeJSON(body, &self); err != nil {
		return AgentInfo{}, err
	}
	cfg := self.Config
	return AgentInfo{Node: cfg.NodeName, Datacenter: cfg.Datacenter, Version: cfg.Version, Server: cfg.Server,
		UseStreamingBackend: self.DebugConfig.UseStreamingBackend, HTTPUseCache: self.DebugConfig.HTTPUseCache}, nil
}

// TokenInfo describes the ACL token in use. It never holds the secret.
type TokenInfo struct {
	AccessorID        string
	Description       string
	Policies          []string // policy names
	Roles             []string // role names
	ServiceIdentities []string // service names
	NodeIdentities    []string // node names
	Local             bool
}

// TokenSelf describes the token the client sends (GET /v1/acl/token/self).
// It returns an error matching ErrACLDisabled when ACLs are off, and one
// matching beacon.ErrPermissionDenied when the agent does not know the
// token.
func (c *Client) TokenSelf(ctx context.Context) (TokenInfo, error) {
	resp, err := c.do(ctx, c.newRequest(http.MethodGet, "/v1/acl/token/self"))
	if err != nil {
		// Consul answers 401 on this endpoint only when ACLs are disabled
		// (an unknown token is 403).
		var se *beacon.StatusError
		if errors.As(err, &se) && se.StatusCode == http.StatusUnauthorized {
			return TokenInfo{}, fmt.Errorf("%w: %w", ErrACLDisabled, err)
		}
		return TokenInfo{}, fmt.Errorf("consulhttp: token self: %w", err)
	}
	defer drainClose(resp.Body)
	t, err := decodeTokenSelf(resp.Body)
	if err != nil {
		return TokenInfo{}, fmt.Errorf("consulhttp: token self: %w", err)
	}
	return t, nil
}

// decodeTokenSelf reads GET /v1/acl/token/self's answer.
func decodeTokenSelf(body io.Reader) (TokenInfo, error) {
	// SecretID is deliberately not decoded: it is never kept or shown.
	var raw struct {
		AccessorID, Description string
		Policies, Roles         []struct{ Name string }
		ServiceIdentities       []struct{ ServiceName string }
		NodeIdentities          []struct{ NodeName string }
		Local                   bool
	}
	if err := decodeJSON(body, &raw); err != nil {
		return TokenInfo{}, err
	}
	t := TokenInfo{AccessorID: raw.AccessorID, Description: raw.Description, Local: raw.Local}
	for _, p := range raw.Policies {
		t.Policies = append(t.Policies, p.Name)
	}
	for _, r := range raw.Roles {
		t.Roles = append(t.Roles, r.Name)
	}
	for _, s := range raw.ServiceIdentities {
		t.ServiceIdentities = append(t.ServiceIdentities, s.ServiceName)
	}
	for _, n := range raw.NodeIdentities {
		t.NodeIdentities = append(t.NodeIdentities, n.NodeName)
	}
	return t, nil
}

// HealthQueryBackend makes a short blocking health query for service and
// returns the agent's X-Consul-Query-Backend header: "streaming" when the
// agent serves health queries from its streaming backend,
// "blocking-query" when every watcher costs the servers a blocking query,
// or "" when the agent sent no such header (older than 1.10).
func (c *Client) HealthQueryBackend(ctx context.Context, service string) (string, error) {
	if err := beacon.ValidateServiceName(service); err != nil {
		return "", fmt.Errorf("consulhttp: query backend: %w", err)
	}
	const wait = 100 * time.Millisecond
	req := c.newRequest(http.MethodGet, "/v1/health/service/"+url.PathEscape(service))
	// Streaming applies only to blocking queries (an index above 0); index 1
	// is below any real index, so the agent answers at once.
	req.query.Set("index", "1")
	req.query.Set("wait", "100ms")
	req.timeout = c.cfg.BlockingTimeout(wait)
	resp, err := c.do(ctx, req)
	if err != nil {
		return "", fmt.Errorf("consulhttp: query backend: %w", err)
	}
	drainClose(resp.Body)
	return resp.Header.Get("X-Consul-Query-Backend"), nil
}

var _ beacon.ACLProber = (*Client)(nil)

// ProbeACLs implements beacon.ACLProber from TokenSelf.
func (c *Client) ProbeACLs(ctx context.Context) (beacon.ACLs, error) {
	_, err := c.TokenSelf(ctx)
	switch {
	case err == nil:
		return beacon.ACLsToken, nil
	case errors.Is(err, ErrACLDisabled):
		return beacon.ACLsDisabled, nil
	case errors.Is(err, beacon.ErrPermissionDenied):
		return beacon.ACLsNoToken, nil
	default:
		return beacon.ACLsUnknown, err
	}
}
