package client

import (
	"errors"
	"fmt"
	"strings"

	"github.com/coder/websocket"
	"github.com/parley-chat/parley/pkg/protocol"
)

// ErrClosed is returned by calls on a Client that has stopped, and by calls
// still pending when it stops. After a fatal error (a token rejected on
// reconnect) the error wraps both ErrClosed and the cause.
var ErrClosed = errors.New("parley client: closed")

// errReplyTimeout is the cause of a connection dropped because a request
// went unanswered for Config.AckTimeout.
var errReplyTimeout = errors.New("no reply within AckTimeout")

// fatalError marks an error that must stop reconnecting: the server refused
// the credentials.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

func unwrapFatal(err error) error {
	var f *fatalError
	if errors.As(err, &f) {
		return f.err
	}
	return err
}

// closeError reports a close frame received from the server. It unwraps to
// websocket.CloseError, so websocket.CloseStatus works on it.
type closeError struct {
	op string
	ce websocket.CloseError
}

func (e *closeError) Error() string {
	return fmt.Sprintf("%s: connection closed by server with code %d (%v), reason %q", e.op, int(e.ce.Code), e.ce.Code, e.ce.Reason)
}

func (e *closeError) Unwrap() error { return e.ce }

// connError wraps an error of the websocket library so that the close code
// and reason, if any, are in its text.
func connError(op string, err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return &closeError{op: op, ce: ce}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// endsClient reports whether cause, why a live connection ended, must
// stop the Client rather than make it reconnect: a close with 1008
// (policy), such as the server API's disconnect of the user, which says
// not to come back with the same credentials. The one exception is the
// gateway's close at the token's expiry ("token expired") when
// TokenSource can give a fresh token (refreshable).
func endsClient(cause error, refreshable bool) bool {
	var ce websocket.CloseError
	if !errors.As(cause, &ce) || ce.Code != websocket.StatusPolicyViolation {
		return false
	}
	return !(refreshable && strings.HasPrefix(ce.Reason, "token expired"))
}

// retryable reports whether an error code from the server means "try again
// later" rather than "no".
func retryable(code string) bool {
	switch code {
	case protocol.CodeUnavailable, protocol.CodeInternal, protocol.CodeRateLimited:
		return true
	}
	return false
}

func frameError(f *protocol.Frame) *protocol.Error {
	return &protocol.Error{Code: f.Code, Msg: f.Message}
}

func badRequest(format string, args ...any) *protocol.Error {
	return protocol.Errorf(protocol.CodeBadRequest, format, args...)
}
