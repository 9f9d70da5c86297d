package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StressEnv is the environment variable that puts tests with a stressed
// mode into it: BEACON_STRESS=1 (make faults-stress sets it).
const StressEnv = "BEACON_STRESS"

// Stressed reports whether BEACON_STRESS asks for stressed runs.
func Stressed() bool {
	v, err := strconv.ParseBool(os.Getenv(StressEnv))
	return err == nil && v
}

// StartHog starts one busy-looping process per core, at normal priority,
// for at most d, and returns a stop func that kills them and waits until
// they have exited (safe to call more than once, from any goroutine).
// They are separate processes, not goroutines, so they compete with Consul
// and the test binary for the machine the way other work on a busy host
// does, and the Go scheduler of the test cannot favour its own goroutines
// over them. Each ends by itself after d even if stop is never called
// (the test binary killed by -timeout, say). On error no hog runs. It
// needs no testing.TB, so a TestMain can use it (see StressMain).
func StartHog(d time.Duration) (stop func(), err error) {
	stop, _, err = startHog(d)
	return stop, err
}

func startHog(d time.Duration) (stop func(), pids []int, err error) {
	secs := strconv.Itoa(max(1, int(d.Seconds()+0.5)))
	var (
		cmds   []*exec.Cmd
		exited []chan struct{}
		once   sync.Once
	)
	stop = func() {
		once.Do(func() {
			for i, cmd := range cmds {
				// The process group: sh and anything it forked.
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited[i]
			}
		})
	}
	for range runtime.NumCPU() {
		// The shell loop checks the clock every 100,000 iterations, so the
		// hog ends by itself within a fraction of a second after d.
		cmd := exec.Command("sh", "-c", `end=$(( $(date +%s) + `+secs+` )); while [ "$(date +%s)" -lt "$end" ]; do i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; done`)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			stop()
			return func() {}, nil, fmt.Errorf("testutil: starting a cpu hog: %w", err)
		}
		ch := make(chan struct{})
		go func() { _ = cmd.Wait(); close(ch) }()
		cmds, exited = append(cmds, cmd), append(exited, ch)
		pids = append(pids, cmd.Process.Pid)
	}
	return stop, pids, nil
}

// CPUHog is StartHog for one test: the hog is killed in t.Cleanup, and a
// failure to start it fails the test. It returns the hog's process IDs.
func CPUHog(t testing.TB, d time.Duration) []int {
	t.Helper()
	stop, pids, err := startHog(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return pids
}

// StressIfAsked runs CPUHog for d when Stressed, and logs that it did.
func StressIfAsked(t testing.TB, d time.Duration) {
	t.Helper()
	if Stressed() {
		t.Logf("stressed: %d busy processes for up to %v", runtime.NumCPU(), d)
		CPUHog(t, d)
	}
}

// TestingM is what a TestMain runs: *testing.M, and what
// goleak.VerifyTestMain takes.
type TestingM interface{ Run() int }

// StressMain wraps a package's tests so that, when Stressed, a CPU hog
// (StartHog) runs through the whole of m.Run, at most d, and is stopped
// before Run returns, so before goleak looks for goroutines:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(testutil.StressMain(m, 15*time.Minute)) }
//
// Unstressed it returns m.
func StressMain(m TestingM, d time.Duration) TestingM {
	if !Stressed() {
		return m
	}
	return stressedM{m, d}
}

type stressedM struct {
	m TestingM
	d time.Duration
}

func (s stressedM) Run() int {
	stop, err := StartHog(s.d)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	fmt.Fprintf(os.Stderr, "stressed: %d busy processes for up to %v\n", runtime.NumCPU(), s.d)
	return s.m.Run()
}
