// Package blocking runs Consul blocking queries: one loop, written once,
// for whatever a watch fetches (a service's instances, the datacenter's
// checks, and next coordinates, prepared queries or another datacenter's
// view). A caller supplies a Fetch for one query at an index and a
// handler for its answers, as consul's api/watch runs one plan over a
// handler per kind of watch.
package blocking

import (
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/backoff"
)

// Fetch asks Consul once. With index 0 it answers at once; with index > 0
// it blocks until the data's index moves past index or its wait ends. The
// request's deadline is the Fetch's (the backends give a blocking query
// its wait × 17/16 plus their timeout); ctx cancels it. A Fetch that may
// queue locally before the query goes out calls Sending(ctx) when it does.
type Fetch[T any] func(ctx context.Context, index uint64) (T, beacon.QueryMeta, error)

// Options tune Run. The zero value is usable.
type Options struct {
	// Limiter spaces queries so churn degrades to polling; nil means a
	// burst of 2 and then one query per second. Each Run needs its own.
	// With Hot set, it is the ceiling of a hot loop: only queries sent
	// while the loop is hot wait on it.
	Limiter *rate.Limiter
	// Hot, when set, is the pace at which the data may change and still
	// be followed at once: while a query can take one of its tokens the
	// query goes out without waiting on Limiter. The first query that
	// finds it empty makes the loop hot: from then on every query waits on
	// Limiter (polling at its rate, as Consul's documentation asks of a
	// client whose index moves faster than it should follow), until a
	// blocking query waits at least Still for its answer, which shows the
	// index standing still, and the loop is cool again. Nil: every query
	// waits on Limiter. Each Run needs its own.
	Hot *rate.Limiter
	// Still is how long a blocking query must wait for its answer for a
	// hot loop to cool; zero means 50 ms. The wait is timed from when the
	// fetch said the query left (Sending), not from when Run called it: a
	// query that queued locally (for a long-poll slot, a request cap, an
	// agent to come back) has not been waiting on Consul's index then.
	// A fetch that never calls Sending is timed from the call.
	Still time.Duration
	// Backoff is the jittered, capped wait after an error; its zero value
	// means 100 ms doubling to 10 s.
	Backoff backoff.Backoff
	// OnRequest and OnIndexReset, when set, are called for every query
	// sent and every index that went backwards (for metrics).
	OnRequest, OnIndexReset func()
	// OnLimited, when set, is called with the delay of every query that
	// waited on Limiter; OnHot with each change of the loop's heat.
	OnLimited func(wait time.Duration)
	OnHot     func(hot bool)
	// Skip, when set, is asked before each query; when it returns true the
	// query goes out without waiting for (or taking) a Limiter token.
	// discovery skips once after an answer that lost passing instances,
	// so a service draining to none is seen at once rather than at the
	// limiter's pace; as only a shrinking answer earns a skip, a flapping
	// service at most doubles the rate.
	Skip func() bool
}

// Run sends fetch's queries until ctx ends, calling emit with every answer
// whose index moved (and the first) and with every error (a zero T). It
// blocks until ctx ends; the query in flight is cancelled with it. When
// emit refuses an answer (returns an error), the loop treats it as failed:
// it backs off and asks again from index 0, so the next answer is emitted
// even if nothing moved. Emit's result for an error is ignored.
//
// Index rules (Consul's blocking-query documentation): the first query and
// the first after any error start from 0 (a fresh agent given an old,
// higher index blocks for the whole wait even when its data changes); an
// index that goes backwards resets to 0; an index below 1 is treated as 1.
func Run[T any](ctx context.Context, fetch Fetch[T], o Options, emit func(T, beacon.QueryMeta, error) error) {
	if o.Limiter == nil {
		o.Limiter = rate.NewLimiter(rate.Every(time.Second), 2)
	}
	if o.Still <= 0 {
		o.Still = 50 * time.Millisecond
	}
	var index uint64
	hot := false
	setHot := func(h bool) {
		hot = h
		if o.OnHot != nil {
			o.OnHot(h)
		}
	}
	for {
		switch {
		case o.Skip != nil && o.Skip():
			if ctx.Err() != nil {
				return
			}
		case o.Hot != nil && !hot && o.Hot.Allow():
			// Cool: the data changes no faster than Hot allows; follow it.
		default:
			if o.Hot != nil && !hot {
				setHot(true)
			}
			d, err := wait(ctx, o.Limiter)
			if err != nil {
				return // ctx ended
			}
			if d > 0 && o.OnLimited != nil {
				o.OnLimited(d)
			}
		}
		if o.OnRequest != nil {
			o.OnRequest()
		}
		called := time.Now()
		var queued atomic.Int64 // set by Sending: how long fetch queued before the query left
		v, meta, err := fetch(context.WithValue(ctx, sendingKey{}, &sending{called, &queued}), index)
		if ctx.Err() != nil {
			return
		}
		if hot && err == nil && index > 0 && time.Since(called)-time.Duration(queued.Load()) >= o.Still {
			setHot(false) // the index stood still for a while: cool again
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
				err = emit(v, meta, nil)
			}
			index = next
			if err == nil {
				o.Backoff.Reset()
				continue
			}
		} else {
			var zero T
			_ = emit(zero, beacon.QueryMeta{}, err)
		}
		index = 0
		if !o.Backoff.Wait(ctx) {
			return
		}
	}
}

// sendingKey is the context key of Run's sending cell in the context it
// gives a Fetch.
type sendingKey struct{}

// sending is where Sending reports to Run when a query left: how long
// after called, as a monotonic duration.
type sending struct {
	called time.Time
	queued *atomic.Int64
}

// Sending tells the Run that gave ctx to its Fetch that the query is
// leaving now: the time since Run called the Fetch was spent queueing
// locally (a slot, a request cap, a wait for an agent), and a hot loop's
// Still is timed from here, as net/http/httptrace's hooks ride a
// request's context. A fetch path that queues before it sends calls it
// just before the request goes out; called again (a fetch that asks
// twice), the last call wins. It does nothing with a context not from
// Run, and is safe from any goroutine.
func Sending(ctx context.Context) {
	if s, ok := ctx.Value(sendingKey{}).(*sending); ok {
		s.queued.Store(int64(time.Since(s.called)))
	}
}

// wait takes one of l's tokens, waiting for it until ctx ends, and says
// how long it waited.
func wait(ctx context.Context, l *rate.Limiter) (time.Duration, error) {
	r := l.Reserve()
	d := r.Delay()
	if d == 0 {
		return 0, nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return d, nil
	case <-ctx.Done():
		r.Cancel()
		return 0, ctx.Err()
	}
}

// Instances is the Fetch of q's instances from l: q at each query's
// index. q.WaitTime is each query's wait (zero: Consul's default, 5 min).
func Instances(l beacon.Lookup, q beacon.Query) Fetch[[]beacon.Instance] {
	return func(ctx context.Context, index uint64) ([]beacon.Instance, beacon.QueryMeta, error) {
		q.WaitIndex = index // q is this Fetch's own copy; Run calls it from one goroutine
		return l.Instances(ctx, q)
	}
}

// Checks is the Fetch of the checks q selects from f (the change feed's
// query): q at each query's index, with q.WaitTime as Instances has it.
func Checks(f beacon.ChangeFeed, q beacon.ChecksQuery) Fetch[[]beacon.CheckState] {
	return func(ctx context.Context, index uint64) ([]beacon.CheckState, beacon.QueryMeta, error) {
		q.WaitIndex = index
		return f.Checks(ctx, q)
	}
}
