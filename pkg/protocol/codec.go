package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrBadFrame is wrapped by every error Decode returns for input that is
// not a valid client frame. Such errors map to CodeBadRequest.
var ErrBadFrame = errors.New("bad frame")

// Error is an error that carries a protocol error code, so that a gateway can
// answer it with an error frame.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

func badFrame(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadFrame}, args...)...)
}

// Decode parses one client frame and checks it: valid UTF-8, one JSON
// object, a known client type and the fields that type requires. The error,
// if any, wraps ErrBadFrame and says what is wrong in words a client
// developer can act on.
func Decode(data []byte) (*Frame, error) {
	if !utf8.Valid(data) {
		return nil, badFrame("frame is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var f Frame
	if err := dec.Decode(&f); err != nil {
		return nil, badFrame("malformed JSON: %v", err)
	}
	if dec.More() {
		return nil, badFrame("malformed JSON: more than one value in the frame")
	}
	if err := f.Validate(); err != nil {
		return &f, err
	}
	return &f, nil
}

// Validate checks that f is a well-formed client frame.
func (f *Frame) Validate() error {
	switch f.Type {
	case "":
		return badFrame(`missing "type"`)
	case TypeHello:
		// Neither "token" nor "user" is required here: the token may have
		// come in the upgrade's Authorization header.
		if len(f.Device) > 64 {
			return badFrame(`"device" is longer than 64 bytes`)
		}
		return nil
	case TypeJoin, TypeLeave:
		if err := checkRoom(f.Room); err != nil {
			return err
		}
		if f.Since != nil && f.Since.Seq < 0 {
			return badFrame(`"since.seq" must not be negative`)
		}
		if f.Since != nil && f.Since.Epoch == "" && f.Since.Seq > 0 {
			// Only an empty room has no epoch, and it has no seq either: a
			// position past 0 in no epoch names nothing.
			return badFrame(`"since" with "seq" > 0 needs the "epoch" that seq belongs to`)
		}
		return nil
	case TypeSend:
		if err := checkRoom(f.Room); err != nil {
			return err
		}
		if f.ID == "" {
			return badFrame(`send needs "id", the idempotency key`)
		}
		if !ValidID(f.ID) {
			return badFrame(`"id" must be 1-64 printable ASCII characters without spaces`)
		}
		return nil
	case TypeTyping:
		return checkRoom(f.Room)
	case TypePresence:
		if f.Room == "" && f.User != "" {
			if !ValidUser(f.User) {
				return badFrame("invalid user name %q", f.User)
			}
			return nil
		}
		return checkRoom(f.Room)
	case TypeCreate:
		if err := checkRoom(f.Room); err != nil {
			return err
		}
		if f.Kind != "" && f.Kind != "public" && f.Kind != "private" {
			return badFrame(`"kind" is "public" or "private"`)
		}
		return nil
	case TypeInvite:
		if err := checkRoom(f.Room); err != nil {
			return err
		}
		if !ValidUser(f.User) {
			return badFrame(`invite needs a valid "user"`)
		}
		return nil
	case TypeRooms:
		if f.Limit < 0 {
			return badFrame(`"limit" must not be negative`)
		}
		return nil
	case TypeRead:
		if err := checkRoom(f.Room); err != nil {
			return err
		}
		if f.Seq < 0 {
			return badFrame(`"seq" must not be negative`)
		}
		if f.Seq > 0 && f.Epoch == "" {
			return badFrame(`read with "seq" > 0 needs the "epoch" that seq belongs to`)
		}
		return nil
	case TypeHistory:
		if err := checkRoom(f.Room); err != nil {
			return err
		}
		if f.Before < 0 || f.Limit < 0 {
			return badFrame(`"before" and "limit" must not be negative`)
		}
		return nil
	case TypePing, TypeSync:
		return nil
	case TypeRefresh:
		if f.Token == "" {
			return badFrame(`refresh needs "token", the fresh token`)
		}
		return nil
	default:
		return badFrame("unknown frame type %q", f.Type)
	}
}

func checkRoom(room string) error {
	if room == "" {
		return badFrame(`missing "room"`)
	}
	if !ValidRoom(room) {
		return badFrame("invalid room name %q: 1-64 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit", room)
	}
	return nil
}

// Encode serialises a frame (or a *Message) as JSON.
func Encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode frame: %w", err)
	}
	return b, nil
}

// ErrorFrame returns an error frame answering ref.
func ErrorFrame(ref, code, msg string) *Frame {
	return &Frame{Type: TypeError, Ref: ref, Code: code, Message: msg}
}

// DecodeMessage parses a stored message envelope.
func DecodeMessage(data []byte) (*Message, error) {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: message envelope: %v", ErrBadFrame, err)
	}
	if m.Type != TypeMessage || m.Room == "" || m.Seq <= 0 {
		return nil, fmt.Errorf("%w: message envelope lacks type, room or seq", ErrBadFrame)
	}
	return &m, nil
}
