package gateway

import (
	"context"
	"testing"
	"time"
)

// A connection tracked once the drain has begun is refused: Drain's
// snapshot of the connections it closes with 1012 could miss it, and it
// would be cut without a close frame at the drain timeout.
func TestTrackRefusesOnceDraining(t *testing.T) {
	g, err := New(Config{DevAuth: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx, cancel := context.WithCancel(context.Background())
	c := &wsConn{g: g, ctx: ctx, cancel: cancel}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if err := g.Drain(ctx2); err != nil {
		t.Fatal(err)
	}
	if g.track(c) {
		g.untrack(c)
		t.Fatal("a connection was tracked after the drain began")
	}
}
