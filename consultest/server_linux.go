package consultest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"syscall"
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
