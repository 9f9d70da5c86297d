package discovery

import (
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// requestCap is WithMaxRequestRate's bucket: every request of a cache
// takes one of its tokens before it is sent (callAt), so the cache as a
// whole never sends more than the cap, whatever its watches do.
type requestCap struct {
	lim      *rate.Limiter
	sent     atomic.Int64 // requests that took a token
	delayed  atomic.Int64 // of which waited for it
	waitedNs atomic.Int64 // how long, in all
}

func newRequestCap(perSecond float64, burst int) *requestCap {
	return &requestCap{lim: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// wait takes a token, waiting for it until ctx ends. A nil cap lets every
// request through.
func (c *requestCap) wait(ctx context.Context) error {
	if c == nil {
		return nil
	}
	r := c.lim.Reserve()
	if d := r.Delay(); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			r.Cancel()
			return ctx.Err()
		}
		c.delayed.Add(1)
		c.waitedNs.Add(int64(d))
	}
	c.sent.Add(1)
	return nil
}

// RequestCapStats describes the cache-wide request cap
// (WithMaxRequestRate).
type RequestCapStats struct {
	// PerSecond and Burst are the cap; PerSecond is 0 without one, and
	// the counts below then stay 0.
	PerSecond float64
	Burst     int
	// Requests counts the requests that passed the cap; Delayed, those of
	// them that had to wait for it, and Waited is how long they waited in
	// all.
	Requests int64
	Delayed  int64
	Waited   time.Duration
}

// RequestCap reports the cache-wide request cap and what it has held back.
// It is safe for concurrent use.
func (c *Cache) RequestCap() RequestCapStats {
	l := c.agents.limit
	if l == nil {
		return RequestCapStats{}
	}
	return RequestCapStats{PerSecond: float64(l.lim.Limit()), Burst: l.lim.Burst(),
		Requests: l.sent.Load(), Delayed: l.delayed.Load(), Waited: time.Duration(l.waitedNs.Load())}
}
