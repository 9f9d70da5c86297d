package main

import (
	"os"
	"os/exec"
	"syscall"
)

// setChildAttrs puts the command in its own process group, so a terminal's
// Ctrl-C reaches beacon alone and beacon deregisters before forwarding it,
// and has the kernel stop the command if beacon dies without cleaning up.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// signalChild sends sig to the command's process group: a shell wrapper's
// own children hear it too.
func signalChild(cmd *exec.Cmd, sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return cmd.Process.Signal(sig)
	}
	return syscall.Kill(-cmd.Process.Pid, s)
}
