package consulhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
)

// DefaultMaxBodyBytes caps how much of a successful answer is read. A health
// answer for a thousand instances is about 2 MB.
const DefaultMaxBodyBytes = 32 << 20

// maxErrorBody caps how much of an error answer is kept as its message.
const maxErrorBody = 4 << 10

// Client is a beacon.Registry bound to one Consul agent. It is safe for
// concurrent use. Close releases idle connections.
type Client struct {
	cfg      consul.Config
	endpoint consul.Endpoint
	base     *url.URL
	hc       *http.Client
	tokens   *consul.TokenSource
	maxBody  int64
	// reuse keeps the last large health answer per query (reuse.go).
	reuse *reuseCache
	// feedSizes is the largest answer of each change-feed query so far,
	// which their body cap grows with (services.go).
	feedSizes [2]atomic.Int64
}

var _ beacon.Registry = (*Client)(nil)

// Option adjusts a Client.
type Option func(*Client)

// WithHTTPClient replaces the HTTP client built from the Config (its TLS
// settings are then the caller's). It must not set Timeout shorter than a
// blocking query's wait.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithMaxBodyBytes caps how much of an answer is read; larger answers fail
// with beacon.ErrMalformedResponse. The change feed's queries, whose
// answers grow with the datacenter (ServiceSummaries, Checks), get a
// multiple of it that also grows with their largest answer (services.go).
func WithMaxBodyBytes(n int64) Option { return func(c *Client) { c.maxBody = n } }

// New returns a client for the first agent in cfg.Addresses.
// Backend is New as a consul.Backend, for keeper.WithBackend and
// discovery.WithBackend; it is their default.
func Backend(cfg consul.Config) (beacon.Registry, error) { return New(cfg) }

func New(cfg consul.Config, opts ...Option) (*Client, error) {
	hc, ep, err := cfg.NewHTTPClient()
	if err != nil {
		return nil, fmt.Errorf("consulhttp: %w", err)
	}
	// The agent API never redirects, and net/http would forward the
	// X-Consul-Token header to wherever a redirect points: refuse them, so a
	// 3xx comes back as a *beacon.StatusError instead.
	c := &Client{cfg: cfg, endpoint: ep, base: ep.URL(), hc: hc, tokens: cfg.NewTokenSource(), maxBody: DefaultMaxBodyBytes, reuse: newReuseCache()}
	for _, o := range opts {
		o(c)
	}
	// Applied after the options, on a copy, so a client given with
	// WithHTTPClient refuses redirects too without being changed.
	own := *c.hc
	own.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = &own
	return c, nil
}

// Agent returns the agent address this client talks to.
func (c *Client) Agent() string { return c.endpoint.String() }

// Close releases idle connections. In-flight calls end with their contexts.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// request is one call to the agent.
type request struct {
	method  string
	path    string // unescaped, for errors
	rawPath string // escaped, for the wire
	query   url.Values
	body    any
	timeout time.Duration
	maxBody int64 // the body cap; 0: the client's
}

func (c *Client) newRequest(method, rawPath string) *request {
	p, err := url.PathUnescape(rawPath)
	if err != nil {
		p = rawPath
	}
	return &request{method: method, path: p, rawPath: rawPath, query: url.Values{}, timeout: c.cfg.RequestTimeout()}
}

// do sends r and returns the response with its body capped; the caller
// closes it. Non-2xx answers become *beacon.StatusError.
func (c *Client) do(ctx context.Context, r *request) (*http.Response, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	u := *c.base
	u.Path, u.RawPath = r.path, r.rawPath
	if c.cfg.Datacenter != "" && r.query.Get("dc") == "" && r.method == http.MethodGet {
		r.query.Set("dc", c.cfg.Datacenter)
	}
	if c.cfg.Namespace != "" {
		r.query.Set("ns", c.cfg.Namespace)
	}
	if c.cfg.Partition != "" {
		r.query.Set("partition", c.cfg.Partition)
	}
	u.RawQuery = r.query.Encode()

	var body io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			cancel()
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		cancel()
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	tok, err := c.tokens.Token()
	if err != nil {
		cancel()
		return nil, err
	}
	if tok != "" {
		req.Header.Set("X-Consul-Token", tok)
	}
	if a := c.cfg.HTTPAuth; a != nil {
		req.SetBasicAuth(a.Username, a.Password)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		cancel()
		// The URL holds no secret, but keep the error short and typed.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		// The caller's own context ending is the caller's business; anything
		// else, this request's deadline included (an agent that accepts and
		// never answers), means the agent is unavailable.
		if parent.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
		}
		if hint := consul.TLSHint(err); hint != "" {
			err = fmt.Errorf("%w (%s)", err, hint)
		}
		return nil, fmt.Errorf("%s %s: %w: %w", r.method, r.path, beacon.ErrUnavailable, err)
	}
	limit := c.maxBody
	if r.maxBody > 0 {
		limit = r.maxBody
	}
	resp.Body = &cappedBody{r: io.LimitReader(resp.Body, limit+1), c: resp.Body, cancel: cancel, limit: limit}
	if resp.StatusCode/100 != 2 {
		defer drainClose(resp.Body)
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, &beacon.StatusError{Method: r.method, Path: r.path, StatusCode: resp.StatusCode, Message: strings.TrimSpace(string(msg))}
	}
	return resp, nil
}

// cappedBody ends the request's context when closed and reports a body
// larger than its limit.
type cappedBody struct {
	r      io.Reader
	c      io.Closer
	cancel context.CancelFunc
	limit  int64
	n      int64
}

var errTooLarge = errors.New("answer larger than the size cap")

func (b *cappedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > b.limit {
		return n, fmt.Errorf("%w: %w (%d bytes)", beacon.ErrMalformedResponse, errTooLarge, b.limit)
	}
	return n, err
}

func (b *cappedBody) Close() error {
	err := b.c.Close()
	b.cancel()
	return err
}

// drainClose reads a little of what is left so the connection can be
// reused, then closes.
func drainClose(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, 64<<10))
	_ = rc.Close()
}

// send performs a call whose answer body is not needed.
func (c *Client) send(ctx context.Context, r *request) error {
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	drainClose(resp.Body)
	return nil
}
