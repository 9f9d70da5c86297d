package consulhttp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync/atomic"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/uisummary"
)

var _ beacon.ServiceSummaries = (*Client)(nil)

// ServiceSummaries lists a summary of every service of the datacenter (GET
// /v1/internal/ui/services, internal to Consul: see
// beacon.ServiceSummaries); with q.WaitIndex set it blocks until the
// catalog changes or q.WaitTime ends. The answer is decoded one service at
// a time and node names are hashed as they are read, so a datacenter of
// 100,000 instances costs a few hundred kilobytes of summaries, not the
// answer's megabytes. An agent without the endpoint answers a
// *beacon.StatusError (404 or 405).
func (c *Client) ServiceSummaries(ctx context.Context, q beacon.ServicesQuery) ([]beacon.ServiceSummary, beacon.QueryMeta, error) {
	if err := q.Validate(); err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: service summaries: %w", err)
	}
	req := c.newRequest(http.MethodGet, "/v1/internal/ui/services")
	c.setRead(req, q.Datacenter, q.Consistency, q.WaitIndex, q.WaitTime)
	if f := q.Filter(); f != "" {
		req.query.Set("filter", f)
	}
	return getFeed(c, ctx, req, &c.feedSizes[feedSummaries], func() string { return "service summaries" }, decodeSummaries)
}

// decodeSummaries turns a /v1/internal/ui/services answer into summaries.
// Every malformed answer is an error wrapping beacon.ErrMalformedResponse;
// a connection failing mid-answer is beacon.ErrUnavailable.
func decodeSummaries(h http.Header, body io.Reader) ([]beacon.ServiceSummary, beacon.QueryMeta, error) {
	meta, err := decodeMeta(h)
	if err != nil {
		return nil, beacon.QueryMeta{}, err
	}
	rec := &readRecorder{r: body}
	dec := json.NewDecoder(rec)
	out, err := uisummary.Decode(dec)
	if err != nil {
		if rec.transportErr() != nil {
			return nil, beacon.QueryMeta{}, fmt.Errorf("%w: reading the answer: %w", beacon.ErrUnavailable, rec.err)
		}
		if rec.err != nil && rec.err != io.EOF { // the size cap
			return nil, beacon.QueryMeta{}, rec.err
		}
		return nil, beacon.QueryMeta{}, fmt.Errorf("%w: %w", beacon.ErrMalformedResponse, err)
	}
	if err := onlySpace(io.MultiReader(dec.Buffered(), rec)); err != nil {
		switch {
		case rec.transportErr() != nil:
			return nil, beacon.QueryMeta{}, fmt.Errorf("%w: reading the answer: %w", beacon.ErrUnavailable, rec.err)
		case rec.err != nil && rec.err != io.EOF: // the size cap
			return nil, beacon.QueryMeta{}, rec.err
		}
		return nil, beacon.QueryMeta{}, fmt.Errorf("%w: %w", beacon.ErrMalformedResponse, err)
	}
	return out, meta, nil
}

// The change feed's answers (the service summaries, or every check) grow
// with the datacenter, not with one service: at 100,000 instances every
// check is about 50 MB, past DefaultMaxBodyBytes. Their cap is a multiple
// of the client's (feedCapFactor) and grows with the largest answer seen
// (feedGrowth times it), so a datacenter that grows between two answers
// is not an error; only a first answer past feedCapFactor times the cap
// is (256 MiB by default). Both decoders keep far less than they read.
const (
	feedCapFactor = 8
	feedGrowth    = 4
)

// Indexes of Client.feedSizes.
const (
	feedSummaries = iota
	feedChecks
)

// feedCap is the body cap of a feed query whose largest answer so far was
// seen bytes.
func (c *Client) feedCap(seen *atomic.Int64) int64 {
	return max(saturatingMul(c.maxBody, feedCapFactor), saturatingMul(seen.Load(), feedGrowth))
}

// saturatingMul is a*b for a, b ≥ 0, or math.MaxInt64 where that
// overflows: a cap near the top of int64 (WithMaxBodyBytes) must not wrap
// to below what the caller chose.
func saturatingMul(a, b int64) int64 {
	if b != 0 && a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// getFeed is getDecoded for a feed query: its cap from feedCap, and its
// answer's size recorded in seen.
func getFeed[T any](c *Client, ctx context.Context, req *request, seen *atomic.Int64, what func() string, decode func(http.Header, io.Reader) (T, beacon.QueryMeta, error)) (T, beacon.QueryMeta, error) {
	req.maxBody = c.feedCap(seen)
	var zero T
	resp, err := c.do(ctx, req)
	if err != nil {
		return zero, beacon.QueryMeta{}, fmt.Errorf("consulhttp: %s: %w", what(), err)
	}
	defer drainClose(resp.Body)
	out, meta, err := decode(resp.Header, resp.Body)
	if err != nil {
		return zero, beacon.QueryMeta{}, fmt.Errorf("consulhttp: %s: %w", what(), err)
	}
	if cb, ok := resp.Body.(*cappedBody); ok {
		for n := cb.n; ; {
			old := seen.Load()
			if n <= old || seen.CompareAndSwap(old, n) {
				break
			}
		}
	}
	return out, meta, nil
}
