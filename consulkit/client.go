package consulkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

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
	// kit registers and deregisters; it takes no context, so its HTTP
	// client carries a timeout.
	kit kitconsul.Client
	// api serves context-aware calls: lookups (go-kit's Service is called
	// through it with a context in QueryOptions), TTL updates and checks.
	api       *api.Client
	kitClient kitconsul.Client // go-kit's Client over api, for lookups
	hc, kitHC *http.Client
}

var _ beacon.Registry = (*Client)(nil)

// New returns a client for the first agent in cfg.Addresses.
func New(cfg consul.Config) (*Client, error) {
	hc, ep, err := cfg.NewHTTPClient()
	if err != nil {
		return nil, fmt.Errorf("consulkit: %w", err)
	}
	hc.Transport = &transport{base: hc.Transport, cfg: cfg, tokens: cfg.NewTokenSource(), maxBody: DefaultMaxBodyBytes}
	kitHC := &http.Client{Transport: hc.Transport, Timeout: cfg.RequestTimeout()}

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
	ka, err := newAPI(kitHC)
	if err != nil {
		return nil, fmt.Errorf("consulkit: %w", err)
	}
	return &Client{cfg: cfg, ep: ep, kit: kitconsul.NewClient(ka), api: a, kitClient: kitconsul.NewClient(a), hc: hc, kitHC: kitHC}, nil
}

// Agent returns the agent address this client talks to.
func (c *Client) Agent() string { return c.ep.String() }

// KitClient returns go-kit's sd/consul Client this backend uses, for code
// that wants go-kit's own Instancer or Registrar.
func (c *Client) KitClient() kitconsul.Client { return c.kitClient }

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// transport puts Beacon's connection rules under consul/api: the token from
// the (re-read) token file in X-Consul-Token only, basic auth, namespace and
// partition only when configured (consul/api would fill them from the
// environment), and a cap on answer bodies.
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
	resp.Body = &cappedBody{ReadCloser: resp.Body, left: t.maxBody}
	return resp, nil
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
		if errors.Is(ue.Err, consul.ErrConfig) {
			return ue.Err
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
