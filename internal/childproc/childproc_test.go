//go:build linux

package childproc_test

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/childproc"
)

// A child bound to its parent dies with it: a shell starts `sleep 60` bound
// to itself, prints its PID and is killed; the sleep must be gone too.
func TestChildDiesWithParent(t *testing.T) {
	if os.Getenv("CHILDPROC_HELPER") == "1" {
		cmd := exec.Command("sleep", "60")
		childproc.BindToParent(cmd)
		if err := cmd.Start(); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString(strconv.Itoa(cmd.Process.Pid) + "\n")
		select {} // wait to be killed
	}
	parent := exec.Command(os.Args[0], "-test.run", "^TestChildDiesWithParent$")
	parent.Env = append(os.Environ(), "CHILDPROC_HELPER=1")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32)
	n, _ := out.Read(buf)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		_ = parent.Process.Kill()
		t.Fatalf("helper printed %q, want the child's pid", buf[:n])
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("child %d not running before the parent dies: %v", pid, err)
	}
	_ = parent.Process.Kill()
	_ = parent.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The child is not ours to reap: once killed it is gone (or a zombie
		// of init, which Kill(pid, 0) still finds, so read its state).
		state, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if errors.Is(err, os.ErrNotExist) || (err == nil && strings.Contains(string(state), ") Z ")) {
			return
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("child %d still running 5 s after its parent was killed", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
