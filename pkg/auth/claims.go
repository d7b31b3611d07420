package auth

import "time"

// Claims is what a verified token says about its holder.
type Claims struct {
	// User is the "sub" claim: the user, a valid protocol user name.
	User string
	// Name is the optional "name" claim: a display name.
	Name string
	// Rooms is the optional "rooms" claim: the room patterns the token
	// allows (see Allows). Nil when the token has no rooms claim: every
	// room. An empty, non-nil list allows no room.
	Rooms []string
	// Expires is the "exp" claim; zero when the token has none.
	Expires time.Time
}

// Allows reports whether the token allows room. Without a rooms claim
// every room is allowed; with one, room must match one of its patterns,
// where "*" matches any run of characters (none included) and "?" exactly
// one, and every other character itself: "team-*" matches "team-" and
// "team-red", "r?" matches "r1" but not "r" or "r10".
func (c Claims) Allows(room string) bool {
	if c.Rooms == nil {
		return true
	}
	for _, p := range c.Rooms {
		if match(p, room) {
			return true
		}
	}
	return false
}

// match reports whether s matches the glob pattern p ("*" and "?" only),
// byte by byte (room names are ASCII), in linear time: on a mismatch it
// backtracks to the last "*" only.
func match(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			mark++
			pi, si = star+1, mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
