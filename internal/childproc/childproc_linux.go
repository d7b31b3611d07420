package childproc

import (
	"os/exec"
	"syscall"
)

// BindToParent makes cmd, not yet started, receive SIGKILL when the process
// that starts it dies (Linux's parent-death signal). Call it before
// cmd.Start.
func BindToParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
