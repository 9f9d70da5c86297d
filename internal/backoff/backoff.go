// Package backoff holds the waiting every Beacon loop does: a sleep that
// ends with its context, the jitter formula, and capped exponential
// backoff. It is written once so every loop spreads its retries the same
// way.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Sleep waits d, or until ctx ends; it reports whether the whole d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Jitter returns a duration drawn uniformly from [d/2, d]: a fleet that
// failed together does not retry together, and no wait is shorter than
// half its nominal value.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// UpTo returns a duration drawn uniformly from [0, d], for spreading
// work that should start soon but not all at once.
func UpTo(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// Backoff is capped exponential backoff: each Next doubles the wait, up to
// Max, and returns it jittered; Reset starts again from Min. The zero
// value uses 100 ms and 10 s. It is not safe for concurrent use: each loop
// owns its own.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the jittered wait before the next attempt and doubles the
// one after it.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.bounds()
	if b.cur < lo {
		b.cur = lo
	}
	d := b.cur
	b.cur = min(b.cur*2, hi)
	return Jitter(d)
}

// Reset makes the next wait Min again, after a success.
func (b *Backoff) Reset() { b.cur = 0 }

// Wait sleeps Next(), or until ctx ends; it reports whether the sleep
// completed.
func (b *Backoff) Wait(ctx context.Context) bool { return Sleep(ctx, b.Next()) }

func (b *Backoff) bounds() (lo, hi time.Duration) {
	lo, hi = b.Min, b.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi < lo {
		hi = max(10*time.Second, lo)
	}
	return lo, hi
}
