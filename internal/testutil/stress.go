package testutil

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
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

// CPUHog starts one busy-looping process per core, at normal priority, for
// at most d, and kills them in t.Cleanup. They are separate processes, not
// goroutines, so they compete with Consul and the test binary for the
// machine the way other work on a busy host does, and the Go scheduler of
// the test cannot favour its own goroutines over them. It returns their
// process IDs.
func CPUHog(t testing.TB, d time.Duration) []int {
	t.Helper()
	var pids []int
	secs := strconv.Itoa(max(1, int(d.Seconds()+0.5)))
	for range runtime.NumCPU() {
		// The shell loop checks the clock every 100,000 iterations, so the
		// hog ends by itself even if the test binary is killed.
		cmd := exec.Command("sh", "-c", `end=$(( $(date +%s) + `+secs+` )); while [ "$(date +%s)" -lt "$end" ]; do i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; done`)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("cpu hog: %v", err)
		}
		pids = append(pids, cmd.Process.Pid)
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		})
	}
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
