package testutil

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB whose Fatalf records the message and ends the
// goroutine, as testing.T's does.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(r)
}

// run calls f with r, recovering the panic of r's Fatalf.
func (r *recorder) run(f func(testing.TB)) (failed bool) {
	defer func() {
		if p := recover(); p != nil {
			if p != r {
				panic(p)
			}
			failed = true
		}
	}()
	f(r)
	return false
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, time.Minute, "third call", func() error {
		n++
		return Want(n == 3, "call %d", n)
	})
	if n != 3 {
		t.Errorf("Eventually returned after %d calls, want 3: it must stop at the first nil", n)
	}

	r := &recorder{TB: t}
	failed := r.run(func(tb testing.TB) {
		Eventually(tb, time.Millisecond, "never", func() error { return errors.New("still not") })
	})
	if !failed || !strings.Contains(r.msg, "never: not within 1ms: still not") {
		t.Errorf("Eventually(never true) failed = %v with %q, want a failure naming the condition and its last error", failed, r.msg)
	}
}

func TestWant(t *testing.T) {
	if err := Want(true, "x"); err != nil {
		t.Errorf("Want(true) = %v, want nil", err)
	}
	if err := Want(false, "got %d", 2); err == nil || err.Error() != "got 2" {
		t.Errorf("Want(false, got %%d, 2) = %v, want \"got 2\"", err)
	}
}
