package proctest

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer collects output (a child process's, or a command's run in-process)
// and is safe to read while it is written.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor waits until the output contains s, failing the test after
// timeout with the output so far.
func (b *Buffer) WaitFor(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output within %v; output:\n%s", s, timeout, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
