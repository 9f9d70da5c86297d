package consultest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// setProcAttr puts the agent in its own process group, so that killing the
// group leaves nothing behind, and has the kernel kill it when the test
// binary dies (timeout panic, SIGKILL), so no agent outlives a test run.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killProcess(cmd *exec.Cmd) {
	// The group id is the agent's pid (Setpgid). Kill the process itself
	// too, in case the group kill failed for any reason.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}

// loopbackIP returns a random address in 127.1.0.1–127.254.255.254. Linux
// routes all of 127/8 to the loopback interface, so each agent gets an
// address of its own and collides with nothing, not even agents of other
// test binaries choosing the same port numbers. 127.0.x.x is avoided: that
// is where other local services usually listen.
func loopbackIP() string {
	ip := fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
	// Some sandboxes route only 127.0.0.1; check before relying on it.
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return "127.0.0.1"
	}
	l.Close()
	return ip
}

// signalProcess stops (SIGSTOP) or continues (SIGCONT) the agent's group.
// Stopping returns once every thread of the agent is stopped: kill only
// queues the signal, and a thread running on another CPU could still answer
// a request or two.
func signalProcess(cmd *exec.Cmd, stop bool) error {
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		return err
	}
	if !stop {
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for !allStopped(cmd.Process.Pid) {
		if time.Now().After(deadline) {
			return errors.New("not stopped 5s after SIGSTOP")
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// allStopped reports whether every thread of pid is stopped, according to
// /proc/pid/task/*/stat (state T), or pid is gone.
func allStopped(pid int) bool {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return true // exited (and reaped)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			continue // the thread exited
		}
		// "tid (comm) S ...": the state follows the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			return false
		}
		switch b[i+2] {
		case 'T', 't', 'Z', 'X': // stopped, traced, zombie, dead
		default:
			return false
		}
	}
	return true
}
