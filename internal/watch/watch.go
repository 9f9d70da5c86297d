// Package watch runs the one blocking-query loop Beacon needs, following
// Consul's documented index rules, so it is written once.
package watch

import (
	"context"
	"math/rand/v2"
	"time"

	"golang.org/x/time/rate"

	"github.com/beaconsd/beacon"
)

// Options tune a Loop. The zero value is usable.
type Options struct {
	// WaitTime is each blocking query's wait; zero means 5 minutes.
	WaitTime time.Duration
	// Limiter spaces queries so churn degrades to polling; nil means a
	// burst of 2 and then one query per second.
	Limiter *rate.Limiter
	// MinBackoff and MaxBackoff bound the jittered wait after an error;
	// zero means 100 ms and 10 s.
	MinBackoff, MaxBackoff time.Duration
	// OnRequest and OnIndexReset, when set, are called for every query
	// sent and every index that went backwards (for metrics).
	OnRequest, OnIndexReset func()
}

// Result is one answer, or the error that took its place.
type Result struct {
	Instances []beacon.Instance
	Meta      beacon.QueryMeta
	Err       error
}

// Loop runs blocking queries for q until ctx ends, calling emit with every
// answer whose index moved and with every error. It returns when ctx ends;
// the in-flight query is cancelled with it. When emit refuses an answer
// (returns an error), the loop treats it as failed: it backs off and asks
// again from index 0, so the next answer is emitted even if nothing moved.
//
// Index rules (Consul's blocking-query documentation): the first query and
// the first after any error start from 0 (a fresh agent given an old,
// higher index blocks for the whole wait even when its data changes); an
// index that goes backwards resets to 0; an index below 1 is treated as 1.
func Loop(ctx context.Context, reg beacon.Lookup, q beacon.Query, o Options, emit func(Result) error) {
	if o.WaitTime <= 0 {
		o.WaitTime = 5 * time.Minute
	}
	if o.Limiter == nil {
		o.Limiter = rate.NewLimiter(rate.Every(time.Second), 2)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(10*time.Second, o.MinBackoff)
	}
	var index uint64
	backoff := o.MinBackoff
	for {
		if err := o.Limiter.Wait(ctx); err != nil {
			return // ctx ended
		}
		q.WaitIndex, q.WaitTime = index, o.WaitTime
		if o.OnRequest != nil {
			o.OnRequest()
		}
		insts, meta, err := reg.Instances(ctx, q)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			// An index below 1 is treated as 1 before it is compared: an
			// agent that answers 0 again and again has not gone backwards,
			// and the next query must block on 1, not go out without an
			// index.
			next := max(meta.LastIndex, 1)
			if next < index {
				next = 0 // went backwards: the agent's state was reset
				if o.OnIndexReset != nil {
					o.OnIndexReset()
				}
			}
			if index == 0 || next != index {
				err = emit(Result{Instances: insts, Meta: meta})
			}
			index = next
			if err == nil {
				backoff = o.MinBackoff
			}
		} else {
			_ = emit(Result{Err: err})
		}
		if err != nil {
			index = 0
			if !sleep(ctx, backoff/2+rand.N(backoff/2+1)) {
				return
			}
			backoff = min(backoff*2, o.MaxBackoff)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
