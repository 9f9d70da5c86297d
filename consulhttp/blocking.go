package consulhttp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/beaconsd/beacon"
)

// setRead sets what every read of Consul's state shares on req: the
// datacenter, the consistency mode and, when index is set, the blocking
// query's index, its wait and the request timeout that covers it.
func (c *Client) setRead(req *request, dc string, cons beacon.Consistency, index uint64, wait time.Duration) {
	if dc != "" {
		req.query.Set("dc", dc)
	}
	switch cons {
	case beacon.ConsistencyStale:
		req.query.Set("stale", "")
	case beacon.ConsistencyConsistent:
		req.query.Set("consistent", "")
	}
	if index > 0 {
		req.query.Set("index", strconv.FormatUint(index, 10))
		if wait > 0 {
			// Round up: "0ms" would make Consul wait its default 5
			// minutes, far past this request's deadline.
			ms := (wait + time.Millisecond - 1) / time.Millisecond
			req.query.Set("wait", strconv.FormatInt(int64(ms), 10)+"ms")
		}
		req.timeout = c.cfg.BlockingTimeout(wait)
	}
}

// getDecoded sends req and decodes the answer with decode. Errors are
// prefixed with "consulhttp: " and what(), called only on an error.
func getDecoded[T any](c *Client, ctx context.Context, req *request, what func() string, decode func(http.Header, io.Reader) (T, beacon.QueryMeta, error)) (T, beacon.QueryMeta, error) {
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
	return out, meta, nil
}
