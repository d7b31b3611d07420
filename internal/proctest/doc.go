// Package proctest runs real Parley processes for tests: the parley binary
// built once per test binary, `parley serve` gateways, and a real haproxy in
// front of them rendered from deploy/haproxy's template. Every process is
// started by the test, on loopback, and killed by PID when the test ends.
// A missing haproxy fails the test; it never skips.
package proctest
