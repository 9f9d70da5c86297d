//go:build !linux

package consultest

import (
	"errors"
	"os/exec"
)

// setProcAttr does nothing: process groups and parent-death signals are
// Linux (or Unix) specific. A dev agent starts no children, so killing the
// process is enough; an agent outlives a test binary that is itself killed.
func setProcAttr(*exec.Cmd) {}

func killProcess(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

// loopbackIP returns 127.0.0.1: elsewhere (macOS, Windows) the rest of 127/8
// is usually not configured, so agents differ by port only.
func loopbackIP() string { return "127.0.0.1" }

// signalProcess would stop or continue the agent; it is implemented for
// Linux only.
func signalProcess(*exec.Cmd, bool) error {
	return errors.New("pausing agents is supported on Linux only")
}
