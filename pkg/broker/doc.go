// Package broker defines the message store and bus behind a Parley gateway:
// the Broker interface, the errors its implementations return, and (in
// package brokertest) the conformance suite every implementation passes.
//
// A Broker makes a message durable and delivered in one step: Publish assigns
// the room's next seq, appends the envelope to the room's history (trimmed to
// the retention size), records the ack under the sender's idempotency key and
// publishes the envelope to every node subscribed to the room. Implementations
// live in sub-packages: redis (the cluster's shared store) and memory (one
// process, for development and tests).
package broker
