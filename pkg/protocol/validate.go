package protocol

import (
	"regexp"
	"strings"
)

var roomRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)

// ValidRoom reports whether name is a valid room name:
// ^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$.
func ValidRoom(name string) bool { return roomRE.MatchString(name) }

// DirectRoom reports whether name is in the "dm:" namespace reserved for
// direct rooms.
func DirectRoom(name string) bool { return strings.HasPrefix(name, "dm:") }

// DirectUsers returns the two users of a direct room "dm:<a>:<b>": two
// valid user names without ':' in sorted order, a before b. ok is false for
// any other name.
func DirectUsers(name string) (a, b string, ok bool) {
	rest, found := strings.CutPrefix(name, "dm:")
	if !found {
		return "", "", false
	}
	a, b, found = strings.Cut(rest, ":")
	if !found || strings.Contains(b, ":") || !ValidUser(a) || !ValidUser(b) || a >= b {
		return "", "", false
	}
	return a, b, true
}

// DirectRoomOf returns the direct room of users a and b (in either order).
func DirectRoomOf(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "dm:" + a + ":" + b
}

// ValidID reports whether id is a valid idempotency key: 1 to 64 bytes of
// printable ASCII without spaces.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// ValidUser reports whether name can be a user name: the same alphabet as a
// room name.
func ValidUser(name string) bool { return roomRE.MatchString(name) }
