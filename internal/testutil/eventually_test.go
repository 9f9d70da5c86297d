package testutil

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
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

func TestCPUHog(t *testing.T) {
	pids := CPUHog(t, 30*time.Second)
	if len(pids) == 0 {
		t.Fatal("no hog started")
	}
	// Each hog must burn CPU: its utime+stime (clock ticks, 100 a second)
	// grows by most of a core's second within a few seconds, even on a
	// machine the hogs share with the test.
	ticks := func(pid int) int {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		u, _ := strconv.Atoi(f[11])
		s, _ := strconv.Atoi(f[12])
		return u + s
	}
	Eventually(t, 20*time.Second, "every hog burned 0.5 s of CPU", func() error {
		for _, pid := range pids {
			if n := ticks(pid); n < 50 {
				return fmt.Errorf("pid %d used %d ticks", pid, n)
			}
		}
		return nil
	})
}

func TestStartHogStops(t *testing.T) {
	stop, pids, err := startHog(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != runtime.NumCPU() {
		t.Errorf("startHog started %d processes, want %d (one per core)", len(pids), runtime.NumCPU())
	}
	stop()
	stop() // safe twice
	for _, pid := range pids {
		// Reaped by stop: the PID is gone (signal 0 checks existence).
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("hog %d still exists after stop", pid)
		}
	}
}

type countingM struct{ runs int }

func (m *countingM) Run() int { m.runs++; return 7 }

func TestStressMain(t *testing.T) {
	t.Setenv(StressEnv, "")
	m := &countingM{}
	if got := StressMain(m, time.Second); got != TestingM(m) {
		t.Errorf("StressMain unstressed = %v, want m itself", got)
	}
	t.Setenv(StressEnv, "1")
	if code := StressMain(m, time.Second).Run(); code != 7 || m.runs != 1 {
		t.Errorf("StressMain stressed: Run = %d after %d runs of m, want 7 after 1", code, m.runs)
	}
}
