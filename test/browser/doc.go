// Package browser tests the browser client (web/) in a real headless
// Chromium against a real cluster: redis-server, three `parley serve`
// processes and haproxy in front of them, all on loopback. The pages are
// loaded through the load balancer, as a user's would be, and driven
// through their DOM: sign in, join rooms, type and press Enter, scroll back.
//
// The tests assert on what a user sees: every message exactly once on every
// page, in seq order, including after the gateway serving a page is killed;
// message text rendered as text; a fresh browser showing the backlog. They
// also write screenshots of the chat page, desktop- and phone-sized, to
// artifacts/screenshots/ at the repository root.
//
// TestParleyJSRefusals drives the parley.js module alone against a fake
// gateway (internal/fakegw) that refuses requests on cue, the way the
// rate limiter (rate_limited with retry_after_ms) and an unreachable Redis
// (unavailable) do: resends, the order of sends, joins that must not be
// dropped. TestParleyJSPlace checks its position rule, place(), on a table
// of cases. TestParleyJSPresence checks presence(room) and the presence
// events.
//
// TestChatPageControls covers, against one gateway, the page's controls
// the cluster test does not: unread counts, leaving a room, #room in the
// URL, the composer's size limit.
//
// TestChatPageDevices follows one user on two devices (two browser
// profiles on two gateways sharing Redis) and another user: the room list
// and unread counts come from the server's welcome, reading on one device
// clears the count on the other without a reload, a message's author name
// opens a direct room that reaches the other user's devices live, a private
// room is created and another user invited, the directory lists the public
// rooms; who is online in a room shows under its title, with device counts,
// as her pages close. TestParleyJSRoomNames checks which direct-room names parley.js
// accepts.
//
// Chromium (Debian's chromium package), redis-server and haproxy must be
// installed; a missing one fails the tests, it never skips them.
package browser
