package blocking

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/time/rate"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/backoff"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// script answers queries from a list and records each query's index.
type script struct {
	mu      sync.Mutex
	answers []answer
	indexes []uint64
	done    chan struct{} // closed when the list is used up
}

type answer struct {
	index uint64
	err   error
}

func (s *script) Instances(ctx context.Context, q beacon.Query) ([]beacon.Instance, beacon.QueryMeta, error) {
	s.mu.Lock()
	s.indexes = append(s.indexes, q.WaitIndex)
	if len(s.answers) == 0 {
		s.mu.Unlock()
		close(s.done)
		<-ctx.Done()
		return nil, beacon.QueryMeta{}, ctx.Err()
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	s.mu.Unlock()
	if a.err != nil {
		return nil, beacon.QueryMeta{}, a.err
	}
	return []beacon.Instance{{ID: "x"}}, beacon.QueryMeta{LastIndex: a.index}, nil
}

// run plays answers through Run whose emit refuses the results listed
// in refuse (by position among emitted results), and returns the indexes
// the loop sent and how many results it emitted.
func run(t *testing.T, answers []answer, refuse map[int]bool) (indexes []uint64, emitted int) {
	t.Helper()
	s := &script{answers: answers, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		o := Options{Limiter: rate.NewLimiter(rate.Inf, 1), Backoff: backoff.Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond}}
		n := 0
		Run(ctx, Instances(s, beacon.Query{Service: "svc"}), o, func(_ []beacon.Instance, _ beacon.QueryMeta, err error) error {
			n++
			emitted = n
			if err == nil && refuse[n] {
				return errors.New("refused")
			}
			return nil
		})
	}()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not use up its answers")
	}
	cancel()
	<-stopped
	return s.indexes, emitted
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestIndexRules(t *testing.T) {
	unavailable := beacon.ErrUnavailable
	tests := []struct {
		name    string
		answers []answer
		refuse  map[int]bool
		want    []uint64 // the index each query carried
	}{
		{"follows the index", []answer{{index: 5}, {index: 7}}, nil, []uint64{0, 5, 7}},
		{"backwards resets to 0", []answer{{index: 9}, {index: 3}}, nil, []uint64{0, 9, 0}},
		{"below 1 counts as 1", []answer{{index: 0}, {index: 0}}, nil, []uint64{0, 1, 1}},
		{"0 after an error", []answer{{index: 5}, {err: unavailable}, {index: 6}}, nil, []uint64{0, 5, 0, 6}},
		{"0 after a refused answer", []answer{{index: 5}, {index: 8}, {index: 8}}, map[int]bool{2: true}, []uint64{0, 5, 0, 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := run(t, tt.answers, tt.refuse)
			if !equal(got, tt.want) {
				t.Errorf("indexes sent = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRefusedAnswerIsEmittedAgain: after a refused answer the loop asks
// from index 0, so the next answer is emitted even though its index did
// not move; an accepted answer with an unmoved index is not.
func TestRefusedAnswerIsEmittedAgain(t *testing.T) {
	_, emitted := run(t, []answer{{index: 5}, {index: 5}, {index: 5}}, map[int]bool{1: true})
	// 1: index 5, refused; 2: index 5 again from 0, accepted; 3: index 5
	// unmoved, not emitted.
	if emitted != 2 {
		t.Errorf("emitted %d results, want 2", emitted)
	}
}

// feedFunc is a beacon.ChangeFeed from a function.
type feedFunc func(ctx context.Context, q beacon.ChecksQuery) ([]beacon.CheckState, beacon.QueryMeta, error)

func (f feedFunc) Checks(ctx context.Context, q beacon.ChecksQuery) ([]beacon.CheckState, beacon.QueryMeta, error) {
	return f(ctx, q)
}

// TestFetchesCarryIndexAndWait: each Fetch sends its query at the index
// Run asks for, with the query's own wait and fields unchanged.
func TestFetchesCarryIndexAndWait(t *testing.T) {
	var got beacon.ChecksQuery
	checks := Checks(feedFunc(func(_ context.Context, q beacon.ChecksQuery) ([]beacon.CheckState, beacon.QueryMeta, error) {
		got = q
		return nil, beacon.QueryMeta{}, nil
	}), beacon.ChecksQuery{Consistency: beacon.ConsistencyStale, WaitTime: time.Minute})
	for _, index := range []uint64{0, 7} {
		if _, _, err := checks(context.Background(), index); err != nil {
			t.Fatal(err)
		}
		want := beacon.ChecksQuery{Consistency: beacon.ConsistencyStale, WaitIndex: index, WaitTime: time.Minute}
		if got != want {
			t.Errorf("Checks fetch at %d sent %+v, want %+v", index, got, want)
		}
	}
	s := &script{answers: []answer{{index: 3}, {index: 4}}, done: make(chan struct{})}
	insts := Instances(s, beacon.Query{Service: "svc", WaitTime: time.Minute})
	for _, index := range []uint64{9, 0} {
		_, _, _ = insts(context.Background(), index)
	}
	if !equal(s.indexes, []uint64{9, 0}) {
		t.Errorf("Instances fetch sent indexes %v, want [9 0]", s.indexes)
	}
}

// TestSkipBypassesTheLimiter: a query Skip lets through takes no token, so
// with a limiter that would allow one query an hour, the loop sends as many
// queries as Skip allows, and stops at the limiter when it does not.
func TestSkipBypassesTheLimiter(t *testing.T) {
	s := &script{answers: []answer{{index: 1}, {index: 2}, {index: 3}}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	var skips atomic.Int32
	skips.Store(3) // three queries skip the limiter; the fourth takes its one token
	go func() {
		defer close(stopped)
		o := Options{
			Limiter: rate.NewLimiter(rate.Every(time.Hour), 1),
			Skip:    func() bool { return skips.Add(-1) >= 0 },
		}
		Run(ctx, Instances(s, beacon.Query{Service: "svc"}), o, func([]beacon.Instance, beacon.QueryMeta, error) error { return nil })
	}()
	select {
	case <-s.done: // a fourth query went out after three answers
	case <-time.After(10 * time.Second):
		t.Fatalf("queries sent %v: the skipped ones waited for the limiter", s.indexes)
	}
	cancel()
	<-stopped
}

// hotLoop runs Run over a fetch that answers after delay with an index one
// higher each time, with the given Hot limiter and Still, and a ceiling of
// one query per 100 ms after a burst of 1, until n queries have been sent
// (or a generous deadline passes); it returns the queries sent, the OnHot
// calls, the queries that waited on the ceiling, how long it ran, and for
// every query after which the loop cooled, how long that query took from
// OnRequest to emit: after any ceiling wait, and around Run's own timing,
// so a loop that cooled by the rules took at least Still here.
// Stopping on a count, not a window, lets a loaded machine take longer
// without sending fewer queries than the test looks at.
func hotLoop(t *testing.T, hot *rate.Limiter, delay, still time.Duration, n int64) (queries int64, heat []bool, limited int64, elapsed time.Duration, cooled []time.Duration) {
	t.Helper()
	var sent atomic.Int64
	var mu sync.Mutex
	// Run calls OnRequest, OnHot and emit from its own goroutine, in that
	// order for a query: no lock needed for these two.
	var asked time.Time
	cooling := false
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fetch := func(ctx context.Context, index uint64) (int, beacon.QueryMeta, error) {
		i := sent.Add(1)
		if i == n {
			cancel()
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return 0, beacon.QueryMeta{}, ctx.Err()
		}
		return 0, beacon.QueryMeta{LastIndex: uint64(i)}, nil
	}
	o := Options{Limiter: rate.NewLimiter(rate.Every(100*time.Millisecond), 1), Hot: hot, Still: still,
		OnHot:     func(h bool) { mu.Lock(); heat = append(heat, h); mu.Unlock(); cooling = !h },
		OnLimited: func(time.Duration) { mu.Lock(); limited++; mu.Unlock() },
		OnRequest: func() { asked = time.Now() },
	}
	start := time.Now()
	Run(ctx, fetch, o, func(int, beacon.QueryMeta, error) error {
		if cooling {
			cooled = append(cooled, time.Since(asked))
			cooling = false
		}
		return nil
	})
	elapsed = time.Since(start)
	if q := sent.Load(); q < n {
		t.Fatalf("the loop sent %d of %d queries within 30 s", q, n)
	}
	mu.Lock()
	defer mu.Unlock()
	return sent.Load(), heat, limited, elapsed, cooled
}

// An index that moves at every query (answers at once) makes the loop hot
// after the Hot burst: then it polls at the ceiling. Still is longer than
// the run, so the loop cannot cool however late its goroutine runs: the
// queries before it went hot took Hot's tokens (a burst of 5, then one per
// 100 ms), those after take the ceiling's (a burst of 1, then one per
// 100 ms), and only one bucket admits queries at a time. However slow the
// machine, the 20 queries cannot come sooner than that: at most
// 5 + 1 + elapsed/100 ms, and 1 of slack (about 1.5 s for the 20 on an
// idle machine). TestCeilingWaitDoesNotCool checks the cooling this test
// rules out.
//
// This test can fail: with a Hot limiter that never runs dry
// (rate.NewLimiter(rate.Inf, 5)) the 20 queries go out in about 20 ms
// (tried: 25 ms under -race) against a bound of 7 for that time, and OnHot
// is never called.
func TestHotLoopPollsAtTheCeiling(t *testing.T) {
	const n = 20
	q, heat, limited, elapsed, _ := hotLoop(t, rate.NewLimiter(rate.Every(100*time.Millisecond), 5), time.Millisecond, time.Minute, n)
	limit := 5 + 1 + int64(elapsed/(100*time.Millisecond)) + 1
	t.Logf("%d queries in %v (limit %d), OnHot %v, %d waited on the ceiling", q, elapsed.Round(time.Millisecond), limit, heat, limited)
	if q > limit {
		t.Errorf("a hot loop sent %d queries in %v, want at most %d (5 + 1 + one per 100 ms + 1)", q, elapsed, limit)
	}
	// After the switch every query takes a ceiling token: all but its
	// burst of 1 wait for one unless the loop is itself slower than the
	// ceiling, so at least one of the 14 or so waits.
	if len(heat) != 1 || !heat[0] || limited < 1 {
		t.Errorf("OnHot calls = %v, limited = %d; want [true] and at least 1", heat, limited)
	}
}

// A hot loop's wait for a ceiling token is not time the index stood
// still: with Still (50 ms) below the ceiling's interval (100 ms) and an
// index that moves at every query (answers in 1 ms), the loop may cool
// only after a query that itself took at least Still, which on a loaded
// machine one may (its goroutine descheduled): so the test does not ask
// that the loop never cools, only that each cooling follows such a query,
// timed from OnRequest (after any ceiling wait) to emit (after Run's
// check), a span that holds Run's own.
//
// This test can fail: with called := time.Now() moved above the switch in
// Run (so the ceiling wait counts toward Still), the loop cooled after
// queries of about 1 ms (tried: OnHot [true false true false ...], 10
// coolings after queries of 1.1 to 1.5 ms).
func TestCeilingWaitDoesNotCool(t *testing.T) {
	const still = 50 * time.Millisecond
	q, heat, limited, elapsed, cooled := hotLoop(t, rate.NewLimiter(rate.Every(time.Hour), 3), time.Millisecond, still, 15)
	t.Logf("%d queries in %v, OnHot %v, %d waited on the ceiling, cooled after queries of %v", q, elapsed.Round(time.Millisecond), heat, limited, cooled)
	if len(heat) == 0 || !heat[0] {
		t.Fatalf("OnHot calls = %v: the loop never went hot", heat)
	}
	for _, d := range cooled {
		if d < still {
			t.Errorf("the loop cooled after a query of %v, want only after one of at least Still (%v): the ceiling wait counted", d, still)
			break
		}
	}
}

// Answers that each wait for the data (a blocking query held at least
// Still) never make the loop hot, however slow the ceiling: each query
// takes a Hot token, which the wait refills (each answer takes at least
// 30 ms, Hot refills one per 20 ms: a slower machine only refills more).
func TestBlockingAnswersStayCool(t *testing.T) {
	q, heat, limited, elapsed, _ := hotLoop(t, rate.NewLimiter(rate.Every(20*time.Millisecond), 3), 30*time.Millisecond, 20*time.Millisecond, 20)
	t.Logf("a cool loop sent %d queries in %v", q, elapsed.Round(time.Millisecond))
	if len(heat) != 0 || limited != 0 {
		t.Errorf("OnHot calls = %v, limited = %d; want none", heat, limited)
	}
}

// A hot loop cools when a blocking query waits at least Still: the next
// queries go out without the ceiling again.
func TestHotLoopCools(t *testing.T) {
	var n atomic.Int64
	var heat []bool
	fetch := func(ctx context.Context, index uint64) (int, beacon.QueryMeta, error) {
		i := n.Add(1)
		delay := time.Millisecond
		if i == 6 {
			delay = 50 * time.Millisecond // the index stands still once
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return 0, beacon.QueryMeta{}, ctx.Err()
		}
		return 0, beacon.QueryMeta{LastIndex: uint64(i)}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := Options{Limiter: rate.NewLimiter(rate.Every(10*time.Millisecond), 1), Hot: rate.NewLimiter(rate.Every(time.Hour), 3), Still: 20 * time.Millisecond,
		OnHot: func(h bool) {
			heat = append(heat, h)
			if len(heat) == 2 {
				cancel()
			}
		},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, fetch, o, func(int, beacon.QueryMeta, error) error { return nil })
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		t.Fatal("the loop never cooled")
	}
	// (The Hot bucket is dry: the query after cooling may find the loop hot again.)
	if len(heat) < 2 || !heat[0] || heat[1] {
		t.Errorf("OnHot calls = %v, want [true false ...]", heat)
	}
}

// A hot loop does not cool while its queries only queue locally: time a
// fetch spends before Sending (a long-poll slot, a request cap) is not
// time the index stood still. The loop cools only when a query waits
// Still after it was sent.
//
// This test can fail: timed from the call to fetch, every query here
// (queued 80 ms) cools the loop, which goes hot again at the next.
func TestQueueingDoesNotCool(t *testing.T) {
	const (
		still = 40 * time.Millisecond
		queue = 2 * still // each query's local wait before it is sent
		stood = 8         // the query whose answer waits on the agent
		last  = 10
	)
	type event struct {
		hot     bool
		fetched int64 // fetches called when OnHot was
	}
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fetch := func(ctx context.Context, index uint64) (int, beacon.QueryMeta, error) {
		i := n.Add(1)
		if i > last {
			cancel()
			return 0, beacon.QueryMeta{}, ctx.Err()
		}
		wait := func(d time.Duration) error {
			tm := time.NewTimer(d)
			defer tm.Stop()
			select {
			case <-tm.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := wait(queue); err != nil { // queued locally
			return 0, beacon.QueryMeta{}, err
		}
		Sending(ctx)
		if i == stood {
			if err := wait(2 * still); err != nil { // the index stands still
				return 0, beacon.QueryMeta{}, err
			}
		}
		return 0, beacon.QueryMeta{LastIndex: uint64(i)}, nil
	}
	var events []event // appended on Run's goroutine only; read after it returns
	o := Options{Limiter: rate.NewLimiter(rate.Inf, 1), Hot: rate.NewLimiter(rate.Every(time.Hour), 3), Still: still,
		OnHot: func(h bool) { events = append(events, event{h, n.Load()}) },
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, fetch, o, func(int, beacon.QueryMeta, error) error { return nil })
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatal("the loop did not end")
	}
	// Hot before the 4th query (3 Hot tokens), cool after the 8th answer
	// only, hot again before the 9th (the Hot bucket is dry).
	want := []event{{true, 3}, {false, stood}, {true, stood}}
	if !slices.Equal(events, want) {
		t.Errorf("OnHot calls (heat, fetches called) = %v, want %v", events, want)
	}
}
