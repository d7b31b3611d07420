package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/pkg/protocol"
)

// ErrNoRoom is returned by AddMember for a room that was never created
// (EnsureRoom creates it).
var ErrNoRoom = errors.New("no such room")

// ErrNotMember is returned by MarkRead for a room the user is not a member
// of: a cursor exists only for a membership, so that the user's rooms and
// cursors stay one list.
var ErrNotMember = errors.New("not a member")

// RoomKind says who may be in a room.
type RoomKind string

const (
	// PublicRoom: anyone may join; the room is created by its first join
	// or publish, and listed in the directory.
	PublicRoom RoomKind = "public"
	// PrivateRoom: members only.
	PrivateRoom RoomKind = "private"
	// DirectRoom: a conversation of two users, named dm:<a>:<b>.
	DirectRoom RoomKind = "direct"
)

// Valid reports whether k is one of the three kinds.
func (k RoomKind) Valid() bool {
	return k == PublicRoom || k == PrivateRoom || k == DirectRoom
}

// RoomInfo is what the store knows of a room besides its history.
type RoomInfo struct {
	Room    string
	Kind    RoomKind
	Members int64  // member count
	Creator string // who created it ("" for a public room created implicitly)
	Created string // protocol.TimeLayout
}

// Membership is one room of a user, as welcome lists it.
type Membership struct {
	Room string
	Kind RoomKind
	// Head is the room's epoch, head seq and oldest retained seq.
	Head Position
	// Read is the user's read cursor (epoch, seq); zero when none.
	Read protocol.Position
	// Unread is how many retained messages come after Read: see Unread.
	Unread int64
}

// Unread counts the messages of a room with head that a user whose read
// cursor is read has not read and can still fetch: Seq - max(read.Seq,
// First-1) when read is in the head's epoch, else every retained message
// (a cursor of another epoch, or none, read nothing of this one). It is
// never negative, and 0 for an empty room. Counts are derived from the head
// and the cursor, never written per message: a publish costs nothing more
// for them.
func Unread(head Position, read protocol.Position) int64 {
	if head.Seq <= 0 || head.First <= 0 {
		return 0
	}
	from := head.First - 1 // the last seq no longer retained
	if read.Epoch == head.Epoch && read.Seq > from {
		from = read.Seq
	}
	return max(head.Seq-from, 0)
}

// MoveCursor is the rule of MarkRead: a pos in the cursor's epoch moves it
// forward only (two devices racing never move it back); a pos in another
// epoch replaces it (the room began again). A pos with no epoch (a room with
// no messages) leaves the cursor.
func MoveCursor(cur, pos protocol.Position) protocol.Position {
	switch {
	case pos.Epoch == "":
		return cur
	case pos.Epoch != cur.Epoch:
		return pos
	case pos.Seq > cur.Seq:
		return pos
	}
	return cur
}

// DirectoryLimit returns the page size Directory uses for limit: 50 when
// limit <= 0, at most 200.
func DirectoryLimit(limit int) int {
	if limit <= 0 {
		return 50
	}
	return min(limit, 200)
}

// CheckKind refuses a kind that is not one of the three.
func CheckKind(op string, k RoomKind) error {
	if !k.Valid() {
		return fmt.Errorf("%s: unknown room kind %q", op, k)
	}
	return nil
}

// Users is the per-user side of the store: rooms' kinds and members, each
// user's rooms and read cursors, and the directory of public rooms. Nothing
// of it is written when a message is published: unread counts are derived
// from the room's head and the user's cursor.
type Users interface {
	// EnsureRoom creates room with kind and creator if it does not exist,
	// and returns its info. The existing kind wins, whatever kind is asked
	// for: the caller checks it. Atomic: concurrent creations of one room
	// agree on one kind.
	EnsureRoom(ctx context.Context, room string, kind RoomKind, creator string) (RoomInfo, error)
	// RoomInfo returns the room's info; ok is false when the room was
	// never created.
	RoomInfo(ctx context.Context, room string) (info RoomInfo, ok bool, err error)
	// AddMember makes user a member of room and adds room to the user's
	// memberships; added is false when user was a member already. The room
	// must exist: an error wrapping ErrNoRoom otherwise.
	AddMember(ctx context.Context, room, user string) (added bool, err error)
	// RemoveMember undoes AddMember, the user's read cursor of the room
	// with it; removed is false when user was not a member.
	RemoveMember(ctx context.Context, room, user string) (removed bool, err error)
	// IsMember reports whether user is a member of room.
	IsMember(ctx context.Context, room, user string) (bool, error)
	// Memberships lists user's rooms sorted by name, each with its head,
	// the user's cursor and the unread count; an empty (non-nil) list when
	// the user has none. It takes at most two round trips to the store
	// whatever the number of rooms.
	Memberships(ctx context.Context, user string) ([]Membership, error)
	// MarkRead moves user's cursor in room to pos by the rule of
	// MoveCursor and returns the cursor after the call. It does not check
	// pos against the room's head (the caller does). An error wrapping
	// ErrNotMember when user is not a member of room. Atomic.
	MarkRead(ctx context.Context, user, room string, pos protocol.Position) (protocol.Position, error)
	// Directory lists public rooms in name order after the room named
	// after ("" = from the start), at most limit of them (see
	// DirectoryLimit), with member counts; next is the last room returned
	// when more may follow, else "".
	Directory(ctx context.Context, after string, limit int) (rooms []RoomInfo, next string, err error)
}
