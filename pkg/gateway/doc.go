// Package gateway is a Parley gateway node as an embeddable http.Handler.
//
// A Gateway accepts WebSocket connections, speaks wire protocol v1 (see
// package protocol and docs/protocol.md) with clients that negotiate the
// "parley.v1" subprotocol, and serves plain-text mode to clients that do
// not: each text frame is posted to the room named by the path, and the
// bodies of other connections' messages come back as bare text. Plain HTTP
// requests for "/" get the browser client (package web; see Config.Web).
//
// The gateway keeps no state that outlives a connection. Every message goes
// through a broker.Broker, which stores it and publishes it to every node;
// the gateway's hub subscribes each room once per node, counted by local
// membership, fans each published envelope out to the room's local
// connections, and repairs gaps (a lost pub/sub message, a reconnect of the
// subscriber connection) from the room's history.
//
// Each connection has one reader goroutine of its own (ServeHTTP returns
// after the upgrade, freeing net/http's per-request state). It charges
// each client frame to the rate limit as it arrives and queues it for a
// handler goroutine that exists only while frames wait and handles them in
// order (so its own stack stays small, and it keeps reading while a
// request waits on Redis). One writer, started only while there is
// something to write, drains a bounded queue: a connection that does not
// read, so that its live frames pass OutboundQueue or OutboundBytes, is
// closed with 1013 and resumes, so fan-out never waits for the slowest
// reader; catch-ups and repairs do not count against those bounds.
// Gap repairs read history on a goroutine of the room's, never on the
// broker's delivery goroutine or under the room's lock.
//
// Inside, the transports (WebSocket v1 and plain text) call transport-free
// operations (join, leave, publish, history) on behalf of a principal; the
// hub delivers each room's stream to subscribers, which turn it into their
// transport's frames in a bounded outbox per connection. docs/architecture.md
// describes the seams, the lock order and the owner of every goroutine.
package gateway
