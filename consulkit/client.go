package consulkit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	kitconsul "github.com/go-kit/kit/sd/consul"
	"github.com/hashicorp/consul/api"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
)

// DefaultMaxBodyBytes caps how much of an answer is read, as in consulhttp.
const DefaultMaxBodyBytes = 32 << 20

// Client is a beacon.Registry bound to one Consul agent, on go-kit's
// sd/consul client. It is safe for concurrent use.
type Client struct {
	cfg consul.Config
	ep  consul.Endpoint
	// kit is go-kit's client for writes (Register, Deregister and go-kit's
	// Registrar). go-kit takes no context for them, so it runs on
	// timedAPI, whose HTTP client carries the request timeout.
	kit kitconsul.Client
	// api serves context-aware calls: TTL updates, checks, agent reads.
	api *api.Client
	// kitLookup is go-kit's client for lookups, on api: its Service is
	// called with a context in QueryOptions.
	kitLookup kitconsul.Client
	// httpClient carries every request, kit's too (they share its
	// transport); Close releases its idle connections.
	httpClient *http.Client
	// summariesSize is the largest service-summaries answer so far, which
	// their body cap grows with (services.go).
	summariesSize atomic.Int64
}

var _ beacon.Registry = (*Client)(nil)

// New returns a client for the first agent in cfg.Addresses.
func New(cfg consul.Config) (*Client, error) {
	hc, ep, err := cfg.NewHTTPClient()
	if err != nil {
		return nil, fmt.Errorf("consulkit: %w", err)
	}
	hc.Transport = &transport{base: hc.Transport, cfg: cfg, tokens: cfg.NewTokenSource(), maxBody: DefaultMaxBodyBytes}
	// The agent API never redirects, and net/http would follow a redirect
	// to anywhere with this transport, which adds X-Consul-Token to every
	// request: refuse them, so a 3xx comes back as a *beacon.StatusError.
	hc.CheckRedirect = refuseRedirect
	timed := &http.Client{Transport: hc.Transport, Timeout: cfg.RequestTimeout(), CheckRedirect: refuseRedirect}

	newAPI := func(h *http.Client) (*api.Client, error) {
		return api.NewClient(&api.Config{
			Address:    ep.Host,
			Scheme:     ep.URL().Scheme,
			HttpClient: h,
			Datacenter: cfg.Datacenter,
			Namespace:  cfg.Namespace,
			Partition:  cfg.Partition,
		})
	}
	a, err := newAPI(hc)
	if err != nil {
		return nil, fmt.Errorf("consulkit: %w", err)
	}
	timedAPI, err := newAPI(timed)
	if err != nil {
		return nil, fmt.Errorf("consulkit: %w", err)
	}
	return &Client{cfg: cfg, ep: ep, kit: kitconsul.NewClient(timedAPI), api: a, kitLookup: kitconsul.NewClient(a), httpClient: hc}, nil
}

// Backend is New as a consul.Backend, for keeper.WithBackend and
// discovery.WithBackend.
func Backend(cfg consul.Config) (beacon.Registry, error) { return New(cfg) }

func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Agent returns the agent address this client talks to.
func (c *Client) Agent() string { return c.ep.String() }

// Close releases idle connections.
func (c *Client) Close() error {
	c.httpClient.CloseIdleConnections()
	return nil
}

// transport puts Beacon's connection rules under consul/api: the token from
// the (re-read) token file in X-Consul-Token only, basic auth, namespace and
// partition only when configured (consul/api would fill them from the
// environment), and a cap on answer bodies. It also checks what consul/api
// lets through in successful answers to queries (see checkAnswer).
type transport struct {
	base    http.RoundTripper
	cfg     consul.Config
	tokens  *consul.TokenSource
	maxBody int64
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := t.tokens.Token()
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Del("X-Consul-Token")
	if tok != "" {
		r.Header.Set("X-Consul-Token", tok)
	}
	if a := t.cfg.HTTPAuth; a != nil {
		r.SetBasicAuth(a.Username, a.Password)
	}
	q := r.URL.Query()
	for key, v := range map[string]string{"ns": t.cfg.Namespace, "partition": t.cfg.Partition} {
		if v == "" {
			q.Del(key)
		} else {
			q.Set(key, v)
		}
	}
	r.URL.RawQuery = q.Encode()
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	limit := t.maxBody
	if n, ok := r.Context().Value(bodyCapKey{}).(int64); ok && n > 0 {
		limit = n
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, left: limit}
	if r.Method == http.MethodGet && resp.StatusCode/100 == 2 {
		if err := checkAnswer(r, resp); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// CloseIdleConnections closes the idle connections of the transport
// underneath, so Client.Close releases them.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// errMalformed marks answers checkAnswer refuses.
var errMalformed = fmt.Errorf("%w", beacon.ErrMalformedResponse)

// checkAnswer reads a successful answer to a query whole and refuses it,
// closing the body, unless it is exactly one JSON document and, from the
// health endpoints and prepared query executions, carries X-Consul-*
// headers that parse (checkQueryMeta); so must node coordinates, whose
// watch blocks.
// consul/api checks neither: it decodes the first JSON value and discards
// the rest unread (so data after it, or an answer past the size cap, would
// pass), and its health calls ignore header parse errors, taking a missing
// or garbled index for 0, which restarts a blocking query's wait. On
// success resp.Body holds the answer again.
func checkAnswer(r *http.Request, resp *http.Response) error {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	// Trailing whitespace is trimmed first: json.Valid would step through
	// it byte by byte, and an answer may hold megabytes of it.
	if !json.Valid(bytes.TrimRight(body, " \t\r\n")) {
		return fmt.Errorf("%w: the answer is not one JSON document", errMalformed)
	}
	if p := r.URL.Path; strings.HasPrefix(p, "/v1/health/") || strings.HasPrefix(p, "/v1/query/") && strings.HasSuffix(p, "/execute") || p == "/v1/coordinate/nodes" || p == summariesPath {
		if err := checkQueryMeta(resp.Header); err != nil {
			return err
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return nil
}

// checkQueryMeta holds the X-Consul-* headers of a query's answer to the
// rules consulhttp applies: X-Consul-Index is required (a blocking query
// cannot continue without it) and, like X-Consul-LastContact when present,
// must be a number.
func checkQueryMeta(h http.Header) error {
	raw := h.Get("X-Consul-Index")
	if raw == "" {
		return fmt.Errorf("%w: no X-Consul-Index header", errMalformed)
	}
	if _, err := strconv.ParseUint(raw, 10, 64); err != nil {
		return fmt.Errorf("%w: X-Consul-Index %.40q is not a number", errMalformed, raw)
	}
	if lc := h.Get("X-Consul-LastContact"); lc != "" {
		if _, err := strconv.ParseUint(lc, 10, 32); err != nil {
			return fmt.Errorf("%w: X-Consul-LastContact %.40q is not a number", errMalformed, lc)
		}
	}
	return nil
}

var errTooLarge = errors.New("answer larger than the size cap")

type cappedBody struct {
	io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells "exactly at the cap" from "beyond it".
		var one [1]byte
		if n, _ := b.ReadCloser.Read(one[:]); n > 0 {
			return 0, errTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// mapError turns consul/api's errors into Beacon's. ctx is the caller's
// context (not the one carrying this client's own deadline).
//
// It turns consul/api's errors into Beacon's, so callers cannot tell
// the backends apart: api.StatusError becomes *beacon.StatusError, transport
// failures beacon.ErrUnavailable, undecodable answers
// beacon.ErrMalformedResponse.
func mapError(ctx context.Context, method, path string, err error) error {
	if err == nil {
		return nil
	}
	var se api.StatusError
	if errors.As(err, &se) {
		return &beacon.StatusError{Method: method, Path: path, StatusCode: se.Code, Message: truncate(se.Body, 4<<10)}
	}
	// The caller's context ending is the caller's business; anything else,
	// this request's own deadline included (an agent that accepts and never
	// answers), means the agent is unavailable.
	if ctx != nil && ctx.Err() != nil {
		return fmt.Errorf("%w", ctx.Err())
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if errors.Is(ue.Err, errTooLarge) {
			return fmt.Errorf("%w: %w", beacon.ErrMalformedResponse, errTooLarge)
		}
		if errors.Is(ue.Err, errMalformed) {
			return ue.Err
		}
		if errors.Is(ue.Err, consul.ErrConfig) {
			return ue.Err
		}
		if hint := consul.TLSHint(ue.Err); hint != "" {
			return fmt.Errorf("%w: %w (%s)", beacon.ErrUnavailable, ue.Err, hint)
		}
		return fmt.Errorf("%w: %w", beacon.ErrUnavailable, ue.Err)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("%w: %w", beacon.ErrUnavailable, err)
	}
	if errors.Is(err, errTooLarge) {
		return fmt.Errorf("%w: %w", beacon.ErrMalformedResponse, errTooLarge)
	}
	// Whatever else consul/api reports after a 2xx answer is about the
	// answer itself: bad JSON, an unparsable X-Consul-Index.
	return fmt.Errorf("%w: %w", beacon.ErrMalformedResponse, err)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
