// Package client is the Go SDK for Parley's wire protocol v1.
//
// Dial opens a WebSocket to a gateway (subprotocol "parley.v1"), sends hello
// and waits for welcome. After that the Client keeps itself connected:
//
//   - Requests (Join, Leave, Send, SendID, History, Read, Create, Invite,
//     Directory, Presence, Refresh) carry a ref unique to the
//     Client; the reply (joined, left, ack, history) or the error frame with
//     the same ref completes the call. An error frame makes the call return a
//     *protocol.Error with the server's code and message, except
//     rate_limited and unavailable, which the Client retries (see below).
//   - For every joined room the Client remembers the epoch and the last seq it
//     delivered on Events, and drops any message it has already delivered, so
//     each message reaches Events exactly once and in seq order.
//   - When the connection drops (close 1012 on a draining gateway, 1013 for a
//     slow consumer, a network error, a killed server) the Client emits
//     StateReconnecting, reconnects with exponential backoff and full jitter
//     between Config.MinBackoff and Config.MaxBackoff, sends hello, re-joins
//     every room with since = {epoch, last seq}, then resends every request
//     that has not been answered, sends with the same id so that the server
//     deduplicates them and returns the original ack (the oldest unacked
//     send first, the others after it, in order), and emits
//     StateConnected. Calls in progress keep waiting across the reconnect;
//     calls made while reconnecting are queued and sent after the re-joins.
//   - A connection that leaves a request unanswered for Config.AckTimeout is
//     considered dead: it is dropped and the request is resent on a new one.
//   - A close with code 1008 (policy: a bad or expired token, or the server
//     API disconnected the user), on a live connection or during hello,
//     or an unauthorized/forbidden error during hello on a reconnect, is
//     fatal (except the close at the token's expiry when TokenSource is
//     set: then the Client reconnects with a fresh token): the
//     Client emits StateClosed with the reason, fails every pending call and
//     stops. On Dial the same failure is returned as Dial's error.
//
// # The user's rooms
//
// Rooms returns the rooms the user is a member of on any device, with the
// room's head, the user's read cursor and the unread count, as welcome
// listed them and kept up to date since: by this Client's Join, Leave and
// Create, by the messages it delivers, and by what the user's other
// devices do, which also arrives on Events: Event.Membership (a room
// joined, created, invited to or left elsewhere; a room left elsewhere is
// left here too) and Event.ReadSync (a read cursor moved elsewhere). Read
// moves the cursor; Create makes a private or public room; Invite makes
// another user a member; Directory pages through the public rooms;
// Presence says who is in a room now, and Event.Presence reports the other
// users coming and going in the joined rooms. Direct rooms
// (protocol.DirectRoomOf) are joined like any other.
//
// # Tokens that expire
//
// With Config.TokenSource the Client asks for a fresh token when the
// gateway says the connection's token expires soon (token_expiring) and
// sends it in a refresh, and asks again for every hello after a
// reconnect. Without it, a connection whose token expires is closed, and
// the reconnect with the same token is refused: the Client stops.
//
// # Refusals for now, and the order of sends
//
// Two error answers mean "not now" rather than "no"; the request was not
// processed, and the Client resends it by itself, with the same ref (a send
// with the same id, so it is stored once):
//
//   - rate_limited: the connection is over its allowance. The Client writes
//     nothing more on that connection for the answer's retry_after_ms, then
//     resends the refused requests, and any written meanwhile, one per
//     retry_after_ms, so that they do not all meet an empty bucket again
//     (the gateway closes a connection that keeps sending into one).
//   - unavailable: the message store is unreachable. The Client resends the
//     request on the same connection after a backoff between
//     Config.MinBackoff and Config.MaxBackoff, doubling with each refusal,
//     with jitter.
//
// The call keeps waiting, without an error, until its reply, or until its
// ctx ends: the error then wraps ctx.Err() and names the last refusal. Each
// refusal is reported on Events as a Retry, so an application can show
// that a message is delayed.
//
// Sends on one Client are published in the order they were made (for
// concurrent calls, the order in which they entered the Client): a send is
// written only once the one before it has been acked, has failed, or was
// abandoned when its caller's ctx ended. Pipelining sends would lose that
// order whenever one is refused: the server refuses the first while the
// connection is over its rate and accepts the second, which arrives after a
// token has come back, so the first, resent, would be published after it.
// The price is one round trip per send, which stays above the gateway's 20
// frames per second for round trips up to 50 ms. Joins, leaves and history
// requests are not held behind sends.
//
// # Events and backpressure
//
// Messages, joined frames, typing notices, presence events, membership and
// read syncs,
// unsolicited error frames, retries and connection state changes are
// delivered in order on the channel returned by Events, which
// has capacity Config.Buffer. When it is full, the goroutine that reads the
// socket waits for the application: nothing is dropped, but the Client stops
// reading from the server, whose bounded queue may then overflow so that it
// closes the connection with 1013 (the Client resumes where it left off), and
// replies queue behind the unread events, so that calls may time out and the
// connection be recycled. Read Events promptly, from a goroutine other than
// the one that waits for calls if the application makes many calls without
// reading. Events is closed after the Client has stopped.
//
// Close closes the connection with code 1000, stops reconnecting, fails the
// pending calls with ErrClosed and waits for every goroutine of the Client.
package client
