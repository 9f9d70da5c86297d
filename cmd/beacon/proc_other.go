//go:build !linux

package main

import (
	"os"
	"os/exec"
)

func setChildAttrs(*exec.Cmd) {}

func signalChild(cmd *exec.Cmd, sig os.Signal) error { return cmd.Process.Signal(sig) }
