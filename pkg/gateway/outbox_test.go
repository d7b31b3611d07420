package gateway

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/parley-chat/parley/pkg/protocol"
)

// stallWire is a wire whose writes wait until released, so that frames
// pile up in the outbox; it records what was written and how it closed.
type stallWire struct {
	writing chan struct{} // gets a value as each write begins
	release chan struct{}
	mu      sync.Mutex
	frames  []string
	code    int
	closed  chan struct{}
}

func newStallWire() *stallWire {
	return &stallWire{writing: make(chan struct{}, 100), release: make(chan struct{}), closed: make(chan struct{})}
}

func (w *stallWire) write(b []byte) error {
	w.writing <- struct{}{}
	<-w.release
	w.mu.Lock()
	w.frames = append(w.frames, string(b))
	w.mu.Unlock()
	return nil
}

func (w *stallWire) close(code int, _ string) {
	w.mu.Lock()
	w.code = code
	w.mu.Unlock()
	close(w.closed)
}

func (w *stallWire) abort()                     {}
func (w *stallWire) describe() (uint64, string) { return 1, "test" }

func testOutbox(t *testing.T, queue, bytes int) (*outbox, *stallWire) {
	t.Helper()
	g, err := New(Config{DevAuth: true, Logger: discardLogger(), OutboundQueue: queue, OutboundBytes: bytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	w := newStallWire()
	return &outbox{g: g, w: w}, w
}

// finish lets the writer go, closes the outbox (flushing) and returns what
// was written and the close code.
func finish(o *outbox, w *stallWire) ([]string, int) {
	close(w.release)
	o.close(protocol.CloseNormal, "", true)
	<-w.closed
	o.wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.frames, w.code
}

// The first frame occupies the writer (stalled); the rest wait in the
// queue and count against its limits.
func TestOutboxEphemeralDroppedFirst(t *testing.T) {
	o, w := testOutbox(t, 4, 1<<20)
	o.push([]byte("m0"), classLive) // taken by the writer, stalled
	<-w.writing                     // the writer holds m0; what follows waits in the queue
	o.push([]byte("t1"), classEphemeral)
	o.push([]byte("m1"), classLive)
	o.push([]byte("t2"), classEphemeral)
	o.push([]byte("m2"), classLive)           // queue full: 4 counted
	o.push([]byte("t3"), classEphemeral)      // dropped: full
	o.push([]byte("m3"), classLive)           // full: the queued ephemerals go, m3 stays
	o.pushCatchUp([]byte("c1"), []byte("c2")) // never counted
	got, code := finish(o, w)
	want := []string{"m0", "m1", "m2", "m3", "c1", "c2"}
	if !slices.Equal(got, want) || code != protocol.CloseNormal {
		t.Errorf("written %v, closed %d; want %v, closed %d", got, code, want, protocol.CloseNormal)
	}
}

// Live frames over the limit with no ephemeral frame to drop close the
// connection as a slow consumer, and what was queued is dropped.
func TestOutboxSlowConsumer(t *testing.T) {
	o, w := testOutbox(t, 2, 1<<20)
	o.push([]byte("m0"), classLive)
	<-w.writing // the writer holds m0; what follows waits in the queue
	o.push([]byte("m1"), classLive)
	o.push([]byte("m2"), classLive)
	o.push([]byte("m3"), classLive) // over: 1013
	o.push([]byte("m4"), classLive) // closing: ignored
	got, code := finish(o, w)
	if !slices.Equal(got, []string{"m0"}) || code != protocol.CloseTryAgainLater {
		t.Errorf("written %v, closed %d; want [m0], closed %d", got, code, protocol.CloseTryAgainLater)
	}
}

// The byte limit counts too, and catch-up frames never do.
func TestOutboxBytesAndCatchUp(t *testing.T) {
	o, w := testOutbox(t, 100, 10)
	o.push([]byte("m0"), classLive)
	<-w.writing // the writer holds m0; what follows waits in the queue
	var big []byte
	for i := range 20 {
		big = fmt.Appendf(big, "%d", i%10)
	}
	o.pushCatchUp(big, big, big) // 60 bytes of catch-up: fine
	o.push([]byte("12345"), classLive)
	o.push([]byte("123456"), classLive) // 11 bytes counted: over
	got, code := finish(o, w)
	if len(got) != 1 || code != protocol.CloseTryAgainLater {
		t.Errorf("written %d frames, closed %d; want 1 frame, closed %d", len(got), code, protocol.CloseTryAgainLater)
	}
}

// A failed write aborts the connection and accepts nothing more.
func TestOutboxWriteFailureAborts(t *testing.T) {
	g, err := New(Config{DevAuth: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	w := &failWire{aborted: make(chan struct{})}
	o := &outbox{g: g, w: w}
	o.push([]byte("m0"), classLive)
	<-w.aborted
	o.wait()
	o.push([]byte("m1"), classLive)
	o.wait()
	if w.writes != 1 {
		t.Errorf("%d writes, want 1: nothing is written after a failure", w.writes)
	}
}

type failWire struct {
	writes  int
	aborted chan struct{}
}

func (w *failWire) write([]byte) error         { w.writes++; return errors.New("broken pipe") }
func (w *failWire) close(int, string)          {}
func (w *failWire) abort()                     { close(w.aborted) }
func (w *failWire) describe() (uint64, string) { return 1, "test" }
