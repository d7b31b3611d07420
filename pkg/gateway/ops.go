package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// This file holds the gateway's operations, free of any transport: each
// takes the principal that asks and returns a result or an *opError that
// names a protocol error code. The WebSocket (session.go) and plain-text
// (plaintext.go) transports call them; so will any other.

// principal is who makes a request: an authenticated user and one of
// their devices, and the room patterns their token allows (nil: every
// room; see auth.Claims.Allows).
type principal struct {
	user, device string
	rooms        []string
}

// opError is an operation's refusal: a protocol error code (protocol.Code*)
// and a message for the client. A transport turns it into an error frame, a
// close or an HTTP status.
type opError struct {
	code, msg string
}

func (e *opError) Error() string { return e.code + ": " + e.msg }

// refusal returns err as an *opError. A failed broker call is unavailable
// when the store could not be reached in time (or the request was cut),
// else internal (logged here: the client is told nothing more).
func (g *Gateway) refusal(ctx context.Context, err error) *opError {
	if oe, ok := errors.AsType[*opError](err); ok {
		return oe
	}
	if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, broker.ErrClosed) || ctx.Err() != nil {
		return &opError{protocol.CodeUnavailable, "message store unreachable; retry later"}
	}
	g.log.Error("broker call failed", "err", err)
	return &opError{protocol.CodeInternal, "internal error"}
}

// checkRoom says whether p may use room at all: not a direct room, and
// one the token allows.
func (g *Gateway) checkRoom(p principal, room string) error {
	if protocol.DirectRoom(room) {
		return &opError{protocol.CodeForbidden, `rooms starting "dm:" are reserved for direct rooms`}
	}
	if !(auth.Claims{Rooms: p.rooms}).Allows(room) {
		return &opError{protocol.CodeForbidden, fmt.Sprintf("your token does not allow room %s", room)}
	}
	return nil
}

// join makes sub, a connection of p, a member of room, with the catch-up
// invariant 4 asks for: everything after since when it is given, else the
// last Backlog messages. ref tags the subscriber's joined answer.
func (g *Gateway) join(ctx context.Context, p principal, sub subscriber, room string, since *protocol.Position, ref string) (*member, error) {
	if err := g.checkRoom(p, room); err != nil {
		return nil, err
	}
	m, err := g.hub.join(ctx, sub, room, since, ref)
	if err != nil {
		return nil, g.refusal(ctx, err)
	}
	return m, nil
}

// leave ends a membership that join returned.
func (g *Gateway) leave(m *member) { g.hub.remove(m) }

// publish stores and publishes body as p's message id in room.
func (g *Gateway) publish(ctx context.Context, p principal, room, id, body string) (broker.Ack, error) {
	if err := g.checkRoom(p, room); err != nil {
		return broker.Ack{}, err
	}
	if len(body) > g.cfg.MaxBodyBytes {
		return broker.Ack{}, &opError{protocol.CodeTooLarge, fmt.Sprintf("body is %d bytes; the limit is %d", len(body), g.cfg.MaxBodyBytes)}
	}
	start := time.Now()
	ack, err := g.broker.Publish(ctx, broker.Publication{Room: room, ID: id, From: p.user, Device: p.device, Body: body})
	if err != nil {
		return ack, g.refusal(ctx, err)
	}
	g.metrics.publishSeconds.Observe(time.Since(start).Seconds())
	return ack, nil
}

// Paging of history.
const (
	defaultHistoryPage = 50
	maxHistoryPage     = 200
)

// history returns up to limit of room's messages before seq before (from
// the head when before <= 0), oldest first: limit <= 0 means 50, and at
// most 200 come at once.
func (g *Gateway) history(ctx context.Context, p principal, room string, before int64, limit int) (broker.Range, error) {
	if err := g.checkRoom(p, room); err != nil {
		return broker.Range{}, err
	}
	if limit <= 0 {
		limit = defaultHistoryPage
	}
	rng, err := g.broker.Before(ctx, room, before, min(limit, maxHistoryPage))
	if err != nil {
		return rng, g.refusal(ctx, err)
	}
	return rng, nil
}
