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
