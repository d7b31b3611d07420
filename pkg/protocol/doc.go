// Package protocol defines Parley's wire protocol v1: the JSON frames that
// travel over a WebSocket negotiated with the "parley.v1" subprotocol, their
// error codes and the WebSocket close codes the gateway uses.
//
// Every frame is one JSON object per text message with a "type" member.
// Decode parses and validates a client frame; Encode serialises any frame.
// The package depends on the standard library only, so that any Go program
// (a bot, a load generator, a test) can speak the protocol without pulling in
// the gateway.
//
// See docs/protocol.md in the repository for the full description with
// example exchanges.
package protocol
