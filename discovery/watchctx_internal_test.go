package discovery

import (
	"context"
	"errors"
	"testing"
	"time"
)

// newTestLife returns a watchLife under a lifetime of its own, ended at
// the test's end.
func newTestLife(t *testing.T) (*watchLife, *lifetime) {
	t.Helper()
	parent := &lifetime{}
	parent.begin()
	t.Cleanup(parent.end)
	return &watchLife{parent: parent}, parent
}

func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	if d == 0 {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// TestWatchLifeEnds: a watch's context ends when the watch stops or when
// the cache's does, whether Done was asked for before or after, and its
// Err agrees with Done.
func TestWatchLifeEnds(t *testing.T) {
	for _, tt := range []struct {
		name      string
		doneFirst bool // Done asked for before the end
		byParent  bool // the cache's context ends, not the watch
	}{
		{"stop, Done before", true, false},
		{"stop, Done after", false, false},
		{"cache closes, Done before", true, true},
		{"cache closes, Done after", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, parent := newTestLife(t)
			if err := l.Err(); err != nil {
				t.Fatalf("Err() before the end = %v, want nil", err)
			}
			var done <-chan struct{}
			if tt.doneFirst {
				done = l.Done()
				if closedWithin(done, 0) {
					t.Fatal("Done() closed before the end")
				}
			}
			if tt.byParent {
				parent.cancel()
			} else {
				l.stop()
				l.stop() // safe twice
			}
			if done == nil {
				done = l.Done()
			}
			if !closedWithin(done, 10*time.Second) {
				t.Fatal("Done() not closed after the end")
			}
			if err := l.Err(); !errors.Is(err, context.Canceled) {
				t.Errorf("Err() after the end = %v, want context.Canceled", err)
			}
			if got := context.Cause(l); !errors.Is(got, context.Canceled) {
				t.Errorf("context.Cause = %v, want context.Canceled", got)
			}
		})
	}
}

// TestWatchLifeErrClosesDone: once Err reports the cache's end, Done is
// closed, without waiting for the AfterFunc on the cache's context.
func TestWatchLifeErrClosesDone(t *testing.T) {
	l, parent := newTestLife(t)
	done := l.Done()
	parent.cancel()
	if l.Err() == nil {
		t.Fatal("Err() = nil after the cache's context ended")
	}
	if !closedWithin(done, 0) {
		t.Error("Done() still open after Err() reported the end")
	}
}

// TestWatchLifeDerived: contexts derived from a watch's end with it, and
// cost no goroutine (goleak at TestMain would see one left behind); one
// cancelled first is forgotten.
func TestWatchLifeDerived(t *testing.T) {
	l, _ := newTestLife(t)
	early, cancelEarly := context.WithCancel(l)
	cancelEarly()
	if n := len(l.links.Load().afters); n != 0 {
		t.Errorf("%d AfterFuncs kept for a cancelled child, want 0", n)
	}
	child, cancel := context.WithTimeout(l, time.Hour)
	defer cancel()
	grand, cancelGrand := context.WithCancelCause(child)
	defer cancelGrand(nil)
	l.stop()
	for _, c := range []context.Context{child, grand} {
		if !closedWithin(c.Done(), 10*time.Second) {
			t.Fatal("a derived context outlived the watch")
		}
		if !errors.Is(c.Err(), context.Canceled) {
			t.Errorf("derived Err() = %v, want context.Canceled", c.Err())
		}
	}
	if early.Err() == nil {
		t.Error("the child cancelled first is not cancelled")
	}
	// Derived after the end: ended at once.
	late, cancelLate := context.WithCancel(l)
	defer cancelLate()
	if !closedWithin(late.Done(), 10*time.Second) {
		t.Error("a context derived after the end is not done")
	}
}
