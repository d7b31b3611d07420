package gateway

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// The inbox hands requests to its handler in arrival order, with one
// handler goroutine at a time, blocks the pusher at maxPending (reporting
// how long), and drops what waits on close.
func TestInboxOrderAndBound(t *testing.T) {
	var mu sync.Mutex
	var got []int
	release, started := make(chan struct{}), make(chan struct{})
	in := &inbox{}
	in.h = handlerFunc(func(r request) {
		if r.data[0] == 0 {
			close(started)
			<-release // the first request holds the handler
		}
		mu.Lock()
		got = append(got, int(r.data[0]))
		mu.Unlock()
	})
	ctx := context.Background()
	for i := range maxPending + 1 { // the first is taken by the handler, maxPending wait
		if i == 1 {
			<-started
		}
		if held, ok := in.push(ctx, request{data: []byte{byte(i)}}); !ok || held != 0 {
			t.Fatalf("push %d: held %v ok %v", i, held, ok)
		}
	}
	pushed := make(chan time.Duration)
	go func() {
		held, _ := in.push(ctx, request{data: []byte{byte(maxPending + 1)}})
		pushed <- held
	}()
	// Wait until the pusher blocks: it leaves a channel to be woken by.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		in.mu.Lock()
		blocked := in.space != nil
		in.mu.Unlock()
		if blocked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the push past maxPending did not block")
		}
	}
	close(release)
	if held := <-pushed; held <= 0 {
		t.Fatalf("a push past maxPending was not held (held %v)", held)
	}
	in.wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != maxPending+2 {
		t.Fatalf("handled %d, want %d", len(got), maxPending+2)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("handled out of order: %v", got)
		}
	}
	in.close()
	if _, ok := in.push(ctx, request{data: []byte{0}}); ok {
		t.Fatal("push after close was taken")
	}
}

// handlerFunc is a request handler made of a func, for tests.
type handlerFunc func(request)

func (f handlerFunc) handleRequest(r request) { f(r) }
