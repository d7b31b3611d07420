//go:build !linux

package childproc

import "os/exec"

// BindToParent does nothing where there is no parent-death signal: the
// tests' cleanups are then the only thing that stops their processes.
func BindToParent(cmd *exec.Cmd) {}
