// Package cluster holds the multi-process cluster tests: a real
// redis-server, several `parley serve` processes and a real haproxy whose
// configuration is rendered from deploy/haproxy's template, all on
// loopback. They need no Docker; the compose end-to-end test is in
// test/compose.
package cluster
