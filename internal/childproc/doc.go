// Package childproc ties the processes a test starts (redis-server, gateways,
// haproxy) to the test binary, so that a test binary that crashes or is
// killed, and never runs its cleanups, leaves no servers behind.
package childproc
