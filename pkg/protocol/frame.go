package protocol

import "time"

// Subprotocol is the WebSocket subprotocol that selects protocol v1. A
// WebSocket upgrade without it is served in plain-text mode.
const Subprotocol = "parley.v1"

// Frame types, client to server.
const (
	TypeHello   = "hello"
	TypeJoin    = "join"
	TypeSend    = "send"
	TypeLeave   = "leave"
	TypeHistory = "history" // also a server reply
	TypePing    = "ping"
	TypeTyping  = "typing"  // also relayed to the room's other members
	TypeRead    = "read"    // also the answer, and the sync to the user's other devices
	TypeRefresh = "refresh" // a fresh token for the connection
	TypeCreate  = "create"  // a room of a kind; answered "created"
	TypeInvite  = "invite"  // a user into a room; answered "invited"
	TypeRooms   = "rooms"   // the directory of public rooms; also the answer
	// TypePresence asks who is in a room; also the answer, and the event
	// of a user's devices in it changing (state "online" or "offline").
	TypePresence = "presence"
	// TypeSync joins every room the user is a member of at once; answered
	// "synced" after their joined frames.
	TypeSync = "sync"
)

// Frame types the server sends to every device of a user.
const (
	// TypeMembership says that the user became a member of a room
	// (state "member") or left it (state "left"), on any device.
	TypeMembership = "membership"
)

// Frame types, server to client.
const (
	TypeWelcome = "welcome"
	TypeJoined  = "joined"
	TypeMessage = "message"
	TypeAck     = "ack"
	TypeLeft    = "left"
	TypePong    = "pong"
	TypeError   = "error"
	// TypeTokenExpiring: the connection's token expires soon; send refresh.
	TypeTokenExpiring = "token_expiring"
	// TypeRefreshed answers a refresh that took effect.
	TypeRefreshed = "refreshed"
	TypeSynced    = "synced"
	TypeCreated   = "created"
	TypeInvited   = "invited"
)

// Frame is the union of every v1 frame. Fields that a frame type does not use
// are left at their zero value and omitted from the encoding.
type Frame struct {
	Type string `json:"type"`
	Ref  string `json:"ref,omitempty"`

	// hello, refresh
	Token  string `json:"token,omitempty"`
	User   string `json:"user,omitempty"`
	Name   string `json:"name,omitempty"` // welcome: the display name the token gives
	Device string `json:"device,omitempty"`
	Node   string `json:"node,omitempty"`
	// Expires is when the connection's token expires (TimeLayout), on
	// welcome, token_expiring and refreshed.
	Expires string `json:"expires,omitempty"`

	// join, send, leave, history, joined, message, ack
	Room  string `json:"room,omitempty"`
	Since *Since `json:"since,omitempty"`
	Epoch string `json:"epoch,omitempty"`
	Seq   int64  `json:"seq,omitempty"`
	First int64  `json:"first,omitempty"`
	// Recovered is set on joined when the join carried since.
	Recovered *bool `json:"recovered,omitempty"`

	ID   string `json:"id,omitempty"`
	From string `json:"from,omitempty"`
	TS   string `json:"ts,omitempty"`
	Body string `json:"body,omitempty"`

	// history request and reply
	Before   int64      `json:"before,omitempty"`
	Limit    int        `json:"limit,omitempty"`
	Messages []*Message `json:"messages,omitempty"`

	// membership: "member" or "left", and the room's kind
	State string `json:"state,omitempty"`
	Kind  string `json:"kind,omitempty"`

	// rooms (the directory): the room to list after, and where the next
	// page starts ("" when there is none)
	After string `json:"after,omitempty"`
	Next  string `json:"next,omitempty"`

	// presence: the users present (absent in rooms over the detail size),
	// the room's connection count, and in an event the user's devices
	Users   *[]PresentUser `json:"users,omitempty"`
	Count   int64          `json:"count,omitempty"`
	Devices int64          `json:"devices,omitempty"`

	// welcome: the user's rooms, absent when the store could not be read
	Rooms *[]RoomState `json:"rooms,omitempty"`
	// read answer: messages after the cursor still retained (absent: 0)
	Unread int64 `json:"unread,omitempty"`

	// error
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// RetryAfterMS is set on rate_limited errors: how long, in
	// milliseconds, the client should wait before it resends the refused
	// request (with the same id, for a send).
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// PresentUser is one user present in a room, on Devices connections.
type PresentUser struct {
	User    string `json:"user"`
	Devices int64  `json:"devices"`
}

// RoomState is one of a user's rooms, as welcome lists them: the room's
// head, the user's read cursor and the unread count derived from both.
type RoomState struct {
	Room   string `json:"room"`
	Kind   string `json:"kind"`            // "public", "private" or "direct"
	Epoch  string `json:"epoch,omitempty"` // absent while the room has no message
	Seq    int64  `json:"seq"`             // the head: the last assigned seq
	First  int64  `json:"first"`           // the oldest seq still in history
	Read   int64  `json:"read"`            // the user's read cursor in this epoch; 0: none
	Unread int64  `json:"unread"`          // retained messages after the cursor
	// Members is the member count, in the directory only.
	Members int64 `json:"members,omitempty"`
}

// Message is a chat message as it is stored in a room's history and
// delivered in a "message" frame. Its JSON form carries "type":"message", so
// the stored envelope is the frame itself and a gateway forwards it as is.
type Message struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Seq    int64  `json:"seq"`
	Epoch  string `json:"epoch"`
	ID     string `json:"id"`
	From   string `json:"from"`
	Device string `json:"device,omitempty"`
	TS     string `json:"ts"`
	Body   string `json:"body"`
}

// TimeLayout is the one form every time in the protocol takes: UTC with
// milliseconds, for example 2026-11-22T10:00:00.000Z.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// FormatTime formats t as TimeLayout in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// ParseTime parses a time in TimeLayout.
func ParseTime(s string) (time.Time, error) { return time.Parse(TimeLayout, s) }

// Bool returns a pointer to b, for Frame.Recovered.
func Bool(b bool) *bool { return &b }
