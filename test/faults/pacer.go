package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/protocol"
)

// pacer is a raw protocol-v1 client that writes send frames at a fixed
// rate without waiting for their acks, as a bot or a bridge does: unlike
// the SDK (which holds each send until the one before it is answered), it
// keeps frames arriving at the gateway through a Redis stall, so the
// gateway's rate limiter sees them as they come. It never writes faster
// than its rate: a send answered unavailable is queued and written again
// (same id) at one of its ticks, before any new one.
type pacer struct {
	ws   *websocket.Conn
	room string
	rate float64

	mu          sync.Mutex
	acked       map[string]int64 // id -> seq
	resend      []string         // ids answered unavailable, to write again
	rateLimited int
	unavailable int
	other       []string // other error answers
	closed      error    // why the connection ended, if it did
}

func dialPacer(ctx context.Context, url, user, room string, rate float64) (*pacer, error) {
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		return nil, fmt.Errorf("pacer: dial: %w", err)
	}
	p := &pacer{ws: ws, room: room, rate: rate, acked: map[string]int64{}}
	if err := p.write(ctx, protocol.Frame{Type: protocol.TypeHello, User: user}); err != nil {
		return nil, err
	}
	if _, b, err := ws.Read(ctx); err != nil || !strings.Contains(string(b), `"welcome"`) {
		return nil, fmt.Errorf("pacer: no welcome: %s %w", b, err)
	}
	return p, nil
}

func (p *pacer) write(ctx context.Context, f protocol.Frame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("pacer: %w", err)
	}
	if err := p.ws.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("pacer: write: %w", err)
	}
	return nil
}

// read records every answer until the connection ends.
func (p *pacer) read() {
	for {
		_, b, err := p.ws.Read(context.Background())
		if err != nil {
			p.mu.Lock()
			p.closed = err
			p.mu.Unlock()
			return
		}
		var f protocol.Frame
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		p.mu.Lock()
		switch {
		case f.Type == protocol.TypeAck:
			p.acked[f.ID] = f.Seq
		case f.Type == protocol.TypeError && f.Code == protocol.CodeRateLimited:
			p.rateLimited++
			p.resend = append(p.resend, f.Ref) // the ref is the id
		case f.Type == protocol.TypeError && f.Code == protocol.CodeUnavailable:
			p.unavailable++
			p.resend = append(p.resend, f.Ref)
		case f.Type == protocol.TypeError:
			p.other = append(p.other, f.Code+": "+f.Message)
		}
		p.mu.Unlock()
	}
}

// run writes n new sends over the window at the pacer's rate, then goes on
// writing the resends, at the same rate, until every send is acked or ctx
// ends.
func (p *pacer) run(ctx context.Context, n int) error {
	go p.read()
	tick := time.NewTicker(time.Duration(float64(time.Second) / p.rate))
	defer tick.Stop()
	next := 1
	for {
		p.mu.Lock()
		done := next > n && len(p.acked) == n
		var id string
		switch {
		case p.closed != nil:
			err := p.closed
			p.mu.Unlock()
			return fmt.Errorf("pacer: connection ended: %w", err)
		case len(p.resend) > 0:
			id, p.resend = p.resend[0], p.resend[1:]
		case next <= n:
			id = fmt.Sprintf("pace-%d", next)
			next++
		}
		p.mu.Unlock()
		if done {
			return nil
		}
		if id != "" {
			if err := p.write(ctx, protocol.Frame{Type: protocol.TypeSend, Ref: id, Room: p.room, ID: id, Body: id}); err != nil {
				return err
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("pacer: %d of %d acked: %w", len(p.acked), n, ctx.Err())
		}
	}
}
