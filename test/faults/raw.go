package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/protocol"
)

// stalled is a raw protocol-v1 client (no SDK) that says hello, joins a
// room and then never reads again: a slow consumer. Its socket's receive
// buffer is made small, as a phone on a bad link would have, so that the
// gateway's outbound queue, not the kernel, fills first.
type stalled struct {
	ws   *websocket.Conn
	user string
}

// dialStalled connects user to url, joins room and stops reading.
func dialStalled(ctx context.Context, url, user, room string) (*stalled, error) {
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{protocol.Subprotocol}, HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("stalled client: dial: %w", err)
	}
	s := &stalled{ws: ws, user: user}
	ws.SetReadLimit(1 << 20)
	if err := s.write(ctx, protocol.Frame{Type: protocol.TypeHello, User: user}); err != nil {
		return nil, err
	}
	if err := s.await(ctx, protocol.TypeWelcome); err != nil {
		return nil, err
	}
	if err := s.write(ctx, protocol.Frame{Type: protocol.TypeJoin, Room: room, Ref: "j"}); err != nil {
		return nil, err
	}
	if err := s.await(ctx, protocol.TypeJoined); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *stalled) write(ctx context.Context, f protocol.Frame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("stalled client: %w", err)
	}
	if err := s.ws.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("stalled client: write %s: %w", f.Type, err)
	}
	return nil
}

func (s *stalled) await(ctx context.Context, typ string) error {
	for {
		_, b, err := s.ws.Read(ctx)
		if err != nil {
			return fmt.Errorf("stalled client: waiting for %s: %w", typ, err)
		}
		var f protocol.Frame
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("stalled client: %w", err)
		}
		if f.Type == typ {
			return nil
		}
		if f.Type == protocol.TypeError {
			return fmt.Errorf("stalled client: error %s: %s", f.Code, f.Message)
		}
	}
}

// drain reads what the connection still holds until it ends (or ctx does)
// and returns how it ended: the close code the gateway sent, or -1 when
// the connection ended without a close frame.
func (s *stalled) drain(ctx context.Context) (websocket.StatusCode, int, error) {
	n := 0
	for {
		_, _, err := s.ws.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return -1, n, fmt.Errorf("stalled client: still open: %w", ctx.Err())
			}
			if code := websocket.CloseStatus(err); code != -1 {
				return code, n, nil
			}
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, n, nil
			}
			return -1, n, nil
		}
		n++
	}
}

// close drops the connection.
func (s *stalled) close() { _ = s.ws.CloseNow() }

// readDeadline bounds drain.
const readDeadline = 20 * time.Second
