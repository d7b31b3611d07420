// Package loadgen is the load generator behind `parley bench`: it opens many
// protocol-v1 WebSocket connections to one or more gateways, publishes
// timestamped messages at a steady rate, and measures what the receivers
// see: end-to-end latency, delivered messages per second, and whether every
// room's seqs arrived consecutively, exactly once.
//
// # Shape of a run
//
// Run opens Config.Conns receiving connections (dev-auth users bench-0 ..
// bench-N-1), spread round-robin over Config.URLs and over the local source
// addresses in Config.Sources, with at most Config.ConnectConcurrency dials in
// flight. Each receiver joins exactly one room, room i % Rooms, so a room has
// Conns/Rooms members (the first Conns%Rooms rooms have one more). Rooms are
// named "<RoomPrefix>-<run id>-<r>", fresh for every run, so no backlog from
// an earlier run is delivered.
//
// Publishing uses separate publisher connections that do not join any room
// (a send needs no join), so the receiving set is exactly the Conns
// receivers. There are max(Publishers, ceil(Rate/PublisherRate)) of them, so
// no publisher exceeds PublisherRate frames per second (default 15, under
// the gateway's default limit of 20/s). Publisher p sends its j-th message to
// room (p + j*P) % Rooms, paced by its own ticker at Rate/P per second and
// started at a staggered offset, so the total rate is spread evenly over
// rooms and time instead of coming in bursts. Each body starts with
// "t=<unix nanoseconds>;" and is padded with 'x' to BodyBytes.
//
// A receiver decodes the send time from each body and records receive time
// minus send time in a log-linear histogram (Histogram), for messages sent
// after the warm-up. Its SeqChecker follows each room from the head given in
// joined and counts gaps and duplicates. After Warmup+Duration the
// publishers stop, the run waits (at most Config.Drain) for outstanding acks
// and for every receiver to reach its room's last acknowledged seq, and the
// connections are closed (bounded by Config.CloseTimeout).
//
// Storm measures a resume storm: its receivers join, remember {epoch, seq},
// all disconnect, StormMessages messages are published to every room while
// they are away, then all reconnect at once and join with since. It reports
// how long until every connection had its joined and every missed message
// exactly once.
//
// Hold only connects and joins Config.Conns receivers and keeps them idle for
// a while (the idle-connection memory scenario). RawServer is a minimal
// protocol-v1 fan-out server with no broker (see its documentation);
// RawCeiling runs Run against one in-process, and `parley bench --raw-serve`
// runs one in a process of its own, so the bench suite can compare a
// gateway's fan-out with the cheapest possible server on the same machine.
//
// Every goroutine is owned by the function that starts it and is waited for
// before that function returns; every wait has a deadline derived from the
// Config.
package loadgen
